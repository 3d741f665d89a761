r"""The training loops: full-batch L-BFGS and mini-batch SGD/Adam, on an estimator's ``theta``.

Both run on the flat parameter vector of a :class:`~crossent.models._base.SoftmaxModelBase` and
its objective (mean cross-entropy + ``alpha·R``), and keep their progress in the estimator's
:class:`~crossent.models._state.TrainingState`.

L-BFGS handles the L1 part ``λ‖W‖₁`` exactly by splitting each weight into two non-negative
parts, ``W = W⁺ − W⁻`` with ``W⁺, W⁻ ≥ 0``: the objective becomes smooth,

.. math:: \operatorname{CE}(W^+ - W^-) + \lambda \textstyle\sum (W^+ + W^-) + \ldots,

with simple bounds that L-BFGS-B enforces by projection, so weights end exactly at zero. At a
minimum at most one part of each weight is non-zero and the split objective equals the original.
The split is degenerate where both parts sit at 0, and L-BFGS-B can stall there above the
minimum; the fit then goes on orthant by orthant (each weight's sign fixed, where ``J`` is
smooth) until the smallest subgradient is below ``tol`` — the optimality test scikit-learn's
solvers apply — or warns that it stopped above it.

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


def optimality(
    theta: NDArray[np.float64], grad: NDArray[np.float64], is_w: NDArray[np.bool_], l1: float
) -> float:
    """Largest entry of the smallest subgradient of ``J`` (the gradient where ``J`` is smooth).

    0 exactly at a minimum. With an L1 part ``l1·‖W‖₁``: ``g + l1·sign(W)`` where ``W ≠ 0``,
    ``max(|g| − l1, 0)`` where ``W = 0``; ``g`` elsewhere (biases, no L1).
    """
    if l1 == 0.0:
        return float(np.abs(grad).max(initial=0.0))
    sub = grad.copy()
    w, g = theta[is_w], grad[is_w]
    sub[is_w] = np.where(w != 0.0, g + l1 * np.sign(w), np.maximum(np.abs(g) - l1, 0.0))
    return float(np.abs(sub).max(initial=0.0))


class _Lbfgs:
    """One L-BFGS fit: the estimator's views, its L1 strength and the iteration bookkeeping."""

    def __init__(self, est: Any, X: NDArray[np.float64], y: NDArray[np.intp], callback: Any):
        self.est, self.X, self.y, self.callback = est, X, y, callback
        self.theta, self.grad = est._theta, np.empty_like(est._theta)
        self.params, self.grads = unpack(self.theta, est._shapes_), unpack(self.grad, est._shapes_)
        self.l1 = est._l1_strength("lbfgs")
        self.is_w = np.zeros(self.theta.size, dtype=bool)  # (P,): the L1-penalized entries
        if self.l1 > 0:
            for span in weight_spans(est._shapes_):
                self.is_w[span] = True
        self.left = est.max_iter  # iterations still allowed
        self.converged = False  # did the last run end by one of L-BFGS-B's rules?

    def smooth(self) -> float:
        """The smooth part of ``J`` at ``theta`` (mean CE + the L2 part); gradient in ``grad``."""
        return float(self.est._objective_views(self.params, self.grads, self.X, self.y, "lbfgs"))

    def objective(self) -> float:
        """``J`` at ``theta``, the L1 part included."""
        return self.smooth() + self.l1 * float(np.abs(self.theta[self.is_w]).sum())

    def record(self) -> None:
        """An iteration done: ``loss_curve_`` gets ``J`` at the current ``theta``."""
        self.left -= 1
        info = self.est.record_epoch(self.objective())
        if self.callback is not None:
            self.callback(info)

    def run(self, fun: Any, x0: Any, lo: Any, hi: Any, to_theta: Any) -> Any:
        """SciPy's L-BFGS-B from ``x0`` within ``[lo, hi]``; ``tol`` reaches both its rules."""
        from scipy.optimize import Bounds, minimize

        tol = self.est.tol
        bounds = None if lo is None else Bounds(lo, hi)
        # ftol: relative decrease of J per step; scaled with tol (64 eps at the default 1e-4),
        # so that a smaller tol is never stopped by it before the gradient rule
        ftol = 64 * np.finfo(float).eps * min(1.0, tol / 1e-4)

        def on_iteration(intermediate_result: Any) -> None:
            to_theta(intermediate_result.x)
            self.record()

        opts = {"maxiter": max(self.left, 1), "maxls": 50, "gtol": tol, "ftol": ftol}
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       callback=on_iteration, options=opts)  # fmt: skip
        to_theta(res.x)
        # SciPy's two rules, both from tol: the gradient's, or J's relative decrease (ftol);
        # an ftol below eps only stops where J cannot decrease in float64 (not convergence)
        self.converged = res.status == 0 and ftol >= np.finfo(float).eps
        return res


def _split_fit(fit: _Lbfgs) -> None:
    """L-BFGS-B on the split ``W = W⁺ − W⁻`` of the module docstring (or on ``theta`` alone
    without an L1 part): the variables are ``x = (theta with W⁺ in the weights' places, W⁻)``."""
    theta, is_w, l1 = fit.theta, fit.is_w, fit.l1
    n_split = int(is_w.sum()) if l1 > 0 else 0

    def set_theta(x: NDArray[np.float64]) -> None:
        theta[:] = x[: theta.size]
        if n_split:
            theta[is_w] -= x[theta.size :]

    def fun(x: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        set_theta(x)
        loss = fit.smooth()
        if not n_split:
            return loss, fit.grad.copy()
        loss += l1 * (float(x[: theta.size][is_w].sum()) + float(x[theta.size :].sum()))
        return loss, np.concatenate([fit.grad + l1 * is_w, l1 - fit.grad[is_w]])

    if not n_split:
        fit.run(fun, theta.copy(), None, None, set_theta)
        return
    x0 = np.concatenate([np.where(is_w, np.maximum(theta, 0.0), theta),
                         np.maximum(-theta[is_w], 0.0)])  # fmt: skip
    low = np.concatenate([np.where(is_w, 0.0, -np.inf), np.zeros(n_split)])
    fit.run(fun, x0, low, np.full(x0.size, np.inf), set_theta)


# rounds of the orthant-wise refinement after the split fit (each is one L-BFGS-B run)
ORTHANT_ROUNDS = 20


def _orthant_fit(fit: _Lbfgs) -> float:
    """Refine an L1 fit orthant by orthant; returns the final :func:`optimality`.

    The split problem is degenerate where both parts of a weight sit at their bound 0, and
    L-BFGS-B can stall there above the minimum (iris, elastic net at ``C = 100``: J 6e-4 above
    it, whatever ``tol``). Within one orthant — each weight's sign fixed, zeros held at 0 —
    ``J = CE + l1·Σ sign(W)·W`` is smooth: L-BFGS-B with bounds ``sign(W)·W ≥ 0`` solves it
    without a split. Between rounds a zero weight whose gradient exceeds ``l1`` enters with
    the sign that decreases ``J``; a weight that reached 0 may leave. This stops at a point
    where the smallest subgradient is below ``tol`` (the minimum), as saga does, in seconds.
    """
    theta, is_w, l1 = fit.theta, fit.is_w, fit.l1
    for _ in range(ORTHANT_ROUNDS):
        fit.smooth()
        viol = optimality(theta, fit.grad, is_w, l1)
        if viol <= fit.est.tol or fit.left <= 0:
            return viol
        sign = np.where(is_w, np.sign(theta), 0.0)
        enter = is_w & (sign == 0.0) & (np.abs(fit.grad) > l1)
        sign[enter] = -np.sign(fit.grad[enter])
        free = ~is_w | (sign != 0.0)  # (P,): the variables of this round
        s = sign[free]

        def to_theta(v: NDArray[np.float64], free: Any = free) -> None:
            theta[:] = 0.0
            theta[free] = v

        def fun(v: NDArray[np.float64], free: Any = free, s: Any = s) -> Any:
            to_theta(v, free)
            loss = fit.smooth() + l1 * float(s @ v)
            return loss, fit.grad[free] + l1 * s

        fit.run(fun, theta[free], np.where(s > 0, 0.0, -np.inf), np.where(s < 0, 0.0, np.inf),
                to_theta)  # fmt: skip
    fit.smooth()
    return optimality(theta, fit.grad, is_w, l1)


def fit_lbfgs(est: Any, X: NDArray[np.float64], y: NDArray[np.intp], callback: Any) -> None:
    """Minimize ``est``'s full-batch objective over ``est._theta`` with SciPy's L-BFGS-B.

    The L1 part (if any) by the split ``W = W⁺ − W⁻`` of the module docstring, then orthant by
    orthant (:func:`_orthant_fit`). Stops when the smallest subgradient's largest entry (the
    projected gradient's, as scikit-learn's ``LogisticRegression``) is below ``est.tol``; a fit
    that ends above it (``max_iter`` reached, or no further decrease possible) warns
    ``ConvergenceWarning``. ``loss_curve_`` holds ``J`` at each iteration's parameters.
    """
    fit = _Lbfgs(est, X, y, callback)
    _split_fit(fit)
    if fit.l1 > 0:
        viol = _orthant_fit(fit)
    else:
        fit.smooth()
        viol = optimality(fit.theta, fit.grad, fit.is_w, 0.0)
    if viol <= est.tol or fit.converged:
        return
    why = (
        f"did not converge in max_iter={est.max_iter} iterations; increase max_iter or scale "
        "the data"
        if fit.left <= 0
        else f"stopped where its line search finds no decrease of J, above tol={est.tol}; "
        "scale the data or raise tol"
    )
    warnings.warn(
        f"{type(est).__name__}: L-BFGS {why} (largest entry of the smallest subgradient: "
        f"{viol:.1e})",
        ConvergenceWarning,
        stacklevel=3,
    )


def _hold_out(
    est: Any, X: NDArray[np.float64], y: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64], NDArray[np.intp]]:
    """Early stopping: ``(X, y)`` of the rows trained on and of the held-out rows (drawn once
    per run from its generator, then kept in the training state)."""
    st = est._state
    if st.val_idx is None:
        n_val = max(1, round(est.validation_fraction * len(X)))
        st.val_idx = np.sort(st.rng.permutation(len(X))[:n_val])
    is_val = np.zeros(len(X), dtype=bool)
    is_val[st.val_idx] = True
    if not hasattr(est, "validation_scores_"):
        est.validation_scores_ = []
    return X[~is_val], y[~is_val], X[is_val], y[is_val]


def _end_of_epoch(est: Any, theta: NDArray[np.float64], loss: float, val: Any) -> dict[str, Any]:
    """Record an epoch's loss (and validation score, ``val = (X, y)`` held out) and keep the
    best parameters so far; the callback's dictionary."""
    st = est._state
    score = None
    if val is not None:
        score = float(np.mean(est._scores(est._params(), val[0]).argmax(1) == val[1]))
    info: dict[str, Any] = est.record_epoch(loss, score)
    if score is not None:
        st.no_improve = 0 if score > st.best_score + est.tol else st.no_improve + 1
        if score > st.best_score:
            st.best_score, st.best_theta = score, theta.copy()
    else:
        st.no_improve = 0 if loss < st.best_loss - est.tol else st.no_improve + 1
        if loss < st.best_loss:
            st.best_loss, st.best_theta = loss, theta.copy()
    return info


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
    val = None
    if early_stopping:
        X, y, *held = _hold_out(est, X, y)
        val = tuple(held)
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
        info = _end_of_epoch(est, theta, loss, val)
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
