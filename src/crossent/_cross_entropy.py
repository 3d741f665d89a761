r"""Softmax cross-entropy: the loss, its exact gradient, and both from one softmax.

Notation (as in PyTorch): ``p = softmax(x)`` over the class axis, ``V`` the positions whose
target is not ``ignore_index``, ``w_c = weight[c]`` (1 without weights), ``ε`` the label
smoothing, ``C`` the number of classes. The loss's definition, written once, is in
:mod:`crossent._spec`; the work is done by :mod:`crossent._core`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike, NDArray

from crossent import _core
from crossent._spec import LossKwargs, options_from, takes_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]


@takes_options("core")
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    **options: Unpack[LossKwargs],
) -> Any:
    r"""Softmax cross-entropy between ``logits`` and ``target``, as PyTorch defines it.

    With class-index targets ``y`` and ``p = softmax(x)``:

    .. math::

        \ell_n = (1-\varepsilon)\, w_{y_n} (-\log p_{n,y_n})
               + \frac{\varepsilon}{k} \sum_c w_c (-\log p_{n,c})
               + \lambda \operatorname{lse}(x_n)^2,
        \qquad L_{\text{mean}} = \frac{\sum_{n \in V} \ell_n - \lambda\,\mathrm{lse}_n^2}
                                      {\sum_{n \in V} w_{y_n}}
                               + \lambda \frac{\sum_{n \in V} \mathrm{lse}_n^2}{|V|}

    With probability targets ``q``, ``q' = (1-ε) q + ε/k``:

    .. math::

        \ell_n = -\sum_c w_c\, q'_{n,c} \log p_{n,c} + \lambda \operatorname{lse}(x_n)^2,
        \qquad L_{\text{mean}} = \frac{1}{N} \sum_n \ell_n

    The z-term is a mean over the non-ignored positions, independent of the class weights
    (the definition, written once, is in :mod:`crossent._spec`). The gradient is given by
    :func:`cross_entropy_grad`.

    Parameters
    ----------
    logits : array_like, shape (N, C) or (C,) or (N, d1, ..., C, ..., dK)
        Class scores: finite values, or ``-inf`` for masked classes. float16/32/64 (integers
        become float64). float16 is computed in float32; sums are accumulated in float64.
    target : array_like
        Either integer class indices in ``[0, C)`` (or ``ignore_index``) with the logits'
        shape without the class axis, or float class probabilities with the logits' shape
        (each slice along ``axis`` non-negative and summing to 1, within ``max(√eps, 1e-6)``
        of the target's dtype).
    axis : int, default -1
        The class axis (PyTorch's layout ``(N, C, d1, ...)`` is ``axis=1``).
    weight : array_like, shape (C,), optional
        Class weights ``w``: finite and ``>= 0``. Negative weights are refused (PyTorch
        accepts them): they turn a class's loss into an unbounded reward.
    ignore_index : int, default -100
        Index targets equal to it contribute 0 to the loss, the gradient and the ``'mean'``
        denominator. Not used with probability targets.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'`` divides the sum by ``D = Σ_{n∈V} w_{y_n}`` for index targets (the number
        of non-ignored positions without weights; 0 over an all-ignored batch gives a loss
        of 0) and by the number of positions ``N`` for probability targets.
    label_smoothing : float in [0, 1], default 0.0
        ``ε``: the target becomes ``(1-ε)·q + ε/k`` over the ``k`` classes whose logits are
        finite (``k = C`` without masking).
    z_loss : float >= 0, default 0.0
        ``λ``: adds ``λ·lse(x)²`` to each non-ignored position's loss (PaLM's z-loss);
        ``'mean'`` averages it over the non-ignored positions.
    softcap : float > 0, optional
        ``s``: logits become ``s·tanh(x/s)`` first (Gemma 2); ``-inf`` stays ``-inf``.
    temperature : float > 0, default 1.0
        ``T``: logits are divided by ``T`` first (before soft-capping).
    num_items : float >= 0, optional
        Only with ``reduction='mean'``: divide the sum by this instead, the non-ignored target
        weight of the whole global batch (all data-parallel ranks and accumulation steps), so
        that summing the losses of micro-batches gives the exact global mean. Any value > 0
        is taken as given, also one below this batch's own denominator (as transformers'
        ``Trainer``, which divides it by the tensor-parallel size); 0 only when every target
        is ignored (the loss is then 0). A 0-d or one-element array is accepted.

    Returns
    -------
    loss : scalar or ndarray
        A scalar of the logits' dtype for ``'mean'``/``'sum'``; for ``'none'`` an array with
        the logits' shape without the class axis.

    Raises
    ------
    TypeError
        Non-numeric logits or target, float labels, a non-int ``ignore_index``, non-numeric
        options.
    ValueError
        0-d logits, NaN or ``+inf`` in the logits, a non-ignored row of all ``-inf``, ``axis``
        out of range, a target of the wrong shape, a class index out of range, probabilities
        that are negative or do not sum to 1, a ``weight`` of the wrong shape or negative,
        ``label_smoothing`` outside [0, 1], an unknown ``reduction``, a negative ``z_loss``,
        a non-positive ``softcap`` or ``temperature``, a ``num_items`` without ``'mean'``.

    Notes
    -----
    Where PyTorch returns NaN or inf, crossent returns what the mathematics gives:

    * ``'mean'`` over a batch whose targets are all ``ignore_index``: loss 0, gradient 0
      (PyTorch: NaN).
    * ``-inf`` logits (masked classes) give a finite loss and gradient whenever the target
      puts no mass on them, with index targets, probability targets and label smoothing
      (PyTorch: NaN for probability targets, ``inf`` with smoothing); smoothing then spreads
      ``ε`` over the finite classes only.
    * an ignored row of all ``-inf`` contributes 0 and a zero gradient (PyTorch: NaN
      gradient); a non-ignored one is an error.
    * a target class whose logit is ``-inf`` gives a loss of ``+inf`` (never NaN) and a
      finite gradient.
    * float16 losses are accumulated in float64, so a large float16 batch has a finite mean.

    Examples
    --------
    The classic example: scores ``[10, 9, 8]`` for cat, dog, horse; the image is a cat.

    >>> import crossent
    >>> float(crossent.cross_entropy([10.0, 9.0, 8.0], 0))
    0.4076
    >>> x = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 3.0]]
    >>> float(crossent.cross_entropy(x, [0, 2, -100], weight=[1.0, 2.0, 3.0]))
    1.9192947
    >>> crossent.cross_entropy(x, [0, 2, -100], label_smoothing=0.1, weight=[1.0, 2.0, 3.0],
    ...                        reduction="none").round(6)
    array([0.7154 , 6.86481, 0.     ])

    Two micro-batches with 2 and 1 non-ignored targets: their losses with ``num_items=3``
    add up to the mean over all three.

    >>> a = crossent.cross_entropy(x[:2], [0, 2], num_items=3)
    >>> b = crossent.cross_entropy(x[2:], [1], num_items=3)
    >>> round(float(a + b), 6) == round(float(crossent.cross_entropy(x, [0, 2, 1])), 6)
    True
    """
    opts = options_from(options, "core")
    return _core.run(logits, target, opts, axis=axis, weight=weight, cast=True)[0]


@takes_options("core")
def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
    **options: Unpack[LossKwargs],
) -> NDArray[Any]:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    For class-index targets, with ``W_k = Σ_{c finite} w_c``:

    .. math::

        \frac{\partial L}{\partial x_{n,c}} = 1[n \in V]
            \Big[\frac{(1-\varepsilon)\, w_{y_n} (p_{n,c} - 1[c = y_n])
            + \frac{\varepsilon}{k} (W_k\, p_{n,c} - w_c)}{D}
            + \frac{2 \lambda \operatorname{lse}(x_n)\, p_{n,c}}{D_z}\Big]

    and for probability targets

    .. math::

        \frac{\partial L}{\partial x_{n,c}} = \frac{1}{D}
            \Big[\big(\textstyle\sum_k w_k q'_{n,k} + 2\lambda\operatorname{lse}(x_n)\big)
            p_{n,c} - w_c\, q'_{n,c}\Big]

    with ``D`` the ``'mean'`` denominator and ``D_z = |V|`` (both 1 for ``'sum'`` and
    ``'none'``, both ``num_items`` when given); for ``'none'`` it is the gradient of each
    position's loss with respect to its own logits. Temperature and soft-capping multiply it
    by the chain rule, ``(1 - tanh²(x/(T s))) / T``.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing
        As :func:`cross_entropy`.
    z_loss, softcap, temperature, num_items
        As :func:`cross_entropy`.
    out : ndarray, optional
        Where to write the gradient (the logits' shape and dtype). It may be the logits array
        itself: the gradient then overwrites the logits, and no array of their size is made.

    Returns
    -------
    grad : ndarray
        The logits' shape and dtype (``out`` when given).

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy`; also an ``out`` of the wrong shape or dtype.

    Examples
    --------
    >>> import crossent
    >>> crossent.cross_entropy_grad([10.0, 9.0, 8.0], 0).round(4)  # p - onehot(0)
    array([-0.3348,  0.2447,  0.09  ])
    """
    opts = options_from(options, "core")
    _, _, grad = _core.run(logits, target, opts, axis=axis, weight=weight, want_grad=True,
                           out=out)  # fmt: skip
    assert grad is not None
    return grad


@takes_options("core")
def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    out: NDArray[Any] | None = None,
    **options: Unpack[LossKwargs],
) -> tuple[Any, NDArray[Any]]:
    r"""Loss and gradient together, from one softmax (one ``exp`` per logit).

    Equivalent to ``(cross_entropy(...), cross_entropy_grad(...))`` at half the cost; the
    formulas are in those functions' documentation.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing
        As :func:`cross_entropy`.
    z_loss, softcap, temperature, num_items
        As :func:`cross_entropy`.
    out : ndarray, optional
        Where to write the gradient; may be the logits array itself (in-place).

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`.
    grad : ndarray
        As :func:`cross_entropy_grad`.

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy_grad`.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[10.0, 9.0, 8.0], [0.0, 0.0, -np.inf]])
    >>> loss, grad = crossent.cross_entropy_with_grad(logits, [0, 1], reduction="none")
    >>> loss.round(4), grad.round(4)
    (array([0.4076, 0.6931]), array([[-0.3348,  0.2447,  0.09  ],
           [ 0.5   , -0.5   ,  0.    ]]))
    """
    opts = options_from(options, "core")
    loss, _, grad = _core.run(logits, target, opts, axis=axis, weight=weight, want_grad=True,
                              out=out, cast=True)  # fmt: skip
    assert grad is not None
    return loss, grad
