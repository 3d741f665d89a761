"""``crossent evaluate MODEL``: accuracy, loss and confusion matrix of a saved model on the test
split of its own data, or of ``--data``."""

from __future__ import annotations

import argparse
from typing import Any

from crossent.cli import _shared
from crossent.cli._shared import SEED_MAX, CLIError, integer


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, loss and confusion matrix of a saved model",
        description="Evaluate a saved model (a run directory or its model.npz) on the test split "
        "of its own data, or of --data.",
    )
    p.add_argument("model", metavar="MODEL", help="run directory or model .npz file")
    _shared.add_data_arguments(p, limit=False)
    p.add_argument(
        "--seed", type=integer(0, SEED_MAX), default=None, help="split seed (default: the run's)"
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(run=run)


def _check_data_options(args: argparse.Namespace) -> None:
    """Refuse data options that describe no --data, before anything heavy is imported."""
    if args.data is not None:
        return
    given = [
        option
        for option, value in (
            ("--data-dir", args.data_dir),
            ("--label-column", args.label_column),
            ("--header", args.header),
            ("--test-size", args.test_size),
            ("--offline", args.offline),
        )
        if value
    ]
    if given:
        raise CLIError(
            f"{given[0]}: describes --data; without --data the model's own test "
            "split is used (pass --data too, or drop it)"
        )


def _spec(args: argparse.Namespace, info: dict[str, Any]) -> Any:
    from crossent.data import DataSpec

    if args.data is not None:
        return _shared.data_spec(args, 0 if args.seed is None else args.seed)
    try:
        spec = DataSpec.from_dict(info.get("data") or {"source": "digits"})
        if args.seed is not None:
            spec = DataSpec.from_dict({**spec.to_dict(), "seed": args.seed})
    except (TypeError, ValueError) as exc:
        raise CLIError(f"MODEL: its data description is damaged ({exc})") from None
    return spec


def run(args: argparse.Namespace) -> int:
    _shared.require("sklearn", *(() if args.json else ("rich",)))
    _check_data_options(args)
    model, info = _shared.resolve_model(args.model)
    spec = _spec(args, info)
    if args.data is None:  # the run's own file: its test split only if the file is unchanged
        _shared.check_data_unchanged(spec, info)
    ds = _shared.load_data(spec)
    n_features = _shared.classifier_of(model).n_features_in_
    if ds.X_test.shape[1] != n_features:
        raise CLIError(
            f"--data: expected {n_features} features for this model, got "
            f"{ds.X_test.shape[1]} ({ds.name})"
        )
    metrics = _shared.evaluate_model(model, ds.X_test, ds.y_test)
    metrics["data"] = spec.to_dict()
    metrics["n_test"] = len(ds.y_test)
    if args.json:
        _shared.print_json(metrics)
        return 0
    console = _shared.console()
    _shared.print_summary(console, metrics, None, "epoch")
    _shared.print_confusion(console, {**metrics, "class_names": ds.class_names})
    return 0
