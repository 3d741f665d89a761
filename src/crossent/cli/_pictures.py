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
    import numpy as np

    from crossent.models import split_pipeline

    saved: list[str] = []
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
    saved.append(_save(fig, out / "curves.png"))

    cm = np.asarray(metrics["confusion_matrix"])
    labels = [str(c) for c in metrics.get("class_names") or metrics["classes"]]
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
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > cm.max() / 2 else "black",
                fontsize=8,
            )
    fig.colorbar(im)
    saved.append(_save(fig, out / "confusion_matrix.png"))

    shape = metrics.get("image_shape")
    clf = split_pipeline(pipe)[1]
    if shape and metrics["config"]["model"] == "linear":
        W = clf.coef_  # (C, D): one template per class, acting on standardized pixels
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
        saved.append(_save(fig, out / "weights.png"))
    return saved


def _save(fig: Any, path: Path) -> str:
    """Write the figure as PNG (atomically) and close it; returns the file's name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path.name
