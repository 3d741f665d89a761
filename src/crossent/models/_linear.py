r"""Softmax regression: the linear model ``y = Wx + b`` trained with cross-entropy + L1/L2."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import crossent
from crossent.models._base import Params, SoftmaxModelBase

__all__ = ["SoftmaxClassifier"]


class SoftmaxClassifier(SoftmaxModelBase):
    r"""Multinomial logistic (softmax) regression with L2, L1 or elastic-net penalty.

    Scores are ``S = X Wᵀ + b`` (N, C); the model minimizes

    .. math::

        J(W, b) = \frac{1}{D} \sum_{n=1}^{N}
                  w_{y_n}\,\big(-\log \operatorname{softmax}(S_n)_{y_n}\big) + \alpha\, R(W),
        \qquad D = \sum_n w_{y_n}

    (``w`` the class weights, all 1 by default, so the first term is the mean cross-entropy;
    with ``label_smoothing`` it is :func:`crossent.cross_entropy` with that option) and

    .. math::

        R(W) = \tfrac12 \lVert W \rVert_2^2 \ (\text{"l2"}), \quad
               \lVert W \rVert_1 \ (\text{"l1"}), \quad
               \rho \lVert W \rVert_1 + \tfrac{1-\rho}{2} \lVert W \rVert_2^2
               \ (\text{"elasticnet"}), \quad 0 \ (\text{None}).

    The bias ``b`` is not penalized.

    **scikit-learn's C.** Without class weights, with ``N`` training rows:

    - three or more classes: ``LogisticRegression(C=C)`` minimizes this same ``J`` (L2, L1 or
      elastic net with the same ``l1_ratio``) when ``alpha = 1 / (C · N)``;
    - two classes: scikit-learn fits one weight vector ``w = W₁ − W₀``. The two-row model with
      ``alpha`` is ``LogisticRegression(C′)`` with ``C′ = 2 / (alpha · N)`` for L2 (at the
      minimum ``W₀ = −W₁ = −w/2``, so ``½‖W‖² = ¼‖w‖²``: ``alpha = 1/(C·N)`` would be
      ``C′ = 2C``), ``C′ = 1 / (alpha · N)`` for L1 (``‖W‖₁ = ‖w‖₁``) and, for the elastic
      net, ``C′ = 2 / ((1 + ρ) · alpha · N)`` with ``l1_ratio′ = 2ρ / (1 + ρ)``.

    ``alpha="auto"`` (the default) picks the ``alpha`` of ``LogisticRegression()`` (``C = 1``)
    by these rules, so both fit the same model.

    Parameters
    ----------
    penalty : {"l2", "l1", "elasticnet", None}, default="l2"
    alpha : float or "auto", default="auto"
        Strength of the penalty (``α`` above); ``"auto"``: ``1/N`` with three or more classes,
        ``2/((1 + ρ)·N)`` with two (``ρ`` = 0 for L2, 1 for L1, ``l1_ratio`` for the elastic
        net), ``N`` the rows passed to ``fit`` (to each ``partial_fit`` call). The value used
        is ``alpha_``.
    l1_ratio : float, default=0.15
        ``ρ`` of the elastic net.
    solver : {"auto", "lbfgs", "sgd", "adam"}, default="auto"
        ``"lbfgs"`` (and ``"auto"``): full-batch L-BFGS-B (``scipy.optimize``) on the exact
        objective for every penalty; the L1 part by splitting ``W = W⁺ − W⁻`` with
        ``W⁺, W⁻ ≥ 0`` (a smooth problem with bounds), which ends at exact zeros.
        ``"sgd"``: mini-batch SGD with momentum; the L1 part by a proximal (soft-thresholding)
        step after each update, which gives exact zeros, with the velocity set to the step
        actually taken. ``"adam"``: Adam, the L1 part by its subgradient (small weights
        oscillate around zero instead of reaching it). The stochastic solvers end near the
        minimum, not at it: see the classifier-solvers page of the docs for measured gaps.
    max_iter : int, default=200
        L-BFGS iterations, or epochs (passes over the data) for SGD/Adam.
    tol : float, default=1e-4
        L-BFGS: stop when the largest entry of the smallest subgradient of ``J`` (the
        gradient, for L2) is below ``tol``, or ``J``'s relative decrease per step below
        ``64·eps·tol/1e-4`` (smaller ``tol``, smaller step); a fit that ends above ``tol``
        warns ``ConvergenceWarning``. SGD/Adam: stop when the epoch loss (or, with early
        stopping, the validation accuracy) has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and keep the parameters of the best epoch.
    batch_size : int, default=64
    learning_rate_init : float, default=0.05
    lr_schedule : {"constant", "invscaling"}, default="invscaling"
        ``η_t = η₀`` or ``η₀ / √(1 + t)`` at epoch ``t``.
    momentum : float, default=0.9
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (seeded by ``random_state``),
        stop when its accuracy stops improving and keep the best parameters.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    class_weight : dict, "balanced" or None, default=None
        Class weights ``w_c`` (the ``weight`` of :func:`crossent.cross_entropy`).
    label_smoothing : float, default=0.0
    warm_start : bool, default=False
        Continue from the previous fit (parameters, optimizer state, epoch count).
    random_state : int, numpy Generator or None, default=None
        Seeds the shuffling and the validation split (all randomness of ``fit``).

    Attributes
    ----------
    coef_ : ndarray, shape (C, D)
        ``W``; rows are the class templates (for two classes too: ``C = 2``).
    intercept_ : ndarray, shape (C,)
    classes_ : ndarray, shape (C,)
    n_features_in_ : int
    alpha_ : float
        The penalty strength of the last fit (``alpha``, or its ``"auto"`` value).
    n_iter_ : int
        Iterations (L-BFGS) or epochs run, summed over warm starts.
    loss_curve_ : list of float
        The objective ``J`` after each iteration/epoch (SGD: mean over the epoch's batches).

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.models import SoftmaxClassifier
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 3.0], [3.0, 4.0]])
    >>> clf = SoftmaxClassifier().fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict([[0.5, 0.5], [3.5, 3.5]]).tolist()
    ['cat', 'dog']
    >>> clf.coef_.shape
    (2, 2)
    """

    _solvers = ("auto", "lbfgs", "sgd", "adam")

    def __init__(
        self,
        penalty: str | None = "l2",
        alpha: float | str = "auto",
        l1_ratio: float = 0.15,
        *,
        solver: str = "auto",
        max_iter: int = 200,
        tol: float = 1e-4,
        batch_size: int = 64,
        learning_rate_init: float = 0.05,
        lr_schedule: str = "invscaling",
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

    def _shapes(self, n_features: int, n_classes: int) -> list[tuple[int, ...]]:
        return [(n_classes, n_features), (n_classes,)]

    def _init_params(self, params: Params, rng: np.random.Generator) -> None:
        for p in params:  # the objective is convex: start from W = 0, b = 0
            p[...] = 0.0

    def _scores(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        W, b = params
        return X @ W.T + b  # (N, C)

    def _loss_grad(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.intp], grads: Params
    ) -> float:
        W, b = params  # (C, D), (C,)
        scores = X @ np.ascontiguousarray(W.T)  # (N, C); a (D, C) copy multiplies 2x faster
        scores += b
        loss, G = crossent.cross_entropy_with_grad(
            scores, y, weight=self._weight, label_smoothing=self.label_smoothing
        )  # G: (N, C) = dJ/dscores
        np.matmul(G.T, X, out=grads[0])  # (C, D)
        np.sum(G, axis=0, out=grads[1])  # (C,)
        return float(loss)

    def _publish(self, params: Params) -> None:
        self.coef_, self.intercept_ = params

    def _params(self) -> Params:
        return [self.coef_, self.intercept_]
