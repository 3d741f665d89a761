"""The tutorial's experiments and figures: the blog post's path, from one example to a classifier.

The tutorial (``docs/tutorial.md``, ``docs/zh/tutorial.md``, ``examples/tutorial.py``) calls
these, so the pages and the example show the same numbers and draw the same pictures:

* :func:`plot_cases`: the ``-log(x)`` curve with several examples on it (right and confident,
  right but unsure, wrong);
* :func:`regularization_sweep` and :func:`plot_sweep`: the digit classifier trained with L1
  and with L2 for several strengths ``alpha`` (test accuracy, share of exact zeros in ``W``);
* :func:`plot_templates`: rows of ``W`` drawn as images, one row of pictures per model;
* :func:`train_with_curves` and :func:`plot_curves`: loss and accuracy after every epoch.

Every label comes from the message tables, in English or Chinese (``lang``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from crossent.explain._messages import fill
from crossent.explain._plot import labels_for, use_font
from crossent.explain._result import Explanation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "Curves",
    "Sweep",
    "plot_cases",
    "plot_curves",
    "plot_sweep",
    "plot_templates",
    "regularization_sweep",
    "train_with_curves",
]


@dataclass(frozen=True)
class Curves:
    """What one training run did after every epoch (L-BFGS: every iteration).

    Attributes
    ----------
    name : str
        The model's label in the figures.
    loss : list of float
        The training objective (mean cross-entropy + penalty).
    train_accuracy, test_accuracy : list of float
        Accuracy on the training and the test split.
    """

    name: str
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep:
    """The classifier trained with each penalty at each strength.

    Attributes
    ----------
    alphas : list of float
    accuracy : dict of str to list of float
        Test accuracy per penalty (``'l1'``, ``'l2'``), one per alpha.
    zeros : dict of str to list of float
        Share of the entries of ``W`` that are exactly 0, per penalty, one per alpha.
    coefs : dict of str to list of ndarray
        ``W`` (C, D) per penalty, one per alpha.
    """

    alphas: list[float]
    accuracy: dict[str, list[float]]
    zeros: dict[str, list[float]]
    coefs: dict[str, list[NDArray[np.float64]]]


def _fit_quietly(model: Any, X: Any, y: Any, **kw: Any) -> Any:
    """Fit for the model's fixed number of epochs: not converging then is expected."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kw)


def train_with_curves(
    name: str, model: Any, X_train: Any, y_train: Any, X_test: Any, y_test: Any
) -> Curves:
    """Fit ``model`` (a crossent classifier) and record its curves after every epoch.

    The model trains for its ``max_iter`` epochs (a shorter run than convergence needs gives
    no warning: the curves show where it stands).

    Returns
    -------
    Curves
    """
    curves = Curves(name)

    def record(info: Mapping[str, Any]) -> None:
        curves.loss.append(float(info["loss"]))
        curves.train_accuracy.append(float(model.score(X_train, y_train)))
        curves.test_accuracy.append(float(model.score(X_test, y_test)))

    _fit_quietly(model, X_train, y_train, callback=record)
    return curves


def regularization_sweep(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    alphas: Sequence[float],
    *,
    penalties: Sequence[str] = ("l1", "l2"),
    epochs: int = 30,
    random_state: int = 0,
) -> Sweep:
    """Train :class:`crossent.models.SoftmaxClassifier` with each penalty and strength.

    Every fit uses the same solver (mini-batch SGD; the L1 part by a proximal step, which
    leaves exact zeros), the same number of epochs and the same seed, so only the penalty and
    ``alpha`` differ.

    Returns
    -------
    Sweep
    """
    from crossent.models import SoftmaxClassifier

    acc: dict[str, list[float]] = {p: [] for p in penalties}
    zeros: dict[str, list[float]] = {p: [] for p in penalties}
    coefs: dict[str, list[NDArray[np.float64]]] = {p: [] for p in penalties}
    for pen in penalties:
        for alpha in alphas:
            clf = SoftmaxClassifier(
                penalty=pen, alpha=alpha, solver="sgd", max_iter=epochs, random_state=random_state
            )
            _fit_quietly(clf, X_train, y_train)
            acc[pen].append(float(clf.score(X_test, y_test)))
            zeros[pen].append(float(np.mean(clf.coef_ == 0.0)))
            coefs[pen].append(np.array(clf.coef_))
    return Sweep([float(a) for a in alphas], acc, zeros, coefs)


def plot_cases(examples: Sequence[Explanation], *, lang: str = "en") -> Figure:
    """The ``-log(x)`` curve on (0, 1] with each example's target probability on it.

    Parameters
    ----------
    examples : sequence of Explanation
        Class-index examples (from :func:`crossent.explain.explain`); each point is labelled
        with its verdict (right and confident, right but unsure, wrong) and its loss.
    lang : {'en', 'zh'}, default 'en'
    """
    from matplotlib.figure import Figure

    msg, font = labels_for(lang)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.geomspace(1e-3, 1.0, 400)
    ax.plot(x, -np.log(x), color="black", linewidth=1.5, label="-log(x)")
    for ex, color in zip(examples, ("#2ca02c", "#ff7f0e", "#d62728", "#9467bd"), strict=False):
        y = ex.target_index
        if y is None:
            raise ValueError("examples: expected class-index targets, got a distribution")
        p, loss = float(ex.probs[y]), float(-ex.log_probs[y])
        label = f"{msg['case_' + ex.verdict]}: p = {p:.3f}, -log p = {loss:.3f}"
        ax.scatter([p], [loss], s=60, color=color, zorder=3, label=label)
        ax.vlines(p, 0, loss, colors=color, linestyles=":", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 5)
    ax.set_xlabel(msg["curve_xlabel"])
    ax.set_ylabel(msg["curve_ylabel"])
    ax.set_title(msg["curve_title"])
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    use_font(fig, font)
    return fig


def plot_templates(
    coefs: Mapping[str, NDArray[Any]],
    image_shape: tuple[int, int],
    *,
    class_names: Sequence[str] | None = None,
    lang: str = "en",
) -> Figure:
    """Each model's ``W`` (C, D) as C images, one row of pictures per model.

    Red pixels are evidence for the class, blue against it, white exactly 0 (one colour
    scale per model, symmetric around 0).
    """
    from matplotlib.figure import Figure

    msg, font = labels_for(lang)
    names = list(coefs)
    c = max(np.asarray(w).shape[0] for w in coefs.values())
    fig = Figure(figsize=(1.2 * c + 1.0, 1.45 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), c, squeeze=False)
    for r, name in enumerate(names):
        W = np.asarray(coefs[name], dtype=np.float64)
        lim = float(np.max(np.abs(W))) or 1.0
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= W.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(W[k].reshape(image_shape), cmap="RdBu_r", vmin=-lim, vmax=lim)
            if r == 0:
                ax.set_title(str(class_names[k]) if class_names is not None else str(k))
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(msg["templates_title"], fontsize=11)
    use_font(fig, font)
    return fig


def plot_sweep(sweep: Sweep, *, lang: str = "en") -> Figure:
    """Test accuracy and the share of exact zeros in ``W`` against ``alpha``, per penalty."""
    from matplotlib.figure import Figure

    msg, font = labels_for(lang)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_acc, ax_zero = fig.subplots(1, 2)
    for pen in sweep.accuracy:
        label = msg["kind_" + pen]
        ax_acc.plot(sweep.alphas, sweep.accuracy[pen], "o-", label=label)
        ax_zero.plot(sweep.alphas, sweep.zeros[pen], "o-", label=label)
    for ax, key in ((ax_acc, "sweep_accuracy"), (ax_zero, "sweep_zeros")):
        ax.set_xscale("log")
        ax.set_xlabel(msg["sweep_xlabel"])
        ax.set_ylabel(msg[key])
        ax.set_title(msg[key])
        ax.legend(frameon=False)
    ax_zero.set_ylim(0, 1)
    use_font(fig, font)
    return fig


def plot_curves(runs: Sequence[Curves], *, lang: str = "en") -> Figure:
    """The training objective and the train/test accuracy after every epoch, per run."""
    from matplotlib.figure import Figure

    msg, font = labels_for(lang)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for run in runs:
        epochs = np.arange(1, len(run.loss) + 1)
        (line,) = ax_loss.plot(epochs, run.loss, label=run.name)
        ax_acc.plot(epochs, run.test_accuracy, color=line.get_color(), label=run.name)
        train = fill(msg["curves_train"], {"name": run.name})
        ax_acc.plot(epochs, run.train_accuracy, ":", color=line.get_color(), label=train)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(msg["curves_loss"])
    ax_acc.set_ylabel(msg["curves_accuracy"])
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel(msg["curves_xlabel"])
        ax.legend(frameon=False, fontsize=8)
    ax_loss.set_title(msg["curves_loss"])
    ax_acc.set_title(msg["curves_accuracy"])
    use_font(fig, font)
    return fig
