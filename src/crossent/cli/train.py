"""``crossent train``: fit the linear or MLP classifier, with a progress bar, a summary table,
and a run directory (model, ``metrics.json``, pictures, a per-epoch checkpoint).

Every option and the data are checked before anything is written; the run is written into a
sibling directory that replaces ``--out`` only when it is complete (see ``_rundir``).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path
from typing import Any

from crossent._penalties import PENALTY_KINDS
from crossent.cli import _shared
from crossent.cli._rundir import RunWriter, check_out
from crossent.cli._shared import CLIError, as_option_error, integer, number

CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the softmax classifier (default: linear + L2 on the bundled digits)",
        description="Train a softmax classifier (linear y = Wx + b, or a ReLU network) with "
        "cross-entropy + L1/L2 on handwritten digits, MNIST or your own CSV/NPZ.",
    )
    _shared.add_data_arguments(p)
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=("linear", "mlp"),
        default="linear",
        help="linear: y = Wx + b (default); mlp: ReLU hidden layers, then the class scores",
    )
    g.add_argument(
        "--hidden",
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
        type=number(0),
        help="penalty strength (default for the linear model: the estimator's 'auto', "
        "scikit-learn LogisticRegression()'s strength, 1/N for more than two classes; "
        "1e-4 for the mlp)",
    )
    g.add_argument("--l1-ratio", type=number(0, 1), help="elastic-net share of L1 (default: 0.15)")
    g.add_argument(
        "--solver",
        choices=("auto", "lbfgs", "sgd", "adam"),
        default="auto",
        help="auto: as the estimator chooses (lbfgs for the linear model, adam for the mlp)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=integer(1),
        default=200,
        help="most epochs (L-BFGS: iterations; default: 200); stops earlier on convergence",
    )
    g.add_argument("--batch-size", type=integer(1), help="SGD/Adam batch (default: 64)")
    g.add_argument("--lr", type=number(0, low_open=True), help="learning rate (SGD/Adam)")
    g.add_argument(
        "--val-fraction",
        type=number(0, 1, high_open=True),
        help="share of the training split held out to report validation accuracy "
        "(default: 0.1 for SGD/Adam, 0 for L-BFGS, which trains on all of it)",
    )
    g.add_argument("--seed", type=integer(0), default=0, help="seeds the split, init and shuffling")
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        default="runs/latest",
        metavar="DIR",
        help="run directory (default: runs/latest); replaced only by a complete run",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (or a finished one, with more --epochs)",
    )
    g.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    g.add_argument("--no-plots", action="store_true", help="skip the pictures (no matplotlib)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _hidden(text: str) -> tuple[int, ...]:
    sizes = [h.strip() for h in text.split(",")]
    if not all(h.isdigit() and int(h) >= 1 for h in sizes):
        raise CLIError(f"--hidden: expected sizes like 128,64 (integers >= 1), got {text!r}")
    return tuple(int(h) for h in sizes)


def check_options(args: argparse.Namespace) -> str:
    """Refuse options that would be ignored; returns the solver ``auto`` resolves to."""
    from crossent.models import SoftmaxClassifier

    mlp = args.model == "mlp"
    solver = args.solver
    if solver == "auto":  # as the estimator resolves it (the MLP's default is adam)
        penalty = None if args.penalty == "none" else args.penalty
        solver = "adam" if mlp else SoftmaxClassifier(penalty=penalty)._resolve_solver()
    if args.hidden is not None and not mlp:
        raise CLIError("--hidden: applies to --model mlp; the linear model has no hidden layers")
    if mlp:
        _hidden(args.hidden or "100")
    unused = [("--lr", args.lr), ("--batch-size", args.batch_size)]
    for option, value in unused if solver == "lbfgs" else []:
        if value is not None:
            raise CLIError(
                f"{option}: not used by the L-BFGS solver (full batch, its own step "
                "sizes); pass --solver sgd or adam, or drop it"
            )
    if args.l1_ratio is not None and args.penalty != "elasticnet":
        raise CLIError(f"--l1-ratio: applies to --penalty elasticnet, got --penalty {args.penalty}")
    if args.alpha is not None and args.penalty == "none":
        raise CLIError("--alpha: --penalty none has nothing to scale; drop one of them")
    return solver


def _config(args: argparse.Namespace, solver: str, val_fraction: float) -> dict[str, Any]:
    linear = args.model == "linear"
    default_lr = {"sgd": 0.05 if linear else 0.01, "adam": 0.01 if linear else 1e-3}
    return {
        "model": args.model,
        "hidden_layer_sizes": [] if linear else list(_hidden(args.hidden or "100")),
        "penalty": None if args.penalty == "none" else args.penalty,
        "alpha": args.alpha if args.alpha is not None else ("auto" if linear else 1e-4),
        "l1_ratio": 0.15 if args.l1_ratio is None else args.l1_ratio,
        "solver": solver,
        "epochs": args.epochs,
        "batch_size": 64 if args.batch_size is None else args.batch_size,
        "learning_rate": args.lr if args.lr is not None else default_lr.get(solver, 1e-3),
        "seed": args.seed,
        "val_fraction": val_fraction,
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


def _split(ds: Any, spec: Any, val_fraction: float, seed: int) -> tuple[Any, ...]:
    """(X_fit, y_fit, X_val, y_val): the training part, checked to cover the test classes."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    X_fit, y_fit, X_val, y_val = ds.X_train, ds.y_train, None, None
    cut = "--limit" if spec.limit is not None else "--data"
    if val_fraction > 0:
        n_val = math.ceil(val_fraction * len(y_fit))
        if n_val < 1 or len(y_fit) - n_val < 2:
            raise CLIError(
                f"--val-fraction: {val_fraction} of {len(y_fit)} training examples "
                "leaves no validation or training set; pass --val-fraction 0"
            )
        X_fit, X_val, y_fit, y_val = train_test_split(
            X_fit, y_fit, test_size=val_fraction, random_state=seed
        )
    fit_classes = np.unique(y_fit)
    missing = np.setdiff1d(np.unique(ds.y_test), fit_classes)
    if fit_classes.size < 2 or missing.size:
        raise CLIError(
            f"{cut}: expected at least 2 classes in the {len(y_fit)} training examples and every "
            f"test class among them, got {fit_classes.size} class(es)"
            + (f"; missing {missing.tolist()[:10]}" if missing.size else "")
            + ("; pass a larger --limit" if cut == "--limit" else "")
        )
    return X_fit, y_fit, X_val, y_val


def _history(extra: dict[str, Any], path: Path) -> dict[str, list[float]]:
    hist = extra.get("history")
    keys = ("loss", "train_accuracy", "val_accuracy")
    if not isinstance(hist, dict) or not all(
        isinstance(hist.get(k), list) and all(isinstance(v, (int, float)) for v in hist[k])
        for k in keys
    ):
        raise CLIError(
            f"--resume: {path} has no training history (not a checkpoint of "
            "crossent train); train without --resume"
        )
    return {k: [float(v) for v in hist[k]] for k in keys}


class _Diverged(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    _shared.require("rich", "sklearn", "scipy")
    if not args.no_plots:
        try:
            _shared.require("matplotlib")
        except CLIError as exc:
            raise CLIError(f"{exc}, or pass --no-plots") from None
    solver = check_options(args)
    out = Path(args.out)
    check_out(out)
    spec = _shared.data_spec(args, args.seed)
    ds = _shared.load_data(spec)
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.0 if solver == "lbfgs" else 0.1
    X_fit, y_fit, X_val, y_val = _split(ds, spec, val_fraction, args.seed)
    cfg = _config(args, solver, val_fraction)
    clf = make_estimator(cfg)
    try:
        clf._check_hyperparameters()
    except (ValueError, TypeError) as exc:
        raise as_option_error(exc) from None
    with RunWriter(out, resume=args.resume) as writer:
        return _train(args, writer, cfg, spec, ds, clf, (X_fit, y_fit, X_val, y_val))


def _train(
    args: argparse.Namespace,
    writer: RunWriter,
    cfg: dict[str, Any],
    spec: Any,
    ds: Any,
    clf: Any,
    parts: tuple[Any, ...],
) -> int:
    import numpy as np
    from rich.console import Console
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from crossent.io import ModelFileError, load_model, save_model, write_json_atomic

    X_fit, y_fit, X_val, y_val = parts
    scaler = StandardScaler().fit(X_fit)  # fitted on the training part only
    Z_fit = scaler.transform(X_fit)
    Z_val = scaler.transform(X_val) if X_val is not None else None
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "val_accuracy": []}
    if args.resume:
        source = writer.checkpoint_source(CHECKPOINT)
        try:
            model, extra = load_model(source, with_extra=True)
        except ModelFileError as exc:
            raise CLIError(f"--resume: {exc}") from None
        saved = extra.get("config") if isinstance(extra.get("config"), dict) else {}
        data = extra.get("data") if isinstance(extra.get("data"), dict) else {}
        now = {**cfg, **{f"data.{k}": v for k, v in spec.to_dict().items()}}
        then = {**saved, **{f"data.{k}": v for k, v in data.items()}}
        changed = [
            f"{k} {then.get(k)!r} (now {v!r})"
            for k, v in now.items()
            if k != "epochs" and then.get(k) != v
        ]
        if changed:
            raise CLIError(
                f"--resume: {source} was made with other options: {', '.join(changed[:4])}; "
                "pass the same ones"
            )
        history = _history(extra, source)
        clf = _shared.classifier_of(model)
    done = len(history["loss"])
    clf.set_params(warm_start=args.resume, max_iter=max(cfg["epochs"] - done, 1))
    unit = "iteration" if cfg["solver"] == "lbfgs" else "epoch"
    pipe = Pipeline([("scaler", scaler), ("clf", clf)])
    checkpoint = writer.work / CHECKPOINT

    def run_extra() -> dict[str, Any]:
        return {"config": cfg, "data": spec.to_dict(), "history": history}

    def on_epoch(info: dict[str, Any]) -> None:
        loss = float(info["loss"])
        if not math.isfinite(loss):
            raise _Diverged(f"the loss became {loss} in {unit} {len(history['loss']) + 1}")
        history["loss"].append(loss)
        history["train_accuracy"].append(float(np.mean(clf.predict(Z_fit) == y_fit)))
        if Z_val is not None:
            history["val_accuracy"].append(float(np.mean(clf.predict(Z_val) == y_val)))
        save_model(pipe, checkpoint, extra=run_extra())
        val = f"{history['val_accuracy'][-1]:.3f}" if history["val_accuracy"] else "—"
        progress.update(
            task, advance=1, loss=history["loss"][-1], acc=history["train_accuracy"][-1], val=val
        )

    err = Console(stderr=True)
    progress = _shared.make_progress(err, unit, disable=args.quiet)
    converged = True
    t0 = time.perf_counter()
    with progress:
        task = progress.add_task(
            f"{cfg['model']} {cfg['solver']} {unit}s",
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
                    _fit(clf, Z_fit, y_fit, on_epoch, cfg)
                converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            n_done = len(history["loss"])
            progress.update(task, total=n_done, completed=n_done)
        except KeyboardInterrupt:
            progress.stop()
            writer.keep_partial = True
            err.print(
                f"[yellow]interrupted[/] after {len(history['loss'])} {unit}s; the last "
                f"completed one is saved in {checkpoint}; continue with "
                f"`crossent train --resume --out {writer.out}` and the same options "
                f"({writer.out} is unchanged)"
            )
            return 130
    fit_seconds = time.perf_counter() - t0
    metrics = _shared.fit_metrics(pipe, clf, ds, parts, Z_fit, Z_val)
    metrics.update(
        fit_seconds=fit_seconds, unit=unit, converged=converged, model_file=MODEL, **run_extra()
    )
    save_model(pipe, writer.work / MODEL, extra={"config": cfg, "data": spec.to_dict()})
    save_model(pipe, checkpoint, extra=run_extra())
    if not args.no_plots:
        from crossent.cli._pictures import save_pictures

        metrics["pictures"] = save_pictures(writer.work, pipe, metrics)
    write_json_atomic(writer.work / "metrics.json", metrics)
    writer.commit()
    if args.json:
        _shared.print_json({k: v for k, v in metrics.items() if k != "history"})
    else:
        _shared.print_summary(Console(), metrics, writer.out, unit)
    return 0


def _fit(clf: Any, Z: Any, y: Any, on_epoch: Any, cfg: dict[str, Any]) -> None:
    """``clf.fit`` that turns a diverging run into a one-line error naming --lr."""
    import numpy as np

    lr = f"--lr (now {cfg['learning_rate']:g})" if cfg["solver"] != "lbfgs" else "--alpha"
    try:
        try:
            clf.fit(Z, y, callback=on_epoch)
        except ValueError as exc:  # the data are checked: NaN here comes from the parameters
            if "NaN" not in str(exc) and "inf" not in str(exc):
                raise CLIError(f"--data: {exc}") from None
            raise _Diverged("the scores became NaN or inf") from None
        params = np.concatenate([np.ravel(p) for p in clf._params()])
        if not np.isfinite(params).all():
            raise _Diverged("the parameters became NaN or inf")
        worst = 10 * math.log(len(clf.classes_))  # 10× the loss of a uniform guess
        if clf.loss_curve_ and clf.loss_curve_[-1] > worst:
            raise _Diverged(
                f"the loss ended at {clf.loss_curve_[-1]:.3g}, above 10·log C = "
                f"{worst:.3g} (a uniform guess scores log C)"
            )
    except _Diverged as exc:
        raise CLIError(f"training diverged: {exc}; lower {lr} (--out is unchanged)") from None
