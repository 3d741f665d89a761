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
gradient: 0 for ignored rows, ``1/D`` for ``'mean'``), times the chain rule of temperature and
soft-capping. A probability target's gradient, ``∂L/∂q_{n,c} = -s_n (1-ε) w_c log p_{n,c}``, is
written the same way.
"""

from __future__ import annotations

import torch

from crossent.torch._cpu import transform
from crossent.torch._options import LossOptions


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _row_scale(
    target: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    dtype: torch.dtype,
    n_rows: int | None = None,
) -> torch.Tensor:
    """``s_n`` of every row, ``(M, 1)``: the incoming gradient, 1/D for 'mean', 0 if ignored."""
    m = target.shape[0]
    g = grad_loss.to(dtype)
    g = g.reshape(-1, 1) if opts.reduction == "none" else g.reshape(1, 1).expand(m, 1)
    if target.is_floating_point():
        if opts.reduction == "mean":
            g = g / max(n_rows if n_rows is not None else m, 1)
        return g
    valid = (target != opts.ignore_index).reshape(-1, 1)
    g = g * valid
    if opts.reduction == "mean":
        y = torch.where(valid.squeeze(1), target, 0)
        ones = torch.ones(m, dtype=dtype, device=target.device)
        wy = weight.to(dtype)[y] if weight is not None else ones
        denom = (wy * valid.squeeze(1)).sum()
        g = g * torch.where(denom > 0, 1.0 / torch.clamp(denom, min=1e-300), 0.0)
    return g


def logits_grad(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
) -> torch.Tensor:
    """``∂L/∂logits`` times ``grad_loss`` for ``(M, C)`` logits, differentiable in all three.

    ``target``: ``(M,)`` indices or ``(M, C)`` probabilities; the result has the logits' dtype.
    """
    dtype = _compute_dtype(logits)
    z = transform(logits.to(dtype), opts)  # (M, C)
    m, c = z.shape
    fin = ~torch.isneginf(z)
    eps = opts.label_smoothing
    scale = _row_scale(target, weight, grad_loss, opts, dtype)  # (M, 1)
    if target.is_floating_point():
        q = target.to(dtype)
        rows = torch.ones(m, 1, dtype=torch.bool, device=z.device)
    else:
        rows = (target != opts.ignore_index).reshape(-1, 1)
        y = torch.where(rows.squeeze(1), target, 0)
        q = torch.nn.functional.one_hot(y, c).to(dtype)
    k = fin.sum(dim=1, keepdim=True, dtype=dtype).clamp(min=1)
    b = (1.0 - eps) * q + (eps / k) * fin
    if weight is not None:
        b = b * weight.to(dtype)
    zs = torch.where(rows, z, 0.0)  # ignored rows (maybe all -inf) must not give NaN
    lse = torch.logsumexp(zs, dim=1, keepdim=True)
    p = torch.exp(zs - lse)
    g = (b.sum(dim=1, keepdim=True) + 2.0 * opts.z_loss * lse) * p - b
    g = g * scale
    if opts.softcap is not None:
        t = torch.where(fin, z, 0.0) / opts.softcap  # tanh of the capped argument
        g = g * (1.0 - t * t)
    if opts.temperature != 1.0:
        g = g / opts.temperature
    return torch.where(fin, g, 0.0).to(logits.dtype)


def target_grad(
    logits: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    n_rows: int | None = None,
) -> torch.Tensor:
    """``∂L/∂q = -s_n (1-ε) w_c log p_{n,c}`` for ``(M, C)`` probability targets.

    ``n_rows``: the ``'mean'`` denominator when ``logits`` are a chunk of a larger batch.
    Differentiable when autograd records (``create_graph=True``).
    """
    dtype = _compute_dtype(logits)
    logp = torch.log_softmax(transform(logits.to(dtype), opts), dim=-1)
    g = logp * -(1.0 - opts.label_smoothing)
    if weight is not None:
        g = g * weight.to(dtype)
    dummy = logits.new_zeros(logits.shape[0], 1)  # floating: 'mean' divides by the rows
    g = g * _row_scale(dummy, None, grad_loss, opts, dtype, n_rows)
    return g.to(logits.dtype)


def linear_target_grad(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    class_weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    chunk: int,
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
        out[r0:r1] = target_grad(logits, class_weight, gl, opts, n_rows=n)
    return out
