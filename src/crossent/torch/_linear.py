r"""Fused linear + cross-entropy: the loss of ``input @ weight.T + bias``, logits never held.

Rows of ``input`` are processed in chunks. For each chunk the logits ``(rows, V)`` are made by
one GEMM into a reused buffer (float32 for the CPU engine, the input's dtype for the Triton
kernel, which computes in float32), the loss engine turns them into per-row losses and
overwrites them with their gradient, and two more GEMMs take that gradient to ``input``
(``g @ W``, each row written once) and to ``weight`` (``g.T @ x``, accumulated in float32:
by the GEMM itself, ``beta = 1``, for float32 weights and on CUDA; as one rounded product per
chunk added in float32 for bfloat16/float16 weights on the CPU). With ``'mean'``/``'sum'`` all
of this happens in the forward pass (``6·N·D·V`` flops, the same as the unfused path) and
backward only scales; with ``'none'`` backward redoes the loop with each row's incoming
gradient.

The weight gradient is read and written once per chunk (inside the GEMM): the alternative,
chunking the vocabulary so that each slice of it is written once, needs the log-sum-exp of
every row first, hence a second logits GEMM (``8·N·D·V`` flops), which costs more than the
few passes over the accumulator that large chunks (4 at ``N=2048, V=32000``) take."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from crossent import _core
from crossent.torch import _cpu
from crossent.torch._autograd import (
    FORWARD_AD_ERROR,
    VOCAB_PARALLEL_ERROR,
    backend,
    check_no_func_transform,
)
from crossent.torch._buffers import grad_buffer
from crossent.torch._compile import eager_under_compile
from crossent.torch._grad import linear_target_grad, logits_grad, target_grad
from crossent.torch._head import prepare_head
from crossent.torch._options import (
    Layout,
    LossOptions,
    Scales,
    options_from,
    reduce_rows,
    scales_for,
    use_triton,
)

# BLAS multiplies fewer rows than this through a less accurate path (MKL: 2-7x the rounding
# error of its tiled GEMM below 12 rows, measured for the input gradient g @ W over V = 2000 ...
# 32000): a chunk never has fewer rows than this when the batch has them, the last one included
GEMM_MIN_ROWS = 16


# a head's loss of one chunk of logits: (logits, target, class weights, options, scales,
# want_grad) -> per-row losses, per-row log-sum-exps, the gradient (written over the logits)
ChunkLoss = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None", LossOptions, Scales, bool],
    tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"],
]


@dataclasses.dataclass(frozen=True)
class Head:
    """What changes when the head's rows (the vocabulary) are split over ranks (default: none):
    the chunk loss (default: the backend's ``ce_rows``), and a reduction of the input gradient
    (in place)."""

    chunk_loss: ChunkLoss | None = None
    reduce_input_grad: Callable[[torch.Tensor], None] | None = None

    def check_supported(self, what: str) -> None:
        """Refuse ``what`` (a feature that needs the whole rows' logits) on a split head."""
        if self.reduce_input_grad is not None:
            raise NotImplementedError(
                VOCAB_PARALLEL_ERROR.format("vocab_parallel_linear_cross_entropy", what)
            )


def _run(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: LossOptions,
    chunk: int,
    scales: Scales,
    row_scale: torch.Tensor | None,
    grads: tuple[bool, bool, bool],
    head: Head,
) -> tuple[torch.Tensor, torch.Tensor, Any, Any, Any]:
    """Per-row losses and log-sum-exps (float64, (N,)) and the gradients of the rows' losses
    times ``scales`` (and times ``row_scale``, (N,), when given)."""
    n, d = x.shape
    v = w.shape[0]
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    # the Triton kernel reads any dtype: its logits buffer is in x's dtype, written by the GEMM
    bdt = x.dtype if use_triton(x, opts) else cdt
    chunk_loss = head.chunk_loss or backend(x, opts).ce_rows
    want_grad = any(grads)
    gx = torch.empty_like(x) if grads[0] else None
    # the chunk's gradient overwrites its logits
    chunk_opts = dataclasses.replace(opts, inplace=True, return_lse=False)

    def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if x.device.type == "cpu":  # recycled memory: no page faults
            return grad_buffer(shape, dtype)
        return torch.empty(shape, dtype=dtype, device=x.device)

    gw = empty((v, d), cdt) if grads[1] else None  # written by the first chunk's GEMM (beta=0)
    gb = torch.zeros(v, dtype=cdt, device=x.device) if grads[2] else None
    losses = torch.empty(n, dtype=torch.float64, device=x.device)
    lses = torch.empty(n, dtype=torch.float64, device=x.device)
    chunk = max(chunk, GEMM_MIN_ROWS)  # a 16 x V buffer at least: accuracy, not memory
    buf = empty((min(chunk, n), v), bdt)
    wt = w.t()
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        # a short last chunk reaches back over rows already done (their gradient is zeroed)
        a0 = max(0, min(r0, r1 - GEMM_MIN_ROWS))
        done = r0 - a0
        xc = x[a0:r1]  # (rows, D)
        lg = buf[: r1 - a0]  # (rows, V)
        if lg.dtype != x.dtype:
            lg.copy_(torch.addmm(b, xc, wt) if b is not None else xc @ wt)
        elif b is not None:
            torch.addmm(b, xc, wt, out=lg)
        else:
            torch.mm(xc, wt, out=lg)
        rows, lse, _ = chunk_loss(lg, target[a0:r1], class_weight, chunk_opts, scales, want_grad)
        losses[r0:r1], lses[r0:r1] = rows[done:], lse[done:]
        if not want_grad:
            continue
        if done:
            lg[:done].zero_()
        if row_scale is not None:
            lg.mul_(row_scale[a0:r1].to(lg.dtype).unsqueeze(1))
        g = lg.to(x.dtype)  # (rows, V): the gradient of the logits
        if gx is not None and done:
            gx[r0:r1] = (g @ w)[done:]
        elif gx is not None:
            torch.mm(g, w, out=gx[r0:r1])
        if gw is not None:
            _accumulate(gw, g.t(), xc, 0.0 if r0 == 0 else 1.0, 1.0)
        if gb is not None:
            gb.add_(lg.sum(0, dtype=cdt))
    if gx is not None and head.reduce_input_grad is not None:
        head.reduce_input_grad(gx)
    return losses, lses, gx, gw, gb


def _accumulate(
    acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float, alpha: float
) -> None:
    """``acc = beta·acc + alpha·(a @ b)`` with ``acc`` in float32/64, by the GEMM when it can.

    Same dtypes: one ``addmm`` (the GEMM reads and writes ``acc``, no temporary). bfloat16 or
    float16 operands: on CUDA ``addmm`` with a float32 output; elsewhere the product is made in
    the operands' dtype (float32 accumulation inside, one rounding) and added in float32.
    """
    if a.dtype == acc.dtype:
        torch.addmm(acc, a, b, beta=beta, alpha=alpha, out=acc)
        return
    if acc.device.type == "cuda":
        try:
            torch.ops.aten.addmm.dtype_out(acc, a, b, acc.dtype, beta=beta, alpha=alpha, out=acc)
            return
        except (RuntimeError, NotImplementedError):  # older torch or an unsupported pair
            pass
    part = a @ b
    if beta == 0.0:
        torch.mul(part, alpha, out=acc)
    else:
        acc.add_(part, alpha=alpha)


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Apply as ``(input (N, D), weight (V, D), target, bias, class_weight, options, chunk,
    head)``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w: torch.Tensor,
        target: torch.Tensor,
        b: torch.Tensor | None,
        class_weight: torch.Tensor | None,
        opts: LossOptions,
        chunk: int,
        head: Head | None = None,
    ) -> torch.Tensor:
        grads = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3])
        head = head or Head()
        ctx.opts, ctx.chunk, ctx.grads, ctx.head = opts, chunk, grads, head
        # the inputs are kept for 'none', a probability target's gradient and create_graph
        inputs = (x, w, b, target, class_weight)
        if opts.reduction == "none":
            losses, *_ = _run(x, w, b, target, class_weight, opts, chunk, Scales(), None,
                              (False,) * 3, head)  # fmt: skip
            ctx.scales = Scales()
            ctx.save_for_backward(*inputs)
            return losses.to(x.dtype)
        scales = scales_for(target, class_weight, opts)
        ctx.scales = scales
        losses, lses, gx, gw, gb = _run(
            x, w, b, target, class_weight, opts, chunk, scales, None, grads, head
        )
        # saved, not kept on ctx: autograd frees them after a backward without retain_graph
        ctx.save_for_backward(
            *inputs,
            gx,
            gw.to(w.dtype) if gw is not None else None,
            gb.to(w.dtype) if gb is not None else None,
        )
        return reduce_rows(losses, lses, target, opts, scales).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        opts: LossOptions = ctx.opts
        x, w, b, target, class_weight, *saved = ctx.saved_tensors
        gt = None
        if ctx.needs_input_grad[2]:
            ctx.head.check_supported("a gradient for the target")
        if torch.is_grad_enabled():  # create_graph=True: gradients autograd can differentiate
            ctx.head.check_supported("create_graph=True (second derivatives)")
            logits = torch.nn.functional.linear(x, w, b)  # (N, V): held only in this mode
            g = logits_grad(logits, target, class_weight, grad_loss, opts, ctx.scales)
            gx, gw = g @ w, g.t() @ x
            gb = g.sum(0) if b is not None else None
            if ctx.needs_input_grad[2]:
                gt = target_grad(logits, class_weight, grad_loss, opts, ctx.scales.ce)
            return gx, gw, gt, gb, None, None, None, None
        if opts.reduction == "none":
            *_, gx, gw, gb = _run(x, w, b, target, class_weight, opts, ctx.chunk, Scales(),
                                  grad_loss, ctx.grads, ctx.head)  # fmt: skip
            gw = gw.to(w.dtype) if gw is not None else None
            gb = gb.to(w.dtype) if gb is not None else None
        else:
            gx, gw, gb = saved
            if not bool(grad_loss == 1.0):
                gx, gw, gb = (g * grad_loss.to(g.dtype) if g is not None else None
                              for g in (gx, gw, gb))  # fmt: skip
        if ctx.needs_input_grad[2]:
            gt = linear_target_grad(
                x, w, b, class_weight, grad_loss, opts, ctx.chunk, ctx.scales.ce
            )
        return gx, gw, gt, gb, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, *_tangents: Any) -> Any:
        raise NotImplementedError(FORWARD_AD_ERROR.format("linear_cross_entropy"))


def _check_target(
    t: torch.Tensor, cw: torch.Tensor | None, v: int, opts: LossOptions, layout: Layout
) -> None:
    """The whole target, before it is cut into chunks: errors report positions in it."""
    if use_triton(t, opts):
        from crossent.torch import _triton_ce

        _triton_ce.check_inputs(t, cw, v, opts, layout)
    else:
        _core.check_target(_cpu.np_target(t), v, opts, layout)


@eager_under_compile
def apply_head(*args: Any) -> torch.Tensor:
    """The autograd Function; run eagerly under ``torch.compile`` (a graph break)."""
    return LinearCrossEntropyFunction.apply(*args)


def linear_cross_entropy(
    input: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    class_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    num_items: float | None = None,
) -> torch.Tensor:
    r"""Cross-entropy of ``input @ weight.T + bias`` without ever holding the ``(N, V)`` logits.

    Equal to ``crossent.torch.cross_entropy(F.linear(input, weight, bias), target, ...)``
    (with ``class_weight`` as its ``weight``), for language-model heads where ``V`` is large:

    .. math::

        z_n = W x_n + b, \qquad L = \operatorname{reduce}_n\, \ell(z_n, y_n),
        \qquad \frac{\partial L}{\partial x_n} = W^\top g_n, \quad
        \frac{\partial L}{\partial W} = \sum_n g_n x_n^\top, \quad
        \frac{\partial L}{\partial b} = \sum_n g_n

    with ``g_n = ∂L/∂z_n`` the cross-entropy gradient (see :func:`cross_entropy`). Rows are
    processed ``chunk_size`` at a time: one GEMM makes a chunk's logits in a reused float32
    buffer, the loss engine overwrites them with ``g``, two GEMMs take ``g`` to ``input`` and
    ``weight``. With ``'mean'``/``'sum'`` the gradients are computed in the forward pass
    (``6·N·D·V`` flops, as the unfused path) and backward only scales them; ``'none'``
    redoes the chunks in backward with each row's incoming gradient. The weight and bias
    gradients are accumulated in float32 (the weight's by the GEMM itself, ``beta = 1``, no
    ``(V, D)`` temporary per chunk) and rounded to the parameters' dtype once. Second
    derivatives (``create_graph=True``) are exact; that backward holds the ``(N, V)`` logits.

    Parameters
    ----------
    input : Tensor, shape (..., D)
        Hidden states: float32, float64, bfloat16 or float16.
    weight : Tensor, shape (V, D)
        The head's weight, ``input``'s dtype.
    target : Tensor
        Class indices of shape ``(...)`` (integer dtype, ``ignore_index`` allowed) or class
        probabilities of shape ``(..., V)`` (which may require grad: ``∂L/∂q`` is
        ``-(1-ε)·w_c·log p`` scaled, as for :func:`cross_entropy`).
    bias : Tensor, shape (V,), optional
        The head's bias, ``input``'s dtype.
    class_weight : Tensor, shape (V,), optional
        Class weights (``F.cross_entropy``'s ``weight``): constants, refused if they
        require grad.
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items
        As :func:`cross_entropy`. ``class_weight`` must be finite and ``>= 0`` (negative class
        weights are refused).
    chunk_size : int, optional
        Rows per chunk. Default: as many as fit a 64 MiB float32 logits buffer
        (524 rows at ``V = 32000``); the extra memory is that buffer plus float32 gradient
        accumulators for low-precision parameters. At least 16 rows are multiplied at a time
        (a smaller value, or a short last chunk, is widened to 16 rows when the batch has
        them): BLAS multiplies fewer rows through a less accurate path.

    Returns
    -------
    Tensor
        A scalar, or the shape ``(...)`` for ``'none'``; ``input``'s dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy`; also shapes or dtypes of ``weight``/``bias`` that do not
        match ``input``, and a ``chunk_size`` that is not a positive int.
    NotImplementedError
        As :func:`cross_entropy` (forward-mode AD, ``torch.func`` transforms).

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from crossent.torch import linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(6, 4, generator=g)
    >>> w = torch.randn(50, 4, generator=g, requires_grad=True)
    >>> y = torch.tensor([3, 1, 4, 1, 5, -100])
    >>> loss = linear_cross_entropy(h, w, y, chunk_size=2)
    >>> torch.allclose(loss, F.cross_entropy(h @ w.T, y))
    True
    >>> loss.backward()
    >>> w.grad.shape
    torch.Size([50, 4])
    """
    check_no_func_transform("linear_cross_entropy")
    opts = options_from(locals())
    x, t, cw, chunk, batch = prepare_head(input, weight, target, bias, class_weight, chunk_size)
    _check_target(t, cw, weight.shape[0], opts, (len(batch), batch))
    loss = apply_head(x, weight, t, bias, cw, opts, chunk, Head())
    if reduction == "none":
        return loss.reshape(batch)
    return loss
