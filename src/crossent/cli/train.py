"""``crossent train``: fit the linear or MLP classifier, with a progress bar, a summary table,
and a run directory (model, ``metrics.json``, pictures, a per-epoch checkpoint)."""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

from crossent._penalties import PENALTY_KINDS
from crossent.cli import CLIError

CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"
PICTURES = ("curves.png", "confusion_matrix.png", "weights.png")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--data`` options shared by ``train`` and ``evaluate``."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="digits",
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
        "--test-size",
        type=float,
        default=0.25,
        help="test fraction for digits/CSV/NPZ (default: 0.25)",
    )
    g.add_argument("--limit", type=int, metavar="N", help="use at most N training examples")
    g.add_argument("--offline", action="store_true", help="never download MNIST")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the softmax classifier (default: linear + L2 on the bundled digits)",
        description="Train a softmax classifier (linear y = Wx + b, or a ReLU network) with "
        "cross-entropy + L1/L2 on handwritten digits, MNIST or your own CSV/NPZ.",
    )
    add_data_arguments(p)
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=("linear", "mlp"),
        default="linear",
        help="linear: y = Wx + b (default); mlp: ReLU hidden layers, then the class scores",
    )
    g.add_argument(
        "--hidden",
        default="100",
        metavar="H[,H...]",
        help="MLP hidden layer sizes, comma-separated (default: 100)",
    )
    g.add_argument(
        "--penalty",
        choices=(*PENALTY_KINDS, "none"),
        default="l2",
        help="R(W) in mean CE + alpha·R(W) (default: l2 = ½‖W‖²; the bias is not penalized)",
    )
    g.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="penalty strength (default: 1e-3 linear, 1e-4 mlp)",
    )
    g.add_argument(
        "--l1-ratio", type=float, default=0.15, help="elastic-net share of L1 (default: 0.15)"
    )
    g.add_argument(
        "--solver",
        choices=("auto", "lbfgs", "sgd", "adam"),
        default="auto",
        help="auto: lbfgs for a linear model with L2, sgd for L1, adam for the mlp",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=int,
        default=200,
        help="most epochs (L-BFGS: iterations; default: 200); stops earlier on convergence",
    )
    g.add_argument("--batch-size", type=int, default=64, help="SGD/Adam batch (default: 64)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (SGD/Adam)")
    g.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training split held out for validation (default: 0.1)",
    )
    g.add_argument("--seed", type=int, default=0, help="seeds the split, init and shuffling")
    g = p.add_argument_group("output")
    g.add_argument(
        "--out", default="runs/latest", metavar="DIR", help="run directory (default: runs/latest)"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint.npz (saved after every epoch)",
    )
    g.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    g.add_argument("--no-plots", action="store_true", help="skip the pictures")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def data_spec_from_args(args: argparse.Namespace) -> Any:
    from crossent.data import DataSpec, parse_source

    try:
        source, path = parse_source(args.data)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if source in ("mnist", "fashion-mnist"):
        path = args.data_dir or path
    if path is not None:  # absolute, so that the run directory can be reloaded from anywhere
        path = str(Path(path).expanduser().resolve())
    label = args.label_column
    if label is not None and label.lstrip("-").isdigit():
        label = int(label)
    return DataSpec(source, path, label, args.test_size, args.seed, args.limit, not args.offline)


def load_data(spec: Any) -> Any:
    from crossent.data import load_dataset

    try:
        return load_dataset(spec)
    except (OSError, ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None


def _config(args: argparse.Namespace) -> dict[str, Any]:
    hidden: tuple[int, ...] = ()
    if args.model == "mlp":
        try:
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        except ValueError:
            raise CLIError(f"--hidden: expected sizes like 128,64, got {args.hidden!r}") from None
    solver = args.solver
    if solver == "auto":  # as the estimators resolve it
        solver = "adam" if args.model == "mlp" else "lbfgs"
    linear = args.model == "linear"
    default_lr = {"sgd": 0.05, "adam": 0.01 if linear else 1e-3, "lbfgs": 0.05 if linear else 1e-3}
    lr = args.lr if args.lr is not None else default_lr[solver]
    if args.model == "mlp" and solver == "sgd" and args.lr is None:
        lr = 0.01
    return {
        "model": args.model,
        "hidden_layer_sizes": list(hidden),
        "penalty": None if args.penalty == "none" else args.penalty,
        "alpha": args.alpha
        if args.alpha is not None
        else (1e-3 if args.model == "linear" else 1e-4),
        "l1_ratio": args.l1_ratio,
        "solver": solver,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": lr,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
    }


def make_estimator(cfg: dict[str, Any]) -> Any:
    from crossent.models import MLPClassifier, SoftmaxClassifier

    common = dict(
        penalty=cfg["penalty"],
        alpha=cfg["alpha"],
        l1_ratio=cfg["l1_ratio"],
        solver=cfg["solver"],
        max_iter=cfg["epochs"],
        batch_size=cfg["batch_size"],
        learning_rate_init=cfg["learning_rate"],
        random_state=cfg["seed"],
    )
    if cfg["model"] == "mlp":
        return MLPClassifier(tuple(cfg["hidden_layer_sizes"]), **common)
    return SoftmaxClassifier(**common)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from crossent.cli import evaluate as report
    from crossent.io import ModelFileError, load_model, save_model, write_json_atomic
    from crossent.models import split_pipeline

    out = Path(args.out)
    cfg = _config(args)
    spec = data_spec_from_args(args)
    if not 0 <= args.val_fraction < 1:
        raise CLIError(f"--val-fraction: expected a number in [0, 1), got {args.val_fraction}")
    ds = load_data(spec)
    X_fit, y_fit, X_val, y_val = ds.X_train, ds.y_train, None, None
    if args.val_fraction > 0:
        X_fit, X_val, y_fit, y_val = train_test_split(
            ds.X_train, ds.y_train, test_size=args.val_fraction, random_state=args.seed
        )
    scaler = StandardScaler().fit(X_fit)  # fitted on the training part only
    Z_fit = scaler.transform(X_fit)
    Z_val = scaler.transform(X_val) if X_val is not None else None

    history: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "val_accuracy": []}
    clf = make_estimator(cfg)
    if args.resume:
        try:
            model, extra = load_model(out / CHECKPOINT, with_extra=True)
        except ModelFileError as exc:
            raise CLIError(f"--resume: {exc}") from None
        same = {k: v for k, v in cfg.items() if k != "epochs"}
        saved = {k: v for k, v in extra.get("config", {}).items() if k != "epochs"}
        if saved != same or extra.get("data") != spec.to_dict():
            raise CLIError(
                f"--resume: {out / CHECKPOINT} was made with other options "
                f"({json.dumps(saved)}, data {json.dumps(extra.get('data'))}); pass the same ones"
            )
        clf, history = split_pipeline(model)[1], extra["history"]
    else:  # a fresh run: no file of an earlier run may be taken for this one's
        for name in (MODEL, CHECKPOINT, "metrics.json", *PICTURES):
            (out / name).unlink(missing_ok=True)
    done = len(history["loss"])
    clf.set_params(warm_start=args.resume, max_iter=max(cfg["epochs"] - done, 1))
    try:
        unit = "iteration" if clf._check_hyperparameters() == "lbfgs" else "epoch"
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    pipe = Pipeline([("scaler", scaler), ("clf", clf)])

    def run_extra() -> dict[str, Any]:
        return {"config": cfg, "data": spec.to_dict(), "history": history}

    def on_epoch(info: dict[str, Any]) -> None:
        history["loss"].append(float(info["loss"]))
        history["train_accuracy"].append(float(np.mean(clf.predict(Z_fit) == y_fit)))
        if Z_val is not None:
            history["val_accuracy"].append(float(np.mean(clf.predict(Z_val) == y_val)))
        save_model(pipe, out / CHECKPOINT, extra=run_extra())
        val = f"{history['val_accuracy'][-1]:.3f}" if history["val_accuracy"] else "—"
        progress.update(
            task, advance=1, loss=history["loss"][-1], acc=history["train_accuracy"][-1], val=val
        )

    err = Console(stderr=True)
    progress = report.make_progress(err, unit, disable=args.quiet)
    converged = True
    t0 = time.perf_counter()
    with progress:
        task = progress.add_task(
            f"{cfg['model']} {clf._resolve_solver()} {unit}s",
            total=cfg["epochs"],
            completed=done,
            loss=float("nan"),
            acc=float("nan"),
            val="—",
        )
        try:
            if cfg["epochs"] > done:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    try:
                        clf.fit(Z_fit, y_fit, callback=on_epoch)
                    except ValueError as exc:  # e.g. a CSV with a single class
                        raise CLIError(f"{spec.source} data: {exc}") from None
                converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            n_done = len(history["loss"])
            progress.update(task, total=n_done, completed=n_done)
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                f"[yellow]interrupted[/] after {len(history['loss'])} {unit}s; the last "
                f"completed one is saved in {out / CHECKPOINT}; continue with "
                f"`crossent train --resume --out {out}` and the same options"
            )
            return 130
    fit_seconds = time.perf_counter() - t0
    metrics = report.evaluate_model(pipe, ds.X_test, ds.y_test)
    metrics = {
        "train_accuracy": float(np.mean(clf.predict(Z_fit) == y_fit)),
        "val_accuracy": float(np.mean(clf.predict(Z_val) == y_val)) if Z_val is not None else None,
        **metrics,
        "final_loss": float(clf.loss_curve_[-1]) if clf.loss_curve_ else None,
        "fit_seconds": fit_seconds,
        "n_iter": int(clf.n_iter_),
        "unit": unit,
        "converged": converged,
        "zero_weight_fraction": float(
            np.mean(np.concatenate([W.ravel() for W in getattr(clf, "coefs_", [clf.coef_])]) == 0)
        ),
        "n_train": len(y_fit),
        "n_val": 0 if y_val is None else len(y_val),
        "n_test": len(ds.y_test),
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "class_names": ds.class_names,
        "model_file": MODEL,
        **run_extra(),
    }
    save_model(pipe, out / MODEL, extra={"config": cfg, "data": spec.to_dict()})
    save_model(pipe, out / CHECKPOINT, extra=run_extra())
    if not args.no_plots:
        metrics["pictures"] = report.save_pictures(out, pipe, metrics)
    write_json_atomic(out / "metrics.json", metrics)
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    else:
        report.print_summary(Console(), metrics, out, unit)
    return 0
