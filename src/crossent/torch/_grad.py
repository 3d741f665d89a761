r"""The gradients in differentiable torch ops: second derivatives and the target's gradient.

The forward pass computes ``∂L/∂x`` with crossent's engine and backward only scales it; that
tensor has no graph. When autograd is asked for one (``create_graph=True``: gradient penalties,
Hessian-vector products, ``gradgradcheck``), backward recomputes the same gradient from the
saved logits with torch ops, which autograd can differentiate again:

.. math::

    \frac{\partial L}{\partial z_{n,c}} = s_n \big[(a_n + 2\lambda\,\mathrm{lse}(z_n))\,p_{n,c}
        - b_{n,c}\big],
    \qquad b_{n,c} = w_c\,\big((1-\varepsilon)\,q_{n,c}
        + \tfrac{\varepsilon}{k_n}\,1[z_{n,c} > -\infty]\big),
    \qquad a_n = \textstyle\sum_c b_{n,c}

(``q`` the one-hot of the label for index targets, ``s_n`` the row's share of the incoming
gradient: 0 for ignored rows, the spec's ``'mean'`` scales: ``1/D`` on the cross-entropy,
``1/|V|`` on the z-term), times the chain rule of temperature and soft-capping. A
probability target's gradient, ``∂L/∂q_{n,c} = -s_n (1-ε) w_c log p_{n,c}``, is written the
same way.
"""

from __future__ import annotations

from typing import Any

import torch

from crossent import _algebra
from crossent.torch._cpu import transform
from crossent.torch._options import LossOptions, Scales, scales_for


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _incoming(grad_loss: torch.Tensor, opts: LossOptions, dtype: torch.dtype) -> torch.Tensor:
    """The incoming gradient as ``(M, 1)`` or a scalar."""
    g = grad_loss.to(dtype)
    return g.reshape(-1, 1) if opts.reduction == "none" else g


def _column(v: Any) -> Any:
    """A per-row coefficient as a column (a number or 0-d tensor as it is)."""
    return v[:, None] if isinstance(v, torch.Tensor) and v.ndim == 1 else v


def logits_grad(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    scales: Scales | None = None,
) -> torch.Tensor:
    """``∂L/∂logits`` times ``grad_loss`` for ``(M, C)`` logits, differentiable in all three.

    ``target``: ``(M,)`` indices or ``(M, C)`` probabilities; ``scales``: the batch's (the
    spec's ``'mean'`` scales of ``target`` when not given). The result has the logits' dtype.
    The per-row statistics are taken with torch ops, shifted by the log-sum-exp (so that
    ``exp`` gives ``p`` and its sum is 1); the coefficients come from :mod:`crossent._algebra`.
    """
    dtype = _compute_dtype(logits)
    if scales is None:
        scales = scales_for(target, weight, opts)
    z = transform(logits.to(dtype), opts)  # (M, C)
    fin = ~torch.isneginf(z)
    valid = None
    if target.is_floating_point():
        q = target.to(dtype)
    else:
        valid = target != opts.ignore_index
        y = torch.where(valid, target, 0).long()
        q = torch.nn.functional.one_hot(y, z.shape[1]).to(dtype)
    w = weight.to(dtype) if weight is not None else 1.0
    wq, wf = q * w, fin * w
    k = fin.sum(dim=1, dtype=dtype).clamp(min=1)
    a, _ = _algebra.target_sums(wq.sum(1), 0.0, label_smoothing=opts.label_smoothing, k=k,
                                finite_weight=wf.sum(1))  # fmt: skip
    # ignored rows (maybe all -inf) must not give NaN
    zs = torch.where(valid[:, None], z, 0.0) if valid is not None else z
    lse = torch.logsumexp(zs, dim=1)
    g_in = grad_loss.to(dtype)
    g_in = g_in.reshape(-1) if opts.reduction == "none" else g_in
    co = _algebra.grad_coefficients(
        a, lse, torch.ones_like(lse), scale=scales.ce * g_in, z_scale=scales.z * g_in,
        z_loss=opts.z_loss, label_smoothing=opts.label_smoothing, k=k, valid=valid,
    )  # fmt: skip
    g = _column(co.p) * torch.exp(zs - lse[:, None]) - _column(co.target) * wq
    if opts.label_smoothing:
        g = g - _column(co.smooth) * wf
    tanh_u = torch.where(fin, z, 0.0) / opts.softcap if opts.softcap is not None else None
    g = g * _algebra.chain_factor(tanh_u, opts.temperature)
    return torch.where(fin, g, 0.0).to(logits.dtype)


def target_grad(
    logits: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    scale: float | torch.Tensor,
) -> torch.Tensor:
    """``∂L/∂q_{n,c} = -s (1-ε) w_c log p_{n,c}`` for ``(M, C)`` probability targets.

    ``scale`` is ``1/D`` (:attr:`crossent._spec.Scales.ce`); differentiable when autograd
    records (``create_graph=True``).
    """
    dtype = _compute_dtype(logits)
    logp = torch.log_softmax(transform(logits.to(dtype), opts), dim=-1)
    return scale_target_grad(logp, weight, grad_loss, opts, scale).to(logits.dtype)


def scale_target_grad(
    logp: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    scale: float | torch.Tensor,
) -> torch.Tensor:
    """``-(1-ε)·w_c·log p`` times the incoming gradient and ``scale``, from ``log p`` (also the
    vocabulary-parallel path's, with its global ``log p``); in ``logp``'s dtype."""
    g = logp * -(1.0 - opts.label_smoothing)
    if weight is not None:
        g = g * weight.to(g.dtype)
    if isinstance(scale, torch.Tensor):
        scale = scale.to(g.dtype)
    return g * _incoming(grad_loss, opts, g.dtype) * scale


def linear_target_grad(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    chunk: int,
    scale: float,
) -> torch.Tensor:
    """A probability target's gradient in :func:`~crossent.torch.linear_cross_entropy`.

    ``-s_n (1-ε) w_c log p_{n,c}``, a chunk of rows at a time: the logits ``x @ w.T + b`` are
    never held whole.
    """
    n = x.shape[0]
    out = torch.empty((n, w.shape[0]), dtype=x.dtype, device=x.device)
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        logits = torch.nn.functional.linear(x[r0:r1], w, b)
        gl = grad_loss[r0:r1] if opts.reduction == "none" else grad_loss
        out[r0:r1] = target_grad(logits, class_weight, gl, opts, scale)
    return out
