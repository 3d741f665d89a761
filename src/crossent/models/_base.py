"""What both classifiers share: the scikit-learn contract, the objective and its penalties.

A model is a list of parameter arrays ``[W1, b1, W2, b2, ...]`` (weights ``(out, in)``, biases
``(out,)``) stored as views of one flat float64 vector ``theta``; subclasses say how to turn
``(params, X)`` into class scores and gradients. Only the weights are penalized. The training
loops themselves are in :mod:`crossent.models._solvers`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

import crossent
from crossent._penalties import check_penalty
from crossent._tabular import check_features
from crossent.models._optim import SCHEDULES, make_optimizer
from crossent.models._solvers import blas_threads, fit_lbfgs, fit_stochastic, unpack
from crossent.models._state import (
    TrainingState,
    classes_from_arrays,
    fitted_to_arrays,
    history_from_arrays,
    make_rng,
    params_from_arrays,
)

Params = list[NDArray[np.float64]]
Callback = Callable[[dict[str, Any]], Any]


def _check_number(
    value: Any, name: str, low: float, high: float = np.inf, *, integer=False, what: str = ""
):
    """A number in ``[low, high]``: a ``TypeError`` for a value that is not a number (an int
    with ``integer``), a ``ValueError`` for one out of range, as the loss's own checks do."""
    kinds = numbers.Integral if integer else numbers.Real
    what = what or ("an int" if integer else "a number")
    bounds = f">= {low:g}" if high == np.inf else f"in [{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name}: expected {what} {bounds}, got {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{name}: expected {what} {bounds}, got {value!r}")


class SoftmaxModelBase(ClassifierMixin, BaseEstimator):
    """Base class; see :class:`SoftmaxClassifier` and :class:`MLPClassifier`."""

    _solvers: tuple[str, ...] = ("lbfgs", "sgd", "adam")
    classes_: NDArray[Any]

    def _store_params(self, values: dict[str, Any]) -> None:
        """``__init__``'s body: each parameter stored unchanged under its own name."""
        for name in self._get_param_names():
            setattr(self, name, values[name])

    # ---- hooks for subclasses ------------------------------------------------------------
    def _shapes(self, n_features: int, n_classes: int) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def _init_params(self, params: Params, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _scores(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def _loss_grad(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.intp], grads: Params
    ) -> float:
        """Mean cross-entropy of the scores; writes d(loss)/d(params) into ``grads``."""
        raise NotImplementedError

    def _publish(self, params: Params) -> None:
        """Set the public fitted attributes (``coef_``, ...) from ``params``."""
        raise NotImplementedError

    def _params(self) -> Params:
        """The parameter list read back from the public fitted attributes."""
        raise NotImplementedError

    # ---- validation ----------------------------------------------------------------------
    def _check_hyperparameters(self) -> str:
        check_penalty(self.penalty)
        if isinstance(self.alpha, str):  # a string is a value of alpha's type: 'auto' or wrong
            if self.alpha != "auto":
                raise ValueError(f"alpha: expected 'auto' or a number >= 0, got {self.alpha!r}")
        else:
            _check_number(self.alpha, "alpha", 0.0, what="'auto' or a number")
        _check_number(self.l1_ratio, "l1_ratio", 0.0, 1.0)
        _check_number(self.max_iter, "max_iter", 1, integer=True)
        _check_number(self.tol, "tol", 0.0)
        _check_number(self.batch_size, "batch_size", 1, integer=True)
        _check_number(self.learning_rate_init, "learning_rate_init", 0.0)
        if not self.learning_rate_init > 0:
            raise ValueError(
                f"learning_rate_init: expected a number > 0, got {self.learning_rate_init!r}"
            )
        _check_number(self.momentum, "momentum", 0.0, 1.0)
        _check_number(self.validation_fraction, "validation_fraction", 0.0, 1.0)
        if self.early_stopping and not 0 < self.validation_fraction < 1:
            raise ValueError(
                "validation_fraction: expected a number in (0, 1) with early_stopping=True, "
                f"got {self.validation_fraction!r}"
            )
        _check_number(self.n_iter_no_change, "n_iter_no_change", 1, integer=True)
        _check_number(self.label_smoothing, "label_smoothing", 0.0, 1.0)
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {SCHEDULES}, got {self.lr_schedule!r}")
        return self._resolve_solver()

    def _resolve_solver(self) -> str:
        solver = self.solver
        if solver == "auto" and "auto" in self._solvers:
            return "lbfgs"
        if solver not in self._solvers:
            raise ValueError(f"solver: expected one of {self._solvers}, got {solver!r}")
        return str(solver)

    def _class_weight_vector(self, y_idx: NDArray[np.intp]) -> NDArray[np.float64] | None:
        cw = self.class_weight
        if cw is None:
            return None
        n_classes = len(self.classes_)
        if cw == "balanced":
            present = np.unique(y_idx)
            vec = np.ones(n_classes)
            vec[present] = compute_class_weight("balanced", classes=present, y=y_idx)
            return vec
        if not isinstance(cw, dict):
            raise ValueError(f"class_weight: expected None, 'balanced' or a dict, got {cw!r}")
        vec = np.ones(n_classes)
        for label, w in cw.items():
            where = np.flatnonzero(self.classes_ == label)
            if where.size == 0:
                raise ValueError(
                    f"class_weight: expected keys among the classes {self.classes_.tolist()}, "
                    f"got {label!r}"
                )
            vec[where[0]] = float(w)
        return vec

    # ---- objective -----------------------------------------------------------------------
    def _resolve_alpha(self, n_rows: int) -> float:
        """``alpha``, or for ``"auto"`` the strength of ``LogisticRegression(C=1)`` on ``n_rows``.

        Three or more classes: ``1/N``. Two classes (one weight vector ``w = W₁ − W₀`` in
        scikit-learn): ``2/((1 + ρ)·N)`` with ``ρ`` = 0 (L2), 1 (L1) or ``l1_ratio``.
        """
        if not isinstance(self.alpha, str):
            return float(self.alpha)
        if len(self.classes_) > 2:
            return 1.0 / n_rows
        rho = {"l1": 1.0, "elasticnet": float(self.l1_ratio)}.get(str(self.penalty), 0.0)
        return 2.0 / ((1.0 + rho) * n_rows)

    def _l1_strength(self, solver: str) -> float:
        """Strength of the L1 term the solver handles itself (L-BFGS: split; SGD: prox).

        0 when the L1 part is in the (sub)gradient instead (Adam) or there is none.
        """
        if solver not in ("sgd", "lbfgs") or self.penalty not in ("l1", "elasticnet"):
            return 0.0
        return self.alpha_ * (1.0 if self.penalty == "l1" else float(self.l1_ratio))

    def _smooth_penalty(self, solver: str) -> tuple[str | None, float]:
        """(kind, strength) of the penalty term that goes into the gradient."""
        if self.penalty is None or self.alpha_ == 0:
            return None, 0.0
        if self._l1_strength(solver) == 0.0:
            return self.penalty, self.alpha_
        if self.penalty == "elasticnet":
            return "l2", self.alpha_ * (1.0 - float(self.l1_ratio))
        return None, 0.0

    def _objective(
        self,
        theta: NDArray[np.float64],
        X: NDArray[np.float64],
        y: NDArray[np.intp],
        grad: NDArray[np.float64],
        solver: str,
    ) -> float:
        """Mean CE + the smooth part of ``alpha·R``; writes the gradient into ``grad``."""
        params, grads = unpack(theta, self._shapes_), unpack(grad, self._shapes_)
        return self._objective_views(params, grads, X, y, solver)

    def _objective_views(
        self,
        params: Params,
        grads: Params,
        X: NDArray[np.float64],
        y: NDArray[np.intp],
        solver: str,
    ) -> float:
        """:meth:`_objective` on the parameter and gradient views (the training loops' path)."""
        try:
            loss = self._loss_grad(params, X, y, grads)
        except ValueError as exc:  # the core's check of the scores: NaN or +inf
            if not str(exc).startswith("logits:"):
                raise
            loss = np.nan
        if not np.isfinite(loss):  # or finite scores whose loss overflows (an MLP)
            self._refuse_overflow(solver)
        kind, strength = self._smooth_penalty(solver)
        if kind == "l2":  # the hot path of L-BFGS: ½·α·‖W‖² without re-validating W
            for W, g in zip(params[0::2], grads[0::2], strict=True):
                loss += 0.5 * strength * float(np.vdot(W, W))
                g += strength * W
        elif kind is not None:
            weights = params[0::2]
            loss += crossent.penalty(weights, kind, strength, self.l1_ratio)
            for g, pg in zip(
                grads[0::2],
                crossent.penalty_grad(weights, kind, strength, self.l1_ratio),
                strict=True,
            ):
                g += pg
        return loss

    def _refuse_overflow(self, solver: str) -> NoReturn:
        """The one error for a training loss or parameters that left float64."""
        name, fix = ("X", "scale X (e.g. StandardScaler)")
        if solver != "lbfgs":
            name = "learning_rate_init"
            fix = f"lower it (now {self.learning_rate_init:g}) or {fix}"
        raise ValueError(
            f"{name}: expected a training loss that stays finite, got a loss of NaN or inf at "
            f"epoch {self.n_iter_ + 1}; {fix}"
        )

    def _l1_value(self, theta: NDArray[np.float64], strength: float) -> float:
        weights = unpack(theta, self._shapes_)[0::2]
        return crossent.penalty(weights, "l1", strength) if strength > 0 else 0.0

    # ---- fitting -------------------------------------------------------------------------
    def _initialize(self, n_features: int, rng: np.random.Generator, optimizer: str) -> None:
        self._shapes_ = self._shapes(n_features, len(self.classes_))
        theta = np.zeros(sum(int(np.prod(s)) for s in self._shapes_))
        self._init_params(unpack(theta, self._shapes_), rng)
        self._theta = theta
        self._publish(unpack(theta, self._shapes_))
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        for stale in ("validation_scores_", "best_validation_score_"):  # from an earlier fit
            self.__dict__.pop(stale, None)
        self._state = TrainingState.start(rng, optimizer, theta.size, self.momentum)

    def record_epoch(self, loss: float, validation_score: float | None = None) -> dict[str, Any]:
        """What a solver reports after each epoch (L-BFGS: each iteration): the loss (and the
        validation score) join the history, the training state counts it; returns what the
        ``callback`` of :meth:`fit` is given."""
        self._state.t += 1
        self.n_iter_ += 1
        self.loss_curve_.append(loss)
        info: dict[str, Any] = {"epoch": self.n_iter_, "loss": loss}
        if validation_score is not None:
            self.validation_scores_.append(validation_score)
            info["validation_score"] = validation_score
        return info

    def _rebuild_theta(self) -> None:
        """Copy the public attributes into a fresh ``theta`` and re-publish them as its views."""
        params = self._params()
        self._theta = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])
        self._publish(unpack(self._theta, self._shapes_))

    def fit(self, X: Any, y: Any, callback: Callback | None = None) -> SoftmaxModelBase:
        """Fit the model to ``X`` (N, D) and labels ``y`` (N,).

        Parameters
        ----------
        X : array_like, shape (N, D)
        y : array_like, shape (N,)
            Labels of any type (ints, strings, ...); at least two distinct values.
        callback : callable, optional
            Called after each epoch (L-BFGS: each iteration) with a dict ``{"epoch", "loss"}``;
            the estimator's attributes hold the current parameters during the call.

        Returns
        -------
        self
        """
        solver = self._check_hyperparameters()
        warm = bool(self.warm_start) and hasattr(self, "_theta")
        old_features = getattr(self, "n_features_in_", None)
        X, y = validate_data(self, X, y, dtype=np.float64)
        X = check_features(X, "X", use="in training")  # the data loaders' check: |x| <= 1e150
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"y: expected at least 2 classes, got 1 class ({classes[0]!r})")
        if warm and (old_features != X.shape[1] or not np.array_equal(classes, self.classes_)):
            raise ValueError(
                "warm_start: expected the same features and classes as the previous fit, got "
                f"{X.shape[1]} features and classes {classes.tolist()}"
            )
        self.classes_ = classes
        if warm:
            self._rebuild_theta()
            if self._state.optimizer.name != solver and solver != "lbfgs":
                self._state.optimizer = make_optimizer(
                    solver, self._theta.size, momentum=self.momentum
                )
        else:
            self._initialize(X.shape[1], make_rng(self.random_state), solver)
        self._weight = self._class_weight_vector(y_idx)
        self.alpha_ = self._resolve_alpha(len(y_idx))
        with blas_threads(solver, X), np.errstate(over="ignore", invalid="ignore"):
            if solver == "lbfgs":
                fit_lbfgs(self, X, y_idx, callback)
            else:
                fit_stochastic(self, X, y_idx, solver, self.max_iter, callback, self.early_stopping)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> SoftmaxModelBase:
        """One epoch of mini-batch SGD/Adam on ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X : array_like, shape (N, D)
        y : array_like, shape (N,)
            Labels, all among ``classes``.
        classes : array_like, shape (C,), optional
            Every label that will ever appear; required on the first call, then optional
            (and checked to be the same).

        Returns
        -------
        self

        Notes
        -----
        ``solver="lbfgs"`` (or ``"auto"`` with a smooth penalty) trains by SGD here, and early
        stopping is not used; the learning-rate schedule and the generator continue across calls.
        """
        solver = self._check_hyperparameters()
        solver = "sgd" if solver == "lbfgs" else solver
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, dtype=np.float64, reset=first)
        X = check_features(X, "X", use="in training")
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError(
                    "classes: expected the array of all labels on the first "
                    "call to partial_fit, got None"
                )
            self.classes_ = np.unique(np.asarray(classes))
            if self.classes_.size < 2:
                raise ValueError(f"classes: expected at least 2 classes, got {self.classes_}")
            self._initialize(X.shape[1], make_rng(self.random_state), solver)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes: expected {self.classes_.tolist()} as on the first call, got "
                f"{np.unique(classes).tolist()}"
            )
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(
                f"y: expected labels among {self.classes_.tolist()}, got "
                f"{np.unique(y[unknown]).tolist()}"
            )
        y_idx = np.searchsorted(self.classes_, y)
        self._rebuild_theta()
        if self._state.optimizer.name != solver:
            self._state.optimizer = make_optimizer(solver, self._theta.size, momentum=self.momentum)
        self._weight = self._class_weight_vector(y_idx)
        self.alpha_ = self._resolve_alpha(len(y_idx))
        with blas_threads(solver, X), np.errstate(over="ignore", invalid="ignore"):
            fit_stochastic(self, X, y_idx, solver, 1, None, False, stop=False)
        return self

    def penalized_weights(self) -> Params:
        """The weight matrices that the penalty acts on, biases excluded: ``[coef_]`` for the
        linear model, ``coefs_`` (every layer's) for the MLP."""
        check_is_fitted(self)
        return self._params()[0::2]

    # ---- the fitted state as arrays (what crossent.io saves and loads) -------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """The fitted model as ``(metadata, arrays)``: JSON-able values and plain arrays.

        Parameters, classes, the loss curve and the :class:`TrainingState`; with
        :meth:`from_arrays` a round trip that continues training exactly
        (:func:`crossent.io.save_model` writes these into one ``.npz``).
        """
        check_is_fitted(self)
        return fitted_to_arrays(self, self._params(), getattr(self, "_state", None))

    @classmethod
    def from_arrays(
        cls, params: dict[str, Any], meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> SoftmaxModelBase:
        """A fitted estimator ``cls(**params)`` from what :meth:`to_arrays` returned.

        Every array is checked (shape, finite values; classes sorted and unique); a
        ``ValueError`` names the entry that does not fit.
        """
        est = cls(**params)
        est._check_hyperparameters()
        for name, value in classes_from_arrays(meta, arrays).items():
            setattr(est, name, value)
        est._shapes_ = est._shapes(est.n_features_in_, est.classes_.size)
        est._publish(params_from_arrays(arrays, est._shapes_))
        est._rebuild_theta()
        for name, value in history_from_arrays(meta, arrays, est.alpha).items():
            setattr(est, name, value)
        size = est._theta.size
        if meta.get("state"):
            est._state = TrainingState.from_arrays(
                meta["state"], arrays, size=size, momentum=est.momentum
            )
        else:  # no state saved: a continued fit starts a fresh stream
            solver = est._resolve_solver()
            optimizer = "sgd" if solver == "lbfgs" else solver
            rng = make_rng(est.random_state)
            est._state = TrainingState.start(rng, optimizer, size, est.momentum)
        return est

    # ---- prediction ----------------------------------------------------------------------
    def _raw_scores(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._scores(self._params(), X)  # (N, C)

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Class scores ``(N, C)``; for two classes, ``s₁ − s₀`` with shape ``(N,)``."""
        scores = self._raw_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X: Any) -> NDArray[np.floating]:
        """Softmax of the class scores, ``(N, C)``, columns in the order of ``classes_``."""
        return crossent.softmax(self._raw_scores(X), axis=1)

    def predict_log_proba(self, X: Any) -> NDArray[np.floating]:
        """Log-softmax of the class scores, ``(N, C)`` (stable: no ``log(0)``)."""
        return crossent.log_softmax(self._raw_scores(X), axis=1)

    def predict(self, X: Any) -> NDArray[Any]:
        """The class of highest score for each row of ``X``."""
        scores = self._raw_scores(X)  # (N, C); checks that the model is fitted
        return self.classes_[np.argmax(scores, axis=1)]
