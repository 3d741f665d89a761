"""``crossent predict MODEL INPUT``: the class and probabilities of each row of INPUT."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crossent.cli import _shared
from crossent.cli._shared import CLIError, integer


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classes and probabilities for new examples",
        description="Predict with a saved model (a run directory or model .npz). INPUT holds "
        "raw features, one example per row: a .csv (header optional; the run's label column "
        "and a 'label' column are ignored, and with a header the run's feature columns are "
        "picked by name), a .npy array, or an .npz with an array 'X'.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory or model .npz file")
    p.add_argument("input", metavar="INPUT", help=".csv, .npy or .npz file of raw features")
    p.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        default="auto",
        help="whether the CSV's first line is a header (default: decided from the columns)",
    )
    p.add_argument(
        "--top", type=integer(1), default=3, help="probabilities shown per row (default 3)"
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(run=run)


def read_features(path_text: str, info: dict[str, Any], n_features: int, header: str) -> Any:
    """Raw features (N, D) from a .csv, .npy or .npz file, checked: finite, D columns."""
    from crossent._npz import read_npy, read_npz
    from crossent._tabular import check_features

    path = Path(path_text)
    if not path.exists():  # anything else that is not a regular file is refused when read
        raise CLIError(f"INPUT: expected a .csv, .npy or .npz file, got no file at {path}")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise CLIError(f"INPUT: expected a .csv, .npy or .npz file, got {path.name}")
    try:
        if suffix == ".npy":
            X = read_npy(path)
        elif suffix == ".npz":
            arrays = read_npz(path)
            if "X" not in arrays:
                raise CLIError(f"INPUT: expected an array 'X' in {path}, got {sorted(arrays)}")
            X = arrays["X"]
        else:
            X = _read_csv(path, info, n_features, {"yes": True, "no": False}.get(header))
        X = X.reshape(1, -1) if X.ndim <= 1 else X.reshape(len(X), -1) if X.size else X
        X = check_features(X, str(path))
    except (ValueError, OSError) as exc:
        raise CLIError(f"INPUT: {exc}") from None
    if X.shape[1] != n_features:
        raise CLIError(f"INPUT: expected {n_features} features per row, got {X.shape[1]}")
    return X


def _read_csv(path: Path, info: dict[str, Any], n_features: int, header: bool | None) -> Any:
    from crossent._tabular import read_csv

    data: dict[str, Any] = info["data"] if isinstance(info.get("data"), dict) else {}
    label = data.get("label_column") if data.get("source") == "csv" else None
    names = info.get("feature_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = None
    known = [*(names or []), *([label] if isinstance(label, str) else [])]
    table = read_csv(path, header=header, names=known)
    width = table.width
    if table.header is not None:
        if names and all(n in table.header for n in names):  # the run's columns, by name
            cols = [table.header.index(n) for n in names]
        else:
            cols = [j for j, h in enumerate(table.header) if h not in ("label", label)]
    else:
        cols = list(range(width))
        if width == n_features + 1 and data.get("source") == "csv" and not isinstance(label, str):
            cols.pop(-1 if label is None else int(label) % width)  # the run's label column
    if len(cols) != n_features:
        shown = f" (header: {','.join(table.header)})" if table.header else ""
        raise CLIError(
            f"INPUT: expected {n_features} feature columns, got {len(cols)} in {path}{shown}"
        )
    return table.numbers(cols)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    _shared.require("sklearn", *(() if args.json else ("rich",)))
    model, info = _shared.resolve_model(args.model)
    clf = _shared.classifier_of(model)
    X = read_features(args.input, info, clf.n_features_in_, args.header)
    proba = model.predict_proba(X)  # (N, C)
    classes = clf.classes_
    top = min(args.top, len(classes))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    rows = [
        {"prediction": classes[o[0]].item(), "top": [[classes[k].item(), float(p[k])] for k in o]}
        for p, o in zip(proba, order, strict=True)
    ]
    if args.json:
        _shared.print_json(
            {"classes": classes.tolist(), "predictions": rows, "probabilities": proba.tolist()}
        )
        return 0
    from rich.table import Table

    table = Table(title=f"crossent predict ({len(rows)} rows)")
    table.add_column("row", justify="right")
    table.add_column("class", justify="right")
    table.add_column(f"top {top} probabilities")
    for i, r in enumerate(rows):
        table.add_row(str(i), str(r["prediction"]), "  ".join(f"{c}: {p:.3f}" for c, p in r["top"]))
    _shared.console().print(table)
    return 0
