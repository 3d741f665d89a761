r"""A small ReLU network trained by backpropagation on crossent's loss gradient.

Layers ``l = 1 … L``: ``A⁰ = X``, ``Zˡ = Aˡ⁻¹ Wˡᵀ + bˡ``, ``Aˡ = ReLU(Zˡ)`` for hidden layers;
the last layer's ``Zᴸ`` (N, C) are the class scores. Every layer is a pair
``forward(...) -> (out, cache)`` / ``backward(dout, cache) -> grads``; the chain starts from
``dJ/dZᴸ``, which :func:`crossent.cross_entropy_with_grad` returns.
"""

from __future__ import annotations

import itertools
import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

import crossent
from crossent.models._base import Params, SoftmaxModelBase

__all__ = [
    "MLPClassifier",
    "dense_backward",
    "dense_forward",
    "mlp_backward",
    "mlp_forward",
    "relu_backward",
    "relu_forward",
]

Array = NDArray[np.float64]


def dense_forward(x: Array, W: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    """``out = x Wᵀ + b``; x (N, I), W (O, I), b (O,) -> out (N, O)."""
    return x @ W.T + b, (x, W)


def dense_backward(
    dout: Array, cache: tuple[Array, Array], need_dx: bool = True
) -> tuple[Array | None, Array, Array]:
    """Gradients ``(dx, dW, db)`` = ``(dout W, doutᵀ x, Σₙ dout)`` for dout (N, O).

    ``need_dx=False`` skips ``dx`` (returns ``None``): the input layer needs no input gradient.
    """
    x, W = cache
    dx = dout @ W if need_dx else None  # (N, I)
    return dx, dout.T @ x, dout.sum(axis=0)  # (O, I), (O,)


def relu_forward(z: Array) -> tuple[Array, NDArray[np.bool_]]:
    """``max(z, 0)``; the cache is the mask ``z > 0``."""
    mask = z > 0
    return z * mask, mask


def relu_backward(dout: Array, mask: NDArray[np.bool_]) -> Array:
    """``dout · 1[z > 0]`` (the subgradient 0 at ``z = 0``)."""
    return dout * mask


def mlp_forward(params: Params, X: Array) -> tuple[Array, list[Any]]:
    """Scores (N, C) of the network ``params = [W1, b1, ..., WL, bL]`` and the caches."""
    caches: list[Any] = []
    a = X  # (N, D)
    n_layers = len(params) // 2
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        z, dense_cache = dense_forward(a, W, b)  # (N, H_l)
        if layer == n_layers - 1:
            caches.append((dense_cache, None))
            return z, caches  # (N, C)
        a, relu_cache = relu_forward(z)
        caches.append((dense_cache, relu_cache))
    raise ValueError("params: expected at least one (W, b) pair, got none")


def mlp_backward(dscores: Array, caches: list[Any]) -> Params:
    """Backpropagate ``dJ/dscores`` (N, C); returns ``[dW1, db1, ..., dWL, dbL]``."""
    grads: Params = []
    dout: Array | None = dscores  # (N, C)
    for layer in range(len(caches) - 1, -1, -1):
        dense_cache, relu_cache = caches[layer]
        assert dout is not None
        if relu_cache is not None:
            dout = relu_backward(dout, relu_cache)  # (N, H_l)
        dout, dW, db = dense_backward(dout, dense_cache, need_dx=layer > 0)
        grads[:0] = [dW, db]
    return grads


class MLPClassifier(SoftmaxModelBase):
    r"""A ReLU network whose last layer gives the C class scores, trained with cross-entropy.

    With hidden layers of sizes ``H₁ … H_{L−1}``, scores ``S = f(X; W, b)`` (N, C), the
    objective is

    .. math::

        J = \operatorname{CE}_{\text{mean}}(S, y) + \alpha \sum_{l=1}^{L} R(W^{l})

    with ``R`` as in :class:`SoftmaxClassifier` (biases not penalized). Gradients come from
    backpropagation (:func:`mlp_backward`) of ``dJ/dS`` given by
    :func:`crossent.cross_entropy_with_grad`.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
    penalty : {"l2", "l1", "elasticnet", None}, default="l2"
    alpha : float or "auto", default=1e-4
        As in :class:`SoftmaxClassifier`.
    l1_ratio : float, default=0.15
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        ``"sgd"`` uses momentum and a proximal L1 step; ``"adam"`` the L1 subgradient;
        ``"lbfgs"`` full batch, the L1 part by the split ``W = W⁺ − W⁻`` (as in
        :class:`SoftmaxClassifier`).
    max_iter : int, default=200
        Epochs (L-BFGS: iterations).
    tol, n_iter_no_change, early_stopping, validation_fraction
        As in :class:`SoftmaxClassifier`.
    batch_size : int, default=64
    learning_rate_init : float, default=1e-3
    lr_schedule : {"constant", "invscaling"}, default="constant"
    momentum : float, default=0.9
    class_weight, label_smoothing, warm_start, random_state
        As in :class:`SoftmaxClassifier`; ``random_state`` also seeds the initialization
        (He-normal for ReLU layers, Glorot-normal for the output layer).

    Attributes
    ----------
    coefs_ : list of ndarray
        Weights ``Wˡ`` of shape ``(out, in)`` (so ``y = Wx + b`` in every layer).
    intercepts_ : list of ndarray
    coef_, intercept_ : ndarray
        The last layer's ``W`` (C, H) and ``b`` (C,): the class-score layer.
    classes_, n_features_in_, alpha_, n_iter_, loss_curve_
        As in :class:`SoftmaxClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.models import MLPClassifier
    >>> X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]] * 10)
    >>> y = np.array(["same", "same", "diff", "diff"] * 10)  # XOR: no linear model can do it
    >>> clf = MLPClassifier((16,), solver="lbfgs", max_iter=2000, random_state=0).fit(X, y)
    >>> clf.score(X, y)
    1.0
    """

    _solvers = ("adam", "sgd", "lbfgs")

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        penalty: str | None = "l2",
        alpha: float | str = 1e-4,
        l1_ratio: float = 0.15,
        *,
        solver: str = "adam",
        max_iter: int = 200,
        tol: float = 1e-4,
        batch_size: int = 64,
        learning_rate_init: float = 1e-3,
        lr_schedule: str = "constant",
        momentum: float = 0.9,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        class_weight: Any = None,
        label_smoothing: float = 0.0,
        warm_start: bool = False,
        random_state: Any = None,
    ) -> None:
        self._store_params(locals())  # every argument, as given (scikit-learn's contract)

    def _hidden(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Number):
            sizes = (sizes,)
        got = f"hidden_layer_sizes: expected a non-empty tuple of ints >= 1, got {sizes!r}"
        try:
            out = tuple(sizes)
        except TypeError:
            raise TypeError(got) from None
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) for h in out):
            raise TypeError(got)  # 5.5 would silently build 5 units
        if not out or any(h < 1 for h in out):
            raise ValueError(got)
        return tuple(int(h) for h in out)

    def _shapes(self, n_features: int, n_classes: int) -> list[tuple[int, ...]]:
        sizes = (n_features, *self._hidden(), n_classes)
        shapes: list[tuple[int, ...]] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            shapes += [(fan_out, fan_in), (fan_out,)]
        return shapes

    def _init_params(self, params: Params, rng: np.random.Generator) -> None:
        weights, biases = params[0::2], params[1::2]
        for layer, (W, b) in enumerate(zip(weights, biases, strict=True)):
            fan_out, fan_in = W.shape
            last = layer == len(weights) - 1
            std = np.sqrt(2.0 / (fan_in + fan_out)) if last else np.sqrt(2.0 / fan_in)
            W[...] = rng.normal(0.0, std, size=W.shape)
            b[...] = 0.0

    def _check_hyperparameters(self) -> str:
        self._hidden()
        return super()._check_hyperparameters()

    def _scores(self, params: Params, X: Array) -> Array:
        return mlp_forward(params, X)[0]

    def _loss_grad(self, params: Params, X: Array, y: NDArray[np.intp], grads: Params) -> float:
        scores, caches = mlp_forward(params, X)  # (N, C)
        loss, dscores = crossent.cross_entropy_with_grad(
            scores, y, weight=self._weight, label_smoothing=self.label_smoothing
        )
        for g, value in zip(grads, mlp_backward(dscores, caches), strict=True):
            g[...] = value
        return float(loss)

    def _publish(self, params: Params) -> None:
        self.coefs_ = list(params[0::2])
        self.intercepts_ = list(params[1::2])
        self.coef_, self.intercept_ = self.coefs_[-1], self.intercepts_[-1]

    def _params(self) -> Params:
        out: Params = []
        for W, b in zip(self.coefs_, self.intercepts_, strict=True):
            out += [W, b]
        return out
