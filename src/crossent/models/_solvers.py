r"""The training loops: full-batch L-BFGS and mini-batch SGD/Adam, on an estimator's ``theta``.

Both run on the flat parameter vector of a :class:`~crossent.models._base.SoftmaxModelBase` and
its objective (mean cross-entropy + ``alpha·R``), and keep their progress in the estimator's
:class:`~crossent.models._state.TrainingState`.

L-BFGS handles the L1 part ``λ‖W‖₁`` exactly by splitting each weight into two non-negative
parts, ``W = W⁺ − W⁻`` with ``W⁺, W⁻ ≥ 0``: the objective becomes smooth,

.. math:: \operatorname{CE}(W^+ - W^-) + \lambda \textstyle\sum (W^+ + W^-) + \ldots,

with simple bounds that L-BFGS-B enforces by projection, so weights end exactly at zero. At a
minimum at most one part of each weight is non-zero and the split objective equals the original.

The stochastic loop applies the L1 part by a proximal step after each SGD update (Adam: by its
subgradient), counts epochs over the whole run (so a warm start or a resumed checkpoint continues
the learning-rate schedule and the random stream exactly), and stops when the loss — or, with
early stopping, the validation accuracy — has not improved by ``tol`` for ``n_iter_no_change``
epochs; it then returns the parameters of the best epoch, not those of the last.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from crossent.models._optim import learning_rate_at

__all__ = ["blas_threads", "fit_lbfgs", "fit_stochastic", "unpack", "weight_spans"]


def unpack(theta: NDArray[np.float64], shapes: list[tuple[int, ...]]) -> list[NDArray[np.float64]]:
    """Views of ``theta`` with the given shapes, in order."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(theta[start : start + size].reshape(shape))
        start += size
    return out


def weight_spans(shapes: list[tuple[int, ...]]) -> list[slice]:
    """Where the weights (entries 0, 2, 4, ... of ``shapes``; not the biases) lie in ``theta``."""
    spans, start = [], 0
    for i, shape in enumerate(shapes):
        size = int(np.prod(shape))
        if i % 2 == 0:
            spans.append(slice(start, start + size))
        start += size
    return spans


_CONTROLLER: list[Any] = []


def blas_threads(solver: str, X: NDArray[np.float64]) -> Any:
    """One BLAS thread for small matrix products (mini-batches, small full batches).

    Threads cost more than they give on products of a few hundred rows, and on a busy machine
    OpenBLAS's spinning threads make them up to 30x slower.
    """
    from contextlib import nullcontext

    if solver == "lbfgs" and X.size > 5_000_000:  # large full batches: let BLAS use threads
        return nullcontext()
    if not _CONTROLLER:  # finding the BLAS libraries takes milliseconds: do it once
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def fit_lbfgs(est: Any, X: NDArray[np.float64], y: NDArray[np.intp], callback: Any) -> None:
    """Minimize ``est``'s full-batch objective over ``est._theta`` with SciPy's L-BFGS-B.

    The L1 part (if any) by the split ``W = W⁺ − W⁻`` of the module docstring: the variables are
    ``x = (theta with W⁺ in the weights' places, W⁻)``. Stops when the projected gradient's
    largest entry is below ``est.tol`` (as scikit-learn's ``LogisticRegression``) or after
    ``est.max_iter`` iterations (then a ``ConvergenceWarning``).
    """
    from scipy.optimize import Bounds, minimize

    theta, grad = est._theta, np.empty_like(est._theta)
    params, grads = unpack(theta, est._shapes_), unpack(grad, est._shapes_)
    l1 = est._l1_strength("lbfgs")
    is_w = np.zeros(theta.size, dtype=bool)  # (P,): the penalized entries
    if l1 > 0:
        for span in weight_spans(est._shapes_):
            is_w[span] = True
    n_split = int(is_w.sum()) if l1 > 0 else 0

    def set_theta(x: NDArray[np.float64]) -> None:
        theta[:] = x[: theta.size]
        if n_split:
            theta[is_w] -= x[theta.size :]

    def fun(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        set_theta(x)
        loss = est._objective_views(params, grads, X, y, "lbfgs")
        if not n_split:
            return loss, grad.copy()
        loss += l1 * (float(x[: theta.size][is_w].sum()) + float(x[theta.size :].sum()))
        return loss, np.concatenate([grad + l1 * is_w, l1 - grad[is_w]])

    def on_iteration(intermediate_result: Any) -> None:
        set_theta(intermediate_result.x)
        info = est.record_epoch(float(intermediate_result.fun))
        if callback is not None:
            callback(info)

    x0, bounds = theta.copy(), None
    if n_split:
        x0[is_w] = np.maximum(theta[is_w], 0.0)
        x0 = np.concatenate([x0, np.maximum(-theta[is_w], 0.0)])
        low = np.concatenate([np.where(is_w, 0.0, -np.inf), np.zeros(n_split)])
        bounds = Bounds(low, np.full(x0.size, np.inf))
    res = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=on_iteration,
        options={
            "maxiter": est.max_iter,
            "maxls": 50,
            "gtol": est.tol,
            "ftol": 64 * np.finfo(float).eps,
        },
    )
    set_theta(res.x)
    if res.status == 1:
        warnings.warn(
            f"{type(est).__name__}: L-BFGS did not converge in max_iter={est.max_iter} "
            "iterations; increase max_iter or scale the data",
            ConvergenceWarning,
            stacklevel=3,
        )


def fit_stochastic(
    est: Any,
    X: NDArray[np.float64],
    y: NDArray[np.intp],
    solver: str,
    epochs: int,
    callback: Any,
    early_stopping: bool,
    *,
    stop: bool = True,
) -> None:
    """Run ``epochs`` epochs of shuffled mini-batch SGD/Adam on ``est._theta``.

    Each epoch: learning rate from the schedule at the run's epoch count, a permutation drawn
    from the run's generator, one optimizer step per batch of ``est.batch_size`` rows, then the
    proximal L1 step (SGD). The epoch loss is the mean of the batch objectives plus the L1 term.
    ``stop=False`` (``partial_fit``): no stopping, no return to the best epoch, no warning.
    """
    st, theta = est._state, est._theta
    if early_stopping:
        if st.val_idx is None:
            n_val = max(1, round(est.validation_fraction * len(X)))
            st.val_idx = np.sort(st.rng.permutation(len(X))[:n_val])
        is_val = np.zeros(len(X), dtype=bool)
        is_val[st.val_idx] = True
        X_val, y_val, X, y = X[is_val], y[is_val], X[~is_val], y[~is_val]
        if not hasattr(est, "validation_scores_"):
            est.validation_scores_ = []
    n = len(X)
    batch = min(est.batch_size, n)
    grad = np.empty_like(theta)
    opt = st.optimizer
    l1 = est._l1_strength(solver)
    spans = weight_spans(est._shapes_)
    params, grads = unpack(theta, est._shapes_), unpack(grad, est._shapes_)
    stopped = False
    for _ in range(epochs):
        lr = learning_rate_at(est.lr_schedule, est.learning_rate_init, st.t)
        order = st.rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss_b = est._objective_views(params, grads, X[idx], y[idx], solver)
            total += loss_b * len(idx)
            opt.step(theta, grad, lr)
            if l1 > 0:
                opt.shrink(theta, spans, lr * l1)
        loss = total / n + est._l1_value(theta, l1)
        if not (np.isfinite(loss) and np.isfinite(theta).all()):  # the last step overflowed
            est._refuse_overflow(solver)
        score = None
        if early_stopping:
            score = float(np.mean(est._scores(est._params(), X_val).argmax(1) == y_val))
        info = est.record_epoch(loss, score)
        if score is not None:
            st.no_improve = 0 if score > st.best_score + est.tol else st.no_improve + 1
            if score > st.best_score:
                st.best_score, st.best_theta = score, theta.copy()
        else:
            st.no_improve = 0 if loss < st.best_loss - est.tol else st.no_improve + 1
            if loss < st.best_loss:
                st.best_loss, st.best_theta = loss, theta.copy()
        if callback is not None:
            callback(info)
        if stop and st.no_improve >= est.n_iter_no_change:
            stopped = True
            break
    if (early_stopping or stopped) and st.best_theta is not None:
        theta[:] = st.best_theta  # the best epoch's parameters, not the last one's
    if early_stopping:
        est.best_validation_score_ = st.best_score
    if stop and not stopped:
        warnings.warn(
            f"{type(est).__name__}: {solver} reached max_iter={epochs} epochs before "
            f"the loss stopped improving by tol={est.tol}",
            ConvergenceWarning,
            stacklevel=3,
        )
