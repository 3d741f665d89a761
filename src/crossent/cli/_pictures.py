"""The pictures of a training run: loss and accuracy curves, the test confusion matrix and,
for a linear model on images, the rows of W drawn as weight templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossent._files import atomic_open


def save_pictures(out: Path, pipe: Any, metrics: dict[str, Any]) -> list[str]:
    """Loss/accuracy curves, the confusion matrix and (linear, images) the weight templates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crossent.models import split_pipeline

    labels = [str(c) for c in metrics.get("class_names") or metrics["classes"]]
    saved = [
        _save(_curves(plt, metrics), out / "curves.png"),
        _save(_confusion(plt, metrics, labels), out / "confusion_matrix.png"),
    ]
    shape = metrics.get("image_shape")
    if shape and metrics["config"]["model"] == "linear":
        W = split_pipeline(pipe)[1].coef_  # (C, D): one template per class, standardized pixels
        saved.append(_save(_templates(plt, W, shape, labels), out / "weights.png"))
    return saved


def _curves(plt: Any, metrics: dict[str, Any]) -> Any:
    import numpy as np

    hist = metrics["history"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(hist["loss"]) + 1)
    unit = metrics.get("unit", "epoch")
    ax1.plot(epochs, hist["loss"])
    ax1.set(xlabel=unit, ylabel="objective (CE + penalty)", title="training loss")
    ax2.plot(epochs, hist["train_accuracy"], label="train")
    if hist["val_accuracy"]:
        ax2.plot(epochs, hist["val_accuracy"], label="validation")
    ax2.set(xlabel=unit, ylabel="accuracy", title="accuracy")
    ax2.legend()
    return fig


def _confusion(plt: Any, metrics: dict[str, Any], labels: list[str]) -> Any:
    import numpy as np

    cm = np.asarray(metrics["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xlabel="predicted",
        ylabel="true",
        title=f"test confusion matrix (accuracy {metrics['test_accuracy']:.3f})",
    )
    ax.set_xticklabels(labels, rotation=90 if len(labels) > 10 else 0)
    ax.set_yticklabels(labels)
    if cm.shape[0] <= 20:
        for (i, j), v in np.ndenumerate(cm):
            color = "white" if v > cm.max() / 2 else "black"
            ax.text(j, i, str(v), ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(im)
    return fig


def _templates(plt: Any, W: Any, shape: Any, labels: list[str]) -> Any:
    import numpy as np

    n = W.shape[0]
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    lim = float(np.percentile(np.abs(W), 99.5)) or 1.0
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(W[k].reshape(shape), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(labels[k])
    fig.suptitle("weight templates: row c of W in y = Wx + b (red: evidence for class c)")
    return fig


def _save(fig: Any, path: Path) -> str:
    """Write the figure as PNG (atomically) and close it; returns the file's name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path.name
