r"""Fused linear + cross-entropy: the loss of ``input @ weight.T + bias``, logits never held.

Rows of ``input`` are processed in chunks. For each chunk the logits ``(rows, V)`` are made by
one GEMM into a reused buffer (in the input's dtype, float32 for float16 inputs on the CPU; the
engines compute in float32 either way), the loss engine turns them into per-row losses and
overwrites them with their gradient, and two more GEMMs take that gradient to ``input``
(``g @ W``, each row written once) and to ``weight`` (``g.T @ x``, added by the GEMM itself,
``beta = 1``, into the weight's gradient in the weight's own dtype: the GEMM accumulates the
chunk's tokens and the gradient so far in float32 and rounds once per chunk, so bfloat16
weights need no ``V×D`` float32 accumulator). With ``'mean'``/``'sum'`` all of this happens in
the forward pass (``6·N·D·V`` flops, the same as the unfused path) and backward only scales;
with ``'none'`` backward redoes the loop with each row's incoming gradient.

The weight gradient is read and written once per chunk (inside the GEMM): the alternative,
chunking the vocabulary so that each slice of it is written once, needs the log-sum-exp of
every row first, hence a second logits GEMM (``8·N·D·V`` flops), which costs more than the
few passes over the gradient that large chunks (2 at ``N=2048, V=32000`` in bfloat16) take. In
bfloat16 each of the ``K`` chunks rounds the weight gradient once (``K`` roundings of relative
size ``2⁻⁸`` at most, where a float32 accumulator rounds once): against float64 the normwise
error is 1.2× the unfused path's at ``K = 2``, 1.8× at ``K = 64`` (docs/performance.md,
"bfloat16 weight gradient")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    LossKwargs,
    LossOptions,
    Scales,
    options_from,
    reduce_rows,
    scales_for,
    takes_options,
    use_triton,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


@dataclasses.dataclass
class _Grads:
    """The gradients ``_run`` makes: ``input``'s (each row written once), ``weight``'s (in its
    own dtype, accumulated over the chunks by the GEMM, ``beta = 1``) and ``bias``'s (float32
    or float64: a vector)."""

    x: torch.Tensor | None
    w: torch.Tensor | None
    b: torch.Tensor | None

    def add_chunk(
        self,
        g: torch.Tensor,
        xc: torch.Tensor,
        w: torch.Tensor,
        r0: int,
        lg: torch.Tensor,
        done: int = 0,
    ) -> None:
        """Send a chunk's logits gradient ``g`` (rows, V) to the input's rows ``r0:`` and add it
        to the weight's and the bias's gradients (``lg``: ``g`` in the compute dtype). The
        chunk's first ``done`` rows were done before: their gradient here is 0."""
        if self.x is not None and done:
            self.x[r0 : r0 + g.shape[0] - done] = (g @ w)[done:]
        elif self.x is not None:
            torch.mm(g, w, out=self.x[r0 : r0 + g.shape[0]])
        if self.w is not None:  # float32 inside the GEMM, rounded once per chunk
            torch.addmm(self.w, g.t(), xc, beta=0.0 if r0 == 0 else 1.0, out=self.w)
        if self.b is not None:
            self.b.add_(lg.sum(0, dtype=self.b.dtype))


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":  # recycled memory: no page faults
        return grad_buffer(shape, dtype)
    return torch.empty(shape, dtype=dtype, device=device)


def _chunk_logits(
    lg: torch.Tensor, low: torch.Tensor | None, xc: torch.Tensor, w: torch.Tensor, b: Any
) -> None:
    """``xc @ w.T + b`` into ``lg`` (rows, V), through ``low`` (``xc``'s dtype) when ``lg`` is
    float32 and the GEMM runs in bfloat16/float16."""
    out = lg if low is None else low
    if b is not None:
        torch.addmm(b, xc, w.t(), out=out)
    else:
        torch.mm(xc, w.t(), out=out)
    if low is not None:
        lg.copy_(low)


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
    v, dev = w.shape[0], x.device
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    # the logits buffer: x's dtype, written by the GEMM, for the Triton kernel (any dtype) and
    # the CPU engine's bfloat16 path (float32 blocks of rows inside); float16 goes as float32
    bdt = x.dtype if use_triton(x, opts) or x.dtype == torch.bfloat16 else cdt
    chunk_loss = head.chunk_loss or backend(x, opts).ce_rows
    want_grad = any(grads)
    out = _Grads(
        torch.empty_like(x) if grads[0] else None,
        _empty((v, d), w.dtype, dev) if grads[1] else None,  # the first chunk's GEMM writes it
        torch.zeros(v, dtype=cdt, device=dev) if grads[2] else None,
    )
    # the chunk's gradient overwrites its logits
    chunk_opts = dataclasses.replace(opts, inplace=True, return_lse=False)
    losses = torch.empty(n, dtype=torch.float64, device=dev)
    lses = torch.empty(n, dtype=torch.float64, device=dev)
    chunk = max(chunk, GEMM_MIN_ROWS)  # a 16 x V buffer at least: accuracy, not memory
    rows_max = min(chunk, n)
    buf = _empty((rows_max, v), bdt, dev)
    low = _empty((rows_max, v), x.dtype, dev) if bdt != x.dtype else None  # GEMMs' side
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        # a short last chunk reaches back over rows already done (their gradient is zeroed)
        a0 = max(0, min(r0, r1 - GEMM_MIN_ROWS))
        done = r0 - a0
        xc, lg = x[a0:r1], buf[: r1 - a0]  # (rows, D), (rows, V)
        lw = None if low is None else low[: r1 - a0]
        _chunk_logits(lg, lw, xc, w, b)
        rows, lse, _ = chunk_loss(lg, target[a0:r1], class_weight, chunk_opts, scales, want_grad)
        losses[r0:r1], lses[r0:r1] = rows[done:], lse[done:]
        if not want_grad:
            continue
        if done:
            lg[:done].zero_()
        if row_scale is not None:
            lg.mul_(row_scale[a0:r1].to(lg.dtype).unsqueeze(1))
        g = lg if lw is None else lw.copy_(lg)  # (rows, V): the gradient of the logits
        out.add_chunk(g, xc, w, r0, lg, done)
    if out.x is not None and head.reduce_input_grad is not None:
        head.reduce_input_grad(out.x)
    return losses, lses, out.x, out.w, out.b


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
        ctx.save_for_backward(*inputs, gx, gw, gb.to(w.dtype) if gb is not None else None)
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


@takes_options("linear")
def linear_cross_entropy(
    input: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    class_weight: torch.Tensor | None = None,
    chunk_size: int | None = None,
    **options: Unpack[LossKwargs],
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
    processed ``chunk_size`` at a time: one GEMM makes a chunk's logits in a reused buffer,
    the loss engine overwrites them with ``g``, two GEMMs take ``g`` to ``input`` and
    ``weight``. With ``'mean'``/``'sum'`` the gradients are computed in the forward pass
    (``6·N·D·V`` flops, as the unfused path) and backward only scales them; ``'none'``
    redoes the chunks in backward with each row's incoming gradient. The weight's gradient is
    accumulated by the GEMM itself (``beta = 1``, no ``(V, D)`` temporary) in the weight's
    dtype: float32 inside the GEMM, rounded once per chunk (bfloat16: within a few ``2⁻⁸``
    relative, see the performance page); the bias's in float32, rounded once. Second
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
        Rows per chunk. Default on the CPU: as many as fit a 64 MiB logits buffer (524 rows
        at ``V = 32000`` in float32, 1048 in bfloat16); on CUDA 2²⁷ logits per chunk. The
        extra memory is that buffer (float16 on the CPU: a float32 one and a float16 one)
        besides the gradients; in bfloat16 the weight's gradient is rounded once per chunk.
        At least 16 rows are multiplied at a time
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
    opts = options_from(options, "linear")
    x, t, cw, chunk, batch = prepare_head(input, weight, target, bias, class_weight, chunk_size)
    _check_target(t, cw, weight.shape[0], opts, (len(batch), batch))
    loss = apply_head(x, weight, t, bias, cw, opts, chunk, Head())
    if opts.reduction == "none":
        return loss.reshape(batch)
    return loss
