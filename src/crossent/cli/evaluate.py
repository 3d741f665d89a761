"""``crossent evaluate MODEL``: accuracy, loss and confusion matrix of a saved model on a test
split; also the reporting helpers ``crossent train`` uses (progress bar, summary, pictures)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crossent._files import atomic_open
from crossent.cli import CLIError


def add_parser(subparsers: Any) -> None:
    from crossent.cli.train import add_data_arguments

    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, loss and confusion matrix of a saved model",
        description="Evaluate a saved model (a run directory or its model.npz) on the test split "
        "of its own data, or of --data.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory or model .npz file")
    add_data_arguments(p)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(run=run, data=None)


def resolve_model(path_text: str) -> tuple[Any, dict[str, Any]]:
    """(model, metrics of its run or {}) from a run directory or a model file."""
    from crossent.io import ModelFileError, load_model

    path = Path(path_text)
    metrics: dict[str, Any] = {}
    if path.is_dir():
        if (path / "metrics.json").is_file():
            metrics = json.loads((path / "metrics.json").read_text())
        path = path / metrics.get("model_file", "model.npz")
    try:
        model, extra = load_model(path, with_extra=True)
    except ModelFileError as exc:
        raise CLIError(str(exc)) from None
    return model, metrics or dict(extra)


def evaluate_model(model: Any, X: Any, y: Any) -> dict[str, Any]:
    """``test_accuracy``, ``test_loss`` (mean cross-entropy), the confusion matrix, classes."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    import crossent

    classes = model.classes_
    y = np.asarray(y)
    known = np.isin(y, classes)
    if not known.all():
        raise CLIError(
            f"data: expected labels among the model's classes {classes.tolist()}, got "
            f"{np.unique(y[~known]).tolist()[:10]}"
        )
    log_proba = model.predict_log_proba(X)  # (N, C)
    idx = np.searchsorted(classes, y)
    pred = classes[np.argmax(log_proba, axis=1)]
    return {
        "test_accuracy": float(np.mean(pred == y)),
        "test_loss": float(crossent.cross_entropy(log_proba, idx)),
        "classes": classes.tolist(),
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
    }


def make_progress(console: Any, unit: str, *, disable: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=10),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} val {task.fields[val]}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_summary(console: Any, metrics: dict[str, Any], out: Path | None, unit: str) -> None:
    from rich.table import Table

    table = Table(title="crossent train" if out is not None else "crossent evaluate")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("train accuracy", metrics.get("train_accuracy")),
        ("validation accuracy", metrics.get("val_accuracy")),
        ("test accuracy", metrics.get("test_accuracy")),
        ("test loss", metrics.get("test_loss")),
        ("final training loss", metrics.get("final_loss")),
        (f"{unit}s", metrics.get("n_iter")),
        ("converged", metrics.get("converged")),
        ("fit time (s)", metrics.get("fit_seconds")),
    ]
    for name, value in rows:
        if value is not None or name == "test accuracy":
            table.add_row(name, _fmt(value))
    console.print(table)
    if out is not None:
        console.print(
            f"saved to [bold]{out}[/]: model.npz, metrics.json"
            + "".join(f", {p}" for p in metrics.get("pictures", []))
        )


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
    fig.tight_layout()
    with atomic_open(out / "curves.png") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    saved.append("curves.png")

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
    fig.tight_layout()
    with atomic_open(out / "confusion_matrix.png") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    saved.append("confusion_matrix.png")

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
        fig.tight_layout()
        with atomic_open(out / "weights.png") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        saved.append("weights.png")
    return saved


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from crossent.cli.train import data_spec_from_args, load_data
    from crossent.data import DataSpec
    from crossent.models import split_pipeline

    model, info = resolve_model(args.model)
    if args.data is None:
        spec = DataSpec.from_dict(info.get("data") or {"source": "digits"})
        if args.seed is not None:
            spec = DataSpec.from_dict({**spec.to_dict(), "seed": args.seed})
    else:
        args.seed = args.seed if args.seed is not None else 0
        spec = data_spec_from_args(args)
    ds = load_data(spec)
    n_features = split_pipeline(model)[1].n_features_in_
    if ds.X_test.shape[1] != n_features:
        raise CLIError(
            f"data: expected {n_features} features for this model, got "
            f"{ds.X_test.shape[1]} ({ds.name})"
        )
    metrics = evaluate_model(model, ds.X_test, ds.y_test)
    metrics["data"] = spec.to_dict()
    metrics["n_test"] = len(ds.y_test)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_summary(Console(), metrics, None, "epoch")
    return 0
