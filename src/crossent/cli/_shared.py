"""What the subcommands share: the argument parser and its checks, the data options, optional
dependencies, model resolution, the progress bar, the tables and JSON output.

Every subcommand module imports from here and from nowhere else in ``crossent.cli`` (no cycle).
Heavy dependencies (rich, scikit-learn) are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn


class CLIError(Exception):
    """A user-facing error: printed as ``crossent COMMAND: error: ...`` with exit status 2."""


# optional dependencies the commands import, and the extra that installs each
OPTIONAL_MODULES = {
    "rich": "cli",
    "sklearn": "cli",
    "scipy": "cli",
    "matplotlib": "cli",
    "threadpoolctl": "cli",
    "torch": "torch",
}

# a library argument named in an error message -> the option that sets it
OPTIONS = {
    "label_column": "--label-column",
    "test_size": "--test-size",
    "limit": "--limit",
    "seed": "--seed",
    "header": "--header",
    "source": "--data",
    "data": "--data",
    "path": "--data",
    "alpha": "--alpha",
    "l1_ratio": "--l1-ratio",
    "learning_rate_init": "--lr",
    "max_iter": "--epochs",
    "batch_size": "--batch-size",
    "hidden_layer_sizes": "--hidden",
    "solver": "--solver",
    "penalty": "--penalty",
}


def as_option_error(exc: Exception, prefix: str = "") -> CLIError:
    """``exc`` as a CLIError whose leading argument name is replaced by its option."""
    name, sep, rest = str(exc).partition(": ")
    if sep and name in OPTIONS:
        return CLIError(f"{OPTIONS[name]}: {rest}")
    return CLIError(f"{prefix}{exc}")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``crossent train: error: --lr: ...``."""

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


# ---- argument types: each check once, with the option in the message (argparse adds it) -----
# the largest --seed: scikit-learn's random_state and NumPy's legacy seeds are 32-bit
SEED_MAX = 2**32 - 1


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A finite number in the interval; the message writes the interval as [low, high)."""
    lo, hi = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    if high == math.inf:
        expected = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        expected = f"a number in {lo}{low:g}, {high:g}{hi}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def require(*modules: str) -> None:
    """Stop with one line naming the extra to install if an optional module is missing."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_module(name)


def missing_module(name: str) -> CLIError:
    extra = OPTIONAL_MODULES.get(name.partition(".")[0], "cli")
    return CLIError(
        f"this command needs {name!r}, which is not installed; install it with: "
        f"pip install 'crossent[{extra}]'"
    )


# ---- data ------------------------------------------------------------------------------------
def add_data_arguments(p: argparse.ArgumentParser, *, limit: bool = True) -> None:
    """The ``--data`` options shared by ``train`` and ``evaluate`` (defaults filled in later,
    so that an option given where it does not apply can be refused)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="SOURCE",
        help="digits (bundled, default), mnist, fashion-mnist, or a .csv/.npz file",
    )
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of the MNIST/Fashion-MNIST IDX files (default: the cache)",
    )
    g.add_argument(
        "--label-column",
        metavar="COL",
        help="CSV label column: name or index (default: 'label' or the last)",
    )
    g.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        help="whether the CSV's first line is a header (default: auto, decided from "
        "the columns; an ambiguous file is refused)",
    )
    g.add_argument(
        "--test-size",
        type=number(0, 1, low_open=True, high_open=True),
        help="test fraction for digits/CSV/NPZ (default: 0.25)",
    )
    if limit:
        g.add_argument(
            "--limit", type=integer(1), metavar="N", help="use at most N training examples"
        )
    g.add_argument("--offline", action="store_true", help="never download MNIST")


def data_spec(args: argparse.Namespace, seed: int) -> Any:
    """The :class:`~crossent.data.DataSpec` the data options describe."""
    from crossent.data import DataSpec, parse_source

    try:
        source, path = parse_source(args.data or "digits")
    except ValueError as exc:
        raise as_option_error(exc) from None
    mnist = source in ("mnist", "fashion-mnist")
    for option, value in (("--data-dir", args.data_dir), ("--offline", args.offline)):
        if value and not mnist:
            raise CLIError(f"{option}: applies to --data mnist or fashion-mnist, got {source}")
    for option, value in (("--label-column", args.label_column), ("--header", args.header)):
        if value is not None and source != "csv":
            raise CLIError(f"{option}: applies to a .csv --data, got {source}")
    if args.test_size is not None and mnist:
        raise CLIError(f"--test-size: {source} has its own test split; drop --test-size")
    if mnist:
        path = args.data_dir or path
    if path is not None:  # absolute, so that the run directory can be reloaded from anywhere
        path = str(Path(path).expanduser().resolve())
    label = args.label_column
    if label is not None and label.lstrip("-").isdigit():
        label = int(label)
    header = {"yes": True, "no": False}.get(args.header or "auto")
    test_size = 0.25 if args.test_size is None else args.test_size
    return DataSpec(
        source, path, label, test_size, seed, getattr(args, "limit", None), not args.offline, header
    )


def load_data(spec: Any) -> Any:
    from crossent._files import NotARegularFileError
    from crossent.data import load_dataset

    try:
        with _reading(spec) as progress:
            return load_dataset(spec, progress=progress)
    except (OSError, ValueError, TypeError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            raise CLIError(f"--data: cannot read {exc.filename} ({exc.strerror})") from None
        if isinstance(exc, NotARegularFileError):
            raise CLIError(f"--data: {exc}") from None
        raise as_option_error(exc, "--data: ") from None  # the data, not a training option


BAR_MIN_BYTES = 16 << 20  # a CSV file read in about a second: no bar


@contextlib.contextmanager
def _reading(spec: Any) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal's stderr while a large CSV file is read, else nothing."""
    path = Path(spec.path) if spec.source == "csv" and spec.path else None
    if path is None or not sys.stderr.isatty() or not path.is_file():
        yield None
        return
    if path.stat().st_size < BAR_MIN_BYTES:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"reading {path.name}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("read", total=path.stat().st_size)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def fingerprint(spec: Any) -> dict[str, Any]:
    """Size and SHA-256 of the data files, recorded in the run (see ``data_fingerprint``)."""
    from crossent._runs import data_fingerprint

    try:
        return data_fingerprint(spec)
    except (OSError, ValueError) as exc:  # the file changed under us since it was loaded
        raise CLIError(f"--data: {exc}") from None


def check_data_unchanged(spec: Any, info: dict[str, Any], option: str = "MODEL") -> None:
    """Refuse to re-split a data file that changed since the run was trained."""
    from crossent._runs import check_data_fingerprint

    try:
        check_data_fingerprint(spec, info.get("data_fingerprint"))
    except (OSError, ValueError) as exc:
        raise CLIError(f"{option}: {exc}") from None


def check_matplotlib(alternative: str) -> None:
    """Import matplotlib before the work starts: an ``MPLBACKEND`` that names no backend makes
    the import fail, and a finished training must not be lost to it."""
    try:
        import matplotlib  # noqa: F401
    except ValueError as exc:
        if "backend" not in str(exc):
            raise
        raise CLIError(
            f"MPLBACKEND: expected a matplotlib backend (agg, svg, tkagg, ...), got "
            f"{os.environ.get('MPLBACKEND', '')!r}; unset it (crossent draws its pictures "
            f"with Agg whatever it says), or {alternative}"
        ) from None


# ---- models ----------------------------------------------------------------------------------
def classifier_of(model: Any) -> Any:
    """The crossent estimator inside a Pipeline (or the model itself)."""
    from crossent.models import split_pipeline

    return split_pipeline(model)[1]


def resolve_model(path_text: str, option: str = "MODEL") -> tuple[Any, dict[str, Any]]:
    """(model, metrics of its run, or the model file's extra metadata) from a run directory or
    a model file; every file read is checked."""
    from crossent.io import ModelFileError, load_model, read_run_metrics

    path = Path(path_text)
    metrics: dict[str, Any] = {}
    if path.is_dir():
        try:
            metrics = read_run_metrics(path)
        except (OSError, ValueError) as exc:
            raise CLIError(f"{option}: {exc}") from None
        path = path / metrics["model_file"]
    elif not path.exists():
        raise CLIError(
            f"{option}: expected a run directory or a model .npz file, got no file "
            f"or directory at {path}"
        )
    try:
        model, extra = load_model(path, with_extra=True)
    except ModelFileError as exc:
        raise CLIError(f"{option}: {exc}") from None
    return model, metrics or dict(extra)


# ---- output ----------------------------------------------------------------------------------
def console(*, stderr: bool = False) -> Any:
    """A rich Console whose reader leaving (``crossent evaluate | head``) ends the command the
    way ``print`` does: ``main`` sees BrokenPipeError and exits 0 quietly (rich would exit 1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(stderr=stderr)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def make_progress(console: Any, unit: str, *, disable: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=10),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4g} acc {task.fields[acc]:.3f} val {task.fields[val]}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_summary(console: Any, metrics: dict[str, Any], out: Path | None, unit: str) -> None:
    """The metrics table of ``train`` (``out``: the run directory) or ``evaluate``."""
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


def print_confusion(console: Any, metrics: dict[str, Any]) -> None:
    """The test confusion matrix: one row per true class, one column per predicted class."""
    from rich.table import Table

    names = metrics.get("class_names")
    if not names or len(names) != len(metrics["classes"]):
        names = metrics["classes"]
    labels = [str(c) for c in names]
    table = Table(title="test confusion matrix (rows: true class, columns: predicted)")
    table.add_column("true \\ pred")
    for name in labels:
        table.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(labels, metrics["confusion_matrix"], strict=True)):
        table.add_row(name, *(f"[bold]{v}[/]" if j == i else str(v) for j, v in enumerate(row)))
    console.print(table)


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
            f"--data: expected labels among the model's classes {classes.tolist()[:20]}, got "
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


def fit_metrics(
    pipe: Any, clf: Any, ds: Any, parts: tuple[Any, ...], Z_fit: Any, Z_val: Any
) -> dict[str, Any]:
    """The metrics of a fitted run: accuracies, test loss and confusion, sizes, data facts."""
    import numpy as np

    _, y_fit, _, y_val = parts
    weights = clf.penalized_weights()
    return {
        "train_accuracy": float(np.mean(clf.predict(Z_fit) == y_fit)),
        "val_accuracy": float(np.mean(clf.predict(Z_val) == y_val)) if Z_val is not None else None,
        **evaluate_model(pipe, ds.X_test, ds.y_test),
        "final_loss": float(clf.loss_curve_[-1]) if clf.loss_curve_ else None,
        "n_iter": int(clf.n_iter_),
        "zero_weight_fraction": float(np.mean(np.concatenate([W.ravel() for W in weights]) == 0)),
        "n_train": len(y_fit),
        "n_val": 0 if y_val is None else len(y_val),
        "n_test": len(ds.y_test),
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "class_names": ds.class_names,
        "feature_names": ds.feature_names,
    }
