"""``crossent predict MODEL INPUT``: the class and probabilities of each row of INPUT."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crossent.cli import CLIError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classes and probabilities for new examples",
        description="Predict with a saved model (a run directory or model .npz). INPUT holds "
        "raw features, one example per row: a .csv (header optional; a 'label' column is "
        "ignored), a .npy array, or an .npz with an array 'X'.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory or model .npz file")
    p.add_argument("input", metavar="INPUT", help=".csv, .npy or .npz file of raw features")
    p.add_argument("--top", type=int, default=3, help="probabilities shown per row (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(run=run)


def read_features(path_text: str) -> Any:
    """Raw features (N, D) from a .csv, .npy or .npz file."""
    import numpy as np

    from crossent.data import load_csv

    path = Path(path_text)
    if not path.is_file():
        raise CLIError(f"INPUT: expected a .csv, .npy or .npz file, got no file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            X = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "X" not in f.files:
                    raise CLIError(f"INPUT: expected an array 'X' in {path}, got {f.files}")
                X = f["X"]
        elif suffix == ".csv":
            X = _read_csv(path, load_csv)
        else:
            raise CLIError(f"INPUT: expected a .csv, .npy or .npz file, got {path.name}")
    except (ValueError, OSError) as exc:
        raise CLIError(f"INPUT: {exc}") from None
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise CLIError(f"INPUT: expected numeric features, got dtype {X.dtype}")
    return X.reshape(1, -1) if X.ndim == 1 else X.reshape(len(X), -1)


def _read_csv(path: Path, load_csv: Any) -> Any:
    import csv

    import numpy as np

    with open(path, newline="") as fh:
        first = next(csv.reader(fh), [])
    if "label" in [h.strip() for h in first]:
        X, _ = load_csv(path, "label")
        return X
    rows = np.genfromtxt(path, delimiter=",", dtype=np.float64)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    if np.isnan(rows[0]).all():  # a header row
        rows = rows[1:]
    if np.isnan(rows).any():
        raise CLIError(f"INPUT: expected numbers in every field of {path}, got blanks or text")
    return rows


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from crossent.cli.evaluate import resolve_model
    from crossent.models import split_pipeline

    model, _ = resolve_model(args.model)
    X = read_features(args.input)
    clf = split_pipeline(model)[1]
    if X.shape[1] != clf.n_features_in_:
        raise CLIError(f"INPUT: expected {clf.n_features_in_} features per row, got {X.shape[1]}")
    proba = model.predict_proba(X.astype(np.float64))  # (N, C)
    classes = clf.classes_
    top = max(1, min(args.top, len(classes)))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    rows = [
        {
            "prediction": classes[o[0]].item(),
            "top": [[classes[k].item(), float(p[k])] for k in o],
        }
        for p, o in zip(proba, order, strict=True)
    ]
    if args.json:
        print(
            json.dumps(
                {"classes": classes.tolist(), "predictions": rows, "probabilities": proba.tolist()}
            )
        )
        return 0
    table = Table(title=f"crossent predict ({len(rows)} rows)")
    table.add_column("row", justify="right")
    table.add_column("class", justify="right")
    table.add_column(f"top {top} probabilities")
    for i, r in enumerate(rows):
        table.add_row(str(i), str(r["prediction"]), "  ".join(f"{c}: {p:.3f}" for c, p in r["top"]))
    Console().print(table)
    return 0
