r"""Triton kernel for the cross-entropy loss and its gradient (CUDA; ``TRITON_INTERPRET=1`` on CPU).

One program per row of the ``(M, C)`` logits, two sweeps over the row in blocks of
``BLOCK_C`` classes:

1. online ``max``/``sum exp`` (the log-sum-exp), plus the sums the options need: the target
   logit, ``Σ_finite w_c z_c`` and the finite count ``k`` (label smoothing),
   ``Σ w_c q_c z_c`` and ``Σ w_c q_c`` (probability targets);
2. ``grad = scale · [(a + 2λ·lse)·p - b]`` times the chain rule of the transforms, written over
   the same block (the second read of a row hits L2: one HBM read, one HBM write).

Everything is computed in float32, the true-class term ``a·p_y - b_y`` included, and rounded to
the logits' dtype once. Host code: :func:`ce_rows`, with the checks, the denominator and the
reduction of the loss spec (:mod:`crossent._spec`).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from crossent import _core, _spec
from crossent.torch._options import Layout, LossOptions, Scales


@triton.jit
def _transform(x, inv_temp, cap, HAS_CAP: tl.constexpr):
    z = x * inv_temp
    if HAS_CAP:
        u = z / cap
        th = 1.0 - 2.0 / (tl.exp(2.0 * u) + 1.0)  # tanh(u), overflow-safe
        z = tl.where(x == float("-inf"), float("-inf"), cap * th)
    return z


@triton.jit
def _target_terms(
    x_row, y_ptr, w_ptr, row, ignore_index, inv_temp, cap,
    HAS_WEIGHT: tl.constexpr, IS_PROB: tl.constexpr, HAS_CAP: tl.constexpr,
):  # fmt: skip
    """``(valid, y, w_y, z_y)`` of a class-index row (``y`` made safe to load where ignored);
    ``(True, 0, 1, 0)`` for probability targets."""
    valid = True
    y_safe = 0
    wy = 1.0
    zy = 0.0
    if not IS_PROB:
        y = tl.load(y_ptr + row)
        valid = y != ignore_index
        y_safe = tl.where(valid, y, 0)
        if HAS_WEIGHT:
            wy = tl.load(w_ptr + y_safe).to(tl.float32)
        wy = tl.where(valid, wy, 0.0)
        zy = _transform(tl.load(x_row + y_safe).to(tl.float32), inv_temp, cap, HAS_CAP)
        zy = tl.where(wy > 0.0, zy, 0.0)
    return valid, y_safe, wy, zy


@triton.jit
def _class_weights(w_ptr, cols, inb, HAS_WEIGHT: tl.constexpr, BLOCK_C: tl.constexpr):
    wc = tl.full([BLOCK_C], 1.0, tl.float32)
    if HAS_WEIGHT:
        wc = tl.load(w_ptr + cols, mask=inb, other=0.0).to(tl.float32)
    return wc


@triton.jit
def _z_block(x_row, c0, C, inv_temp, cap, HAS_CAP: tl.constexpr, BLOCK_C: tl.constexpr):
    """Columns ``c0 : c0 + BLOCK_C`` of a row, as both sweeps read them: the column indices,
    the in-bounds mask, the transformed logits ``z`` in float32 (``-inf`` past ``C``) and
    ``z``'s finite mask."""
    ninf = float("-inf")
    cols = c0 + tl.arange(0, BLOCK_C)
    inb = cols < C
    x = tl.load(x_row + cols, mask=inb, other=ninf).to(tl.float32)
    z = _transform(x, inv_temp, cap, HAS_CAP)
    return cols, inb, z, z != ninf


@triton.jit
def _row_sums(x_row, q_row, w_ptr, C, inv_temp, cap,
              HAS_WEIGHT: tl.constexpr, IS_PROB: tl.constexpr, HAS_SMOOTH: tl.constexpr,
              HAS_CAP: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Sweep 1: the online max and ``Σ exp``, ``Σ_finite w_c z_c``, ``Σ_finite w_c``, the
    finite count ``k`` (label smoothing), ``Σ w_c q_c z_c`` and ``Σ w_c q_c`` (probabilities)."""
    ninf = float("-inf")
    m = ninf
    s = 0.0
    swz = 0.0
    w_fin = 0.0
    k = 0.0
    sqz = 0.0
    sq = 0.0
    for c0 in range(0, C, BLOCK_C):
        cols, inb, z, fin = _z_block(x_row, c0, C, inv_temp, cap, HAS_CAP, BLOCK_C)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        m_safe = tl.where(m_new == ninf, 0.0, m_new)
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe), axis=0)
        m = m_new
        wc = _class_weights(w_ptr, cols, inb, HAS_WEIGHT, BLOCK_C)
        if HAS_SMOOTH:
            swz += tl.sum(wc * tl.where(fin, z, 0.0), axis=0)
            w_fin += tl.sum(tl.where(fin, wc, 0.0), axis=0)
            k += tl.sum(fin.to(tl.float32), axis=0)
        if IS_PROB:
            wq = wc * tl.load(q_row + cols, mask=inb, other=0.0).to(tl.float32)
            sqz += tl.sum(
                tl.where(fin, wq * tl.where(fin, z, 0.0), tl.where(wq > 0.0, ninf, 0.0)), axis=0
            )
            sq += tl.sum(wq, axis=0)
    return m, s, swz, w_fin, k, sqz, sq


@triton.jit
def _write_grad(x_row, g_row, q_row, w_ptr, C, y_safe, lse, coef_p, rs, eps, k_safe,
                inv_temp, cap,
                HAS_WEIGHT: tl.constexpr, IS_PROB: tl.constexpr, HAS_SMOOTH: tl.constexpr,
                HAS_CAP: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Sweep 2: ``g = coef_p·p - rs·w_c·b_c`` times the transforms' chain rule, written over
    the block just read (``b_c``: the target's share of class ``c``)."""
    for c0 in range(0, C, BLOCK_C):
        cols, inb, z, fin = _z_block(x_row, c0, C, inv_temp, cap, HAS_CAP, BLOCK_C)
        p = tl.exp(z - lse)
        wc = _class_weights(w_ptr, cols, inb, HAS_WEIGHT, BLOCK_C)
        if IS_PROB:
            q = tl.load(q_row + cols, mask=inb, other=0.0).to(tl.float32)
            b = (1.0 - eps) * q
        else:
            b = tl.where(cols == y_safe, 1.0 - eps, 0.0)
        if HAS_SMOOTH:
            b += tl.where(fin, eps / k_safe, 0.0)
        g = coef_p * p - rs * wc * b  # float32: a confident p_y - 1 keeps its digits
        if HAS_CAP:
            t = tl.where(fin, z, 0.0) / cap
            g = g * tl.where(fin, 1.0 - t * t, 0.0)
        g = g * inv_temp
        tl.store(g_row + cols, g.to(g_row.dtype.element_ty), mask=inb)


@triton.jit
def _ce_kernel(
    x_ptr,  # (M, C) logits, rows contiguous
    g_ptr,  # (M, C) gradient out (may alias x_ptr)
    y_ptr,  # (M,) int64 targets, or (M, C) probabilities
    w_ptr,  # (C,) class weights (when HAS_WEIGHT)
    loss_ptr,  # (M,) float32 per-row losses
    lse_ptr,  # (M,) float32 per-row log-sum-exps
    scale,  # Scales.ce: 1/D for 'mean', 1 otherwise
    z_scale,  # Scales.z: 1/|V| for 'mean', 1 otherwise
    C,
    stride_x,
    stride_g,
    stride_q,
    ignore_index,
    eps,
    z_loss,
    inv_temp,
    cap,
    HAS_WEIGHT: tl.constexpr,
    IS_PROB: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    HAS_CAP: tl.constexpr,
    WANT_GRAD: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    q_row = y_ptr + row * stride_q  # the probability row (IS_PROB)
    valid, y_safe, wy, zy = _target_terms(x_row, y_ptr, w_ptr, row, ignore_index, inv_temp,
                                          cap, HAS_WEIGHT, IS_PROB, HAS_CAP)  # fmt: skip
    m, s, swz, w_fin, k, sqz, sq = _row_sums(x_row, q_row, w_ptr, C, inv_temp, cap, HAS_WEIGHT,
                                             IS_PROB, HAS_SMOOTH, HAS_CAP, BLOCK_C)  # fmt: skip
    s_safe = tl.where(s > 0.0, s, 1.0)
    lse = tl.where(m == float("-inf"), 0.0, m) + tl.log(s_safe)
    k_safe = tl.where(k > 0.0, k, 1.0)
    one_m_eps = 1.0 - eps
    if IS_PROB:
        a = one_m_eps * sq
        lin = one_m_eps * sqz  # Σ w q' z
        if HAS_SMOOTH:
            a += eps / k_safe * w_fin
            lin += eps / k_safe * swz
        loss = a * lse - lin
    else:
        a = one_m_eps * wy
        loss = one_m_eps * wy * (lse - zy)
        if HAS_SMOOTH:
            a += eps / k_safe * w_fin
            loss += eps / k_safe * (w_fin * lse - swz)
    loss += z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
    tl.store(lse_ptr + row, lse)
    if WANT_GRAD:
        rs = tl.where(valid, scale, 0.0)
        coef_p = rs * a + tl.where(valid, z_scale, 0.0) * (2.0 * z_loss * lse)
        _write_grad(x_row, g_ptr + row * stride_g, q_row, w_ptr, C, y_safe, lse, coef_p, rs,
                    eps, k_safe, inv_temp, cap, HAS_WEIGHT, IS_PROB, HAS_SMOOTH, HAS_CAP,
                    BLOCK_C)  # fmt: skip


def check_inputs(
    target: torch.Tensor,
    weight: torch.Tensor | None,
    c: int,
    opts: LossOptions,
    layout: Layout | None,
) -> None:
    """The target and the class weights, checked on the device with one host sync; what is
    wrong is then reported by the spec's own checks on host copies (the CPU's messages)."""
    flags = []
    if target.is_floating_point():
        sums = target.sum(dim=-1, dtype=torch.float64)
        tol = _spec.prob_sum_tolerance(target.dtype)
        bad_q = ~torch.isfinite(target).all() | (target < 0).any()
        flags.append(bad_q | ((sums - 1.0).abs() > tol).any())
    else:
        t = target if target.dtype in _SIGNED else target.long()
        flags.append(((t != opts.ignore_index) & ((t < 0) | (t >= c))).any())
    if weight is not None:
        flags.append(~torch.isfinite(weight).all() | (weight < 0).any())
    if not bool(torch.stack(flags).any()):
        return
    host = target.detach().cpu()
    if host.is_floating_point():
        q = host.to(torch.float64).numpy()
        _core.check_target(q, c, opts, layout, dtype=target.dtype)
    else:
        _core.check_target(host.numpy(), c, opts, layout)
    if weight is not None:
        _spec.check_class_weight(weight.detach().cpu().double().numpy(), c)


_SIGNED = (torch.int64, torch.int32, torch.int16, torch.int8)


# classes per block: at most 32 KiB of logits per sweep step and 4096 classes, 16 per thread
# of the 8 warps (8192 left the heaviest specialization 145 registers on sm_90, one resident
# block per SM: benchmarks/triton_compile.py)
MAX_BLOCK_BYTES = 32 * 1024
MAX_BLOCK_C = 4096


def block_size(c: int, itemsize: int) -> int:
    return int(min(triton.next_power_of_2(c), max(16, MAX_BLOCK_BYTES // itemsize), MAX_BLOCK_C))


def kernel_call(
    x: torch.Tensor,
    grad: torch.Tensor | None,
    q: torch.Tensor,
    weight: torch.Tensor | None,
    losses: torch.Tensor,
    lse: torch.Tensor,
    opts: LossOptions,
    scales: Scales,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``_ce_kernel``'s arguments and its launch options (the constexpr flags, the block size,
    ``num_warps``) for these tensors: what :func:`ce_rows` launches and what
    ``tests/test_triton_compile.py`` compiles for GPU targets."""
    c = x.shape[1]
    is_prob = q.is_floating_point()
    args = (
        x,
        grad if grad is not None else x,
        q,
        weight if weight is not None else x,
        losses,
        lse,
        scales.ce,
        scales.z,
        c,
        x.stride(0),
        grad.stride(0) if grad is not None else 0,
        q.stride(0) if is_prob else 0,
        opts.ignore_index,
        opts.label_smoothing,
        opts.z_loss,
        1.0 / opts.temperature,
        opts.softcap if opts.softcap is not None else 1.0,
    )
    num_warps = 8 if c >= 4096 else 4
    launch = {
        "HAS_WEIGHT": weight is not None,
        "IS_PROB": is_prob,
        "HAS_SMOOTH": opts.label_smoothing > 0.0,
        "HAS_CAP": opts.softcap is not None,
        "WANT_GRAD": grad is not None,
        "BLOCK_C": block_size(c, x.element_size()),
        "num_warps": num_warps,
        # stated, not Triton 3.9's default: it warns that its default changes in 3.10
        "enable_fp_fusion": True,
    }
    if num_warps == 4:
        # left to itself, sm_100's ptxas gave two 4-warp variants 56 registers and an 8-byte
        # spill; a stated cap of 255 (the most there is) avoids it. The 8-warp ones stay
        # uncapped: a cap of 128 made ptxas take 96 registers where it took 48 (fewer blocks)
        launch["maxnreg"] = 255
    return args, launch


def ce_rows(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    scales: Scales,
    want_grad: bool,
    layout: Layout | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-row losses, log-sum-exps and the gradient, like :func:`_cpu.ce_rows`."""
    m, c = x.shape
    check_inputs(target, weight, c, opts, layout)
    xd = x.detach()
    if xd.stride(-1) != 1:
        xd = xd.contiguous()
    grad = None
    if want_grad:
        grad = xd if opts.inplace and xd.data_ptr() == x.data_ptr() else torch.empty_like(xd)
    losses = torch.empty(m, dtype=torch.float32, device=x.device)
    lse = torch.empty(m, dtype=torch.float32, device=x.device)
    q = target.contiguous() if target.is_floating_point() else target.long()
    if m:
        args, launch = kernel_call(xd, grad, q, weight, losses, lse, opts, scales)
        _ce_kernel[(m,)](*args, **launch)
    return losses.double(), lse, grad
