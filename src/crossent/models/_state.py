"""A fitted classifier as plain arrays, and the training state that continues its run.

:class:`TrainingState` is everything ``warm_start``, ``partial_fit`` and a saved checkpoint need
to continue a run exactly where it stopped. :func:`fitted_to_arrays` and
the ``*_from_arrays`` readers are the one definition of a fitted estimator's array form — the
layout of :mod:`crossent.io`'s model files (format version 1); the estimator sets its own
attributes from what they read (:meth:`~crossent.models.SoftmaxClassifier.from_arrays`):

- metadata: ``n_features_in``, ``n_iter``, ``best_validation_score``, ``alpha`` (the strength
  used) and ``state`` (the training state's scalars: ``t``, ``optimizer``, ``rng``,
  ``best_loss``, ``best_score``, ``no_improve``);
- arrays: ``classes``, ``param_0 … param_{2L-1}`` (``W1, b1, …``), ``loss_curve``,
  ``validation_scores``, and the training state's ``opt_*``, ``best_theta``, ``val_idx``.

:func:`checked_array` is the one check of an array read back.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent.models._optim import OPTIMIZERS, SGD, Adam, make_optimizer

__all__ = [
    "TrainingState",
    "checked_array",
    "classes_from_arrays",
    "fitted_to_arrays",
    "history_from_arrays",
    "make_rng",
    "params_from_arrays",
]


def checked_array(
    arrays: dict[str, NDArray[Any]], key: str, shape: tuple[int, ...] | None = None
) -> NDArray[Any]:
    """``arrays[key]``; with ``shape``, also checked to be finite floats of that shape.

    Raises ``ValueError`` naming the entry, what was expected and what was found.
    """
    if key not in arrays:
        raise ValueError(f"expected an array {key!r}, got none")
    arr = arrays[key]
    if shape is not None:
        if arr.shape != tuple(shape) or arr.dtype.kind != "f":
            raise ValueError(
                f"expected {key} of shape {tuple(shape)} (float), got {arr.shape} ({arr.dtype})"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"expected finite values in {key}, got NaN or inf")
    return arr


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def make_rng(random_state: Any) -> np.random.Generator:
    """A ``np.random.Generator`` from ``None``, an int, a ``Generator`` or a ``RandomState``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(np.iinfo(np.int32).max)))
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(None if random_state is None else int(random_state))
    raise TypeError(
        "random_state: expected None, an int, a numpy Generator or RandomState, "
        f"got {random_state!r}"
    )


@dataclass
class TrainingState:
    """Where a run stands after its last epoch (L-BFGS: iteration).

    ``theta`` below is the flat vector of all parameters (size ``P``).
    """

    rng: np.random.Generator
    """The run's random stream: shuffling and the validation split draw from it."""
    optimizer: SGD | Adam
    """SGD or Adam, with its moments (``P`` floats each)."""
    t: int = 0
    """Epochs (iterations) run so far: the learning-rate schedule's clock."""
    best_loss: float = np.inf
    """Lowest epoch loss so far."""
    best_score: float = -np.inf
    """Highest validation accuracy so far (early stopping)."""
    no_improve: int = 0
    """Epochs since the criterion last improved by ``tol``."""
    best_theta: NDArray[np.float64] | None = None
    """``theta`` at the best epoch so far (by validation accuracy or by loss)."""
    val_idx: NDArray[np.intp] | None = None
    """Rows of the training data held out for early stopping (sorted)."""

    @classmethod
    def start(cls, rng: np.random.Generator, optimizer: str, size: int, momentum: float):
        """A fresh state for ``size`` parameters."""
        return cls(rng=rng, optimizer=make_optimizer(optimizer, size, momentum=momentum))

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """``(scalars, arrays)``: JSON-able values and plain arrays; see :meth:`from_arrays`."""
        scalars = {
            "t": int(self.t),
            "optimizer": self.optimizer.name,
            "rng": self.rng.bit_generator.state,
            "best_loss": _finite_or_none(self.best_loss),
            "best_score": _finite_or_none(self.best_score),
            "no_improve": int(self.no_improve),
        }
        arrays = {f"opt_{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()}
        if self.best_theta is not None:
            arrays["best_theta"] = np.asarray(self.best_theta, dtype=np.float64)
        if self.val_idx is not None:
            arrays["val_idx"] = np.asarray(self.val_idx)
        return scalars, arrays

    @classmethod
    def from_arrays(
        cls,
        scalars: dict[str, Any],
        arrays: dict[str, NDArray[Any]],
        *,
        size: int,
        momentum: float,
    ) -> TrainingState:
        """The state that :meth:`to_arrays` wrote, for ``size`` parameters.

        Raises ``ValueError`` (naming the entry) for anything missing or of the wrong shape.
        """
        name = scalars.get("optimizer")
        if name not in OPTIMIZERS:
            raise ValueError(f"expected state optimizer one of {OPTIMIZERS}, got {name!r}")
        opt = make_optimizer(name, size, momentum=momentum)
        moments = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
        for key, value in moments.items():
            if value.ndim == 1 and value.shape != (size,):
                raise ValueError(
                    f"expected optimizer state {key} of shape ({size},), got {value.shape}"
                )
        opt.load_state_dict(moments)
        rng = np.random.default_rng()
        rng.bit_generator.state = scalars["rng"]
        best_theta = None
        if "best_theta" in arrays:
            best_theta = checked_array(arrays, "best_theta", (size,)).astype(np.float64)
        val_idx = None
        if "val_idx" in arrays:
            val_idx = np.asarray(arrays["val_idx"])
            if val_idx.ndim != 1 or val_idx.dtype.kind not in "iu":
                raise ValueError(f"expected val_idx of 1-d integers, got {val_idx.dtype}")
            val_idx = val_idx.astype(np.intp)
        best_loss, best_score = scalars["best_loss"], scalars["best_score"]
        return cls(
            rng=rng,
            optimizer=opt,
            t=int(scalars["t"]),
            best_loss=np.inf if best_loss is None else float(best_loss),
            best_score=-np.inf if best_score is None else float(best_score),
            no_improve=int(scalars["no_improve"]),
            best_theta=best_theta,
            val_idx=val_idx,
        )


def fitted_to_arrays(
    est: Any, params: list[NDArray[np.float64]], state: TrainingState | None
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """``(metadata, arrays)`` of a fitted estimator (see the module docstring): its public
    fitted attributes, its ``params`` and its training ``state``."""
    classes = np.asarray(est.classes_.tolist())
    if classes.dtype.kind not in "biufU":
        raise TypeError(f"model.classes_: expected numbers or strings, got dtype {classes.dtype}")
    arrays: dict[str, NDArray[Any]] = {"classes": classes}
    for i, p in enumerate(params):
        arrays[f"param_{i}"] = np.asarray(p, dtype=np.float64)
    arrays["loss_curve"] = np.asarray(est.loss_curve_, dtype=np.float64)
    if hasattr(est, "validation_scores_"):
        arrays["validation_scores"] = np.asarray(est.validation_scores_, dtype=np.float64)
    meta_state: dict[str, Any] = {}
    if state is not None:
        meta_state, state_arrays = state.to_arrays()
        arrays.update(state_arrays)
    meta = {
        "n_features_in": int(est.n_features_in_),
        "n_iter": int(est.n_iter_),
        "best_validation_score": _finite_or_none(getattr(est, "best_validation_score_", np.nan)),
        "alpha": float(est.alpha_),
        "state": meta_state,
    }
    return meta, arrays


def classes_from_arrays(meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> dict[str, Any]:
    """``classes_`` and ``n_features_in_`` of a saved model, checked."""
    classes = checked_array(arrays, "classes")
    if classes.ndim != 1 or classes.size < 2 or classes.dtype.kind not in "biufU":
        raise ValueError(f"expected 1-d classes, got {classes.shape} {classes.dtype}")
    if not np.all(classes[1:] > classes[:-1]):  # predictions index into this array
        raise ValueError(f"expected classes sorted and unique, got {classes.tolist()[:10]}")
    return {"classes_": classes, "n_features_in_": int(meta["n_features_in"])}


def params_from_arrays(
    arrays: dict[str, NDArray[Any]], shapes: list[tuple[int, ...]]
) -> list[NDArray[np.float64]]:
    """The parameters ``param_0, param_1, ...`` of a saved model, of the ``shapes`` expected."""
    return [checked_array(arrays, f"param_{i}", s).astype(np.float64) for i, s in enumerate(shapes)]


def history_from_arrays(
    meta: dict[str, Any], arrays: dict[str, NDArray[Any]], alpha: Any
) -> dict[str, Any]:
    """The public fitted attributes of a saved run: ``n_iter_``, ``loss_curve_``, ``alpha_``
    (``alpha``, the parameter, for files written before it was saved) and, when saved,
    ``validation_scores_`` and ``best_validation_score_``."""
    out: dict[str, Any] = {
        "n_iter_": int(meta["n_iter"]),
        "loss_curve_": checked_array(arrays, "loss_curve").astype(float).tolist(),
    }
    if "validation_scores" in arrays:
        out["validation_scores_"] = arrays["validation_scores"].astype(float).tolist()
    if meta.get("best_validation_score") is not None:
        out["best_validation_score_"] = float(meta["best_validation_score"])
    alpha = meta.get("alpha", alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
        raise ValueError(f"expected metadata 'alpha' to be a number >= 0, got {alpha!r}")
    out["alpha_"] = float(alpha)
    return out
