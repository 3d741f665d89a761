"""``crossent train``: fit the linear or MLP classifier, with a progress bar, a summary table,
and a run directory (model, ``metrics.json``, pictures, a per-epoch checkpoint).

Every option and the data are checked before anything is written; the run is written into a
sibling directory that replaces ``--out`` only when it is complete (see ``_rundir``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from crossent._penalties import PENALTY_KINDS
from crossent.cli import _shared
from crossent.cli._rundir import RunWriter, check_out
from crossent.cli._shared import SEED_MAX, CLIError, as_option_error, integer, number

CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"
HISTORY = ("loss", "train_accuracy", "val_accuracy")  # what the checkpoint records per epoch
# what --solver auto means for each --model (the estimators' own solver="auto")
AUTO_SOLVER = {"linear": "lbfgs", "mlp": "adam"}


# the options, group by group: (flags, keyword arguments of add_argument); a data table
_MODEL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--model",), dict(choices=("linear", "mlp"), default="linear",
        help="linear: y = Wx + b (default); mlp: ReLU hidden layers, then the class scores")),
    (("--hidden",), dict(metavar="H[,H...]",
        help="MLP hidden layer sizes, comma-separated (default: 100)")),
    (("--penalty",), dict(choices=(*PENALTY_KINDS, "none"), default="l2",
        help="R(W) in mean CE + alpha·R(W) (default: l2 = ½‖W‖²; the bias is not penalized)")),
    (("--alpha",), dict(type=number(0),
        help="penalty strength (default for the linear model: the estimator's 'auto', "
        "scikit-learn LogisticRegression()'s strength, 1/N for more than two classes; "
        "1e-4 for the mlp)")),
    (("--l1-ratio",), dict(type=number(0, 1), help="elastic-net share of L1 (default: 0.15)")),
    (("--solver",), dict(choices=("auto", "lbfgs", "sgd", "adam"), default="auto",
        help="auto: as the estimator chooses (lbfgs for the linear model, adam for the mlp)")),
]  # fmt: skip
_TRAINING_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--epochs",), dict(type=integer(1), default=200,
        help="most epochs (L-BFGS: iterations; default: 200); stops earlier on convergence")),
    (("--batch-size",), dict(type=integer(1), help="SGD/Adam batch (default: 64)")),
    (("--lr",), dict(type=number(0, low_open=True), help="learning rate (SGD/Adam)")),
    (("--val-fraction",), dict(type=number(0, 1, high_open=True),
        help="share of the training split held out to report validation accuracy "
        "(default: 0.1 for SGD/Adam, 0 for L-BFGS, which trains on all of it)")),
    (("--seed",), dict(type=integer(0, SEED_MAX), default=0,
        help="seeds the split, init and shuffling (0 to 2**32 - 1)")),
]  # fmt: skip
_OUTPUT_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--out",), dict(default="runs/latest", metavar="DIR",
        help="run directory (default: runs/latest); replaced only by a complete run; "
        "a symbolic link is followed")),
    (("--resume",), dict(action="store_true",
        help="continue an interrupted run (or a finished one, with more --epochs); SGD and "
        "Adam continue bit for bit, L-BFGS restarts its curvature memory")),
    (("--json",), dict(action="store_true", help="print the metrics as JSON on stdout")),
    (("--no-plots",), dict(action="store_true", help="skip the pictures (no matplotlib)")),
    (("--quiet",), dict(action="store_true", help="no progress bar")),
]  # fmt: skip


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the softmax classifier (default: linear + L2 on the bundled digits)",
        description="Train a softmax classifier (linear y = Wx + b, or a ReLU network) with "
        "cross-entropy + L1/L2 on handwritten digits, MNIST or your own CSV/NPZ.",
    )
    _shared.add_data_arguments(p)
    for title, table in (
        ("model", _MODEL_OPTIONS),
        ("training", _TRAINING_OPTIONS),
        ("output", _OUTPUT_OPTIONS),
    ):
        group = p.add_argument_group(title)
        for flags, kwargs in table:
            group.add_argument(*flags, **kwargs)
    p.set_defaults(run=run)


# the largest hidden layer --hidden takes; the memory check after loading the data is finer
MAX_HIDDEN = 1_000_000


def _hidden(text: str) -> tuple[int, ...]:
    sizes = [h.strip() for h in text.split(",")]
    # isascii: '²'.isdigit() is true, but int('²') is an error
    if not all(h.isascii() and h.isdigit() and 1 <= int(h) <= MAX_HIDDEN for h in sizes):
        raise CLIError(
            f"--hidden: expected sizes like 128,64 (integers from 1 to {MAX_HIDDEN}), got {text!r}"
        )
    return tuple(int(h) for h in sizes)


def _check_memory(cfg: dict[str, Any], n_features: int, n_classes: int) -> None:
    """Refuse a network whose parameters, gradient and Adam moments exceed the memory."""
    widths = [n_features, *cfg["hidden_layer_sizes"], n_classes]
    n_params = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    need = 4 * 8 * n_params  # float64 parameters, gradient and two optimizer moments
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return
    if need > total:
        shape = " -> ".join(map(str, widths))
        raise CLIError(
            f"--hidden: a {shape} network has {n_params:.3g} parameters, {need / 2**30:.3g} "
            f"GiB with its gradient and optimizer state, more than this machine's "
            f"{total / 2**30:.3g} GiB of memory; pass smaller sizes"
        )


def check_options(args: argparse.Namespace) -> str:
    """Refuse options that would be ignored; returns the solver ``auto`` resolves to.

    Nothing heavy is imported: a mistake in the options is said at once."""
    mlp = args.model == "mlp"
    solver = args.solver
    if solver == "auto":  # as the estimators resolve it (a test checks that they agree)
        solver = AUTO_SOLVER[args.model]
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


def _split(ds: Any, args: argparse.Namespace, spec: Any, val_fraction: float) -> tuple[Any, ...]:
    """(X_fit, y_fit, X_val, y_val): the training part, checked to cover the test classes."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    X_fit, y_fit, X_val, y_val = ds.X_train, ds.y_train, None, None
    if val_fraction > 0:
        n_val = math.ceil(val_fraction * len(y_fit))
        if n_val < 1 or len(y_fit) - n_val < 2:
            raise CLIError(
                f"--val-fraction: {val_fraction} of {len(y_fit)} training examples "
                "leaves no validation or training set; pass --val-fraction 0"
            )
        X_fit, X_val, y_fit, y_val = train_test_split(
            X_fit, y_fit, test_size=val_fraction, random_state=args.seed
        )
    fit_classes = np.unique(y_fit)
    missing = np.setdiff1d(np.unique(ds.y_test), fit_classes)
    if fit_classes.size < 2 or missing.size:
        # the option that made the training part too small, else the data itself
        cut = "--limit" if spec.limit is not None else "--data"
        if cut == "--data" and args.test_size is not None:
            cut = "--test-size"
        hint = {"--limit": "; pass a larger --limit", "--test-size": "; pass a smaller --test-size"}
        raise CLIError(
            f"{cut}: expected at least 2 classes in the {len(y_fit)} training examples and every "
            f"test class among them, got {fit_classes.size} class(es)"
            + (f"; missing {missing.tolist()[:10]}" if missing.size else "")
            + hint.get(cut, "")
        )
    return X_fit, y_fit, X_val, y_val


def _history(extra: dict[str, Any], path: Path) -> dict[str, list[float]]:
    hist = extra.get("history")
    keys = HISTORY
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


def _out_path(text: str) -> Path:
    """``--out`` as given, or, for a symbolic link, the directory it points to: the run
    replaces the target and the link stays a link."""
    out = Path(text)
    return Path(os.path.realpath(out)) if out.is_symlink() else out


def run(args: argparse.Namespace) -> int:
    _shared.require("rich", "sklearn", "scipy")
    if not args.no_plots:
        try:
            _shared.require("matplotlib")
        except CLIError as exc:
            raise CLIError(f"{exc}, or pass --no-plots") from None
    solver = check_options(args)
    out = _out_path(args.out)
    check_out(out)
    spec = _shared.data_spec(args, args.seed)
    if not args.no_plots:
        _shared.check_matplotlib("pass --no-plots")
    ds = _shared.load_data(spec)
    fingerprint = _shared.fingerprint(spec)
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.0 if solver == "lbfgs" else 0.1
    parts = _split(ds, args, spec, val_fraction)
    cfg = _config(args, solver, val_fraction)
    if cfg["model"] == "mlp":
        _check_memory(cfg, ds.X_train.shape[1], len(set(ds.y_train.tolist())))
    clf = make_estimator(cfg)
    try:
        clf._check_hyperparameters()
    except (ValueError, TypeError) as exc:
        raise as_option_error(exc) from None
    with RunWriter(out, resume=args.resume) as writer:
        job = _Training(args, writer, cfg, spec, fingerprint, parts)
        try:
            return job.run(clf, ds)
        except OSError as exc:  # a full disk or a quota while writing the run
            if exc.errno is None:
                raise
            name = Path(exc.filename).name if exc.filename else "files"
            raise CLIError(
                f"--out: cannot write the run's {name} ({exc.strerror}); {writer.out} is unchanged"
            ) from None


class _Training:
    """One ``crossent train``: the history, a checkpoint after every epoch, the progress bar,
    Ctrl-C, then the metrics and the run directory."""

    def __init__(
        self,
        args: argparse.Namespace,
        writer: RunWriter,
        cfg: dict[str, Any],
        spec: Any,
        fingerprint: dict[str, Any],
        parts: tuple[Any, ...],
    ) -> None:
        self.args, self.writer, self.cfg, self.spec = args, writer, cfg, spec
        self.fingerprint, self.parts = fingerprint, parts
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY}
        self.unit = "iteration" if cfg["solver"] == "lbfgs" else "epoch"
        self.checkpoint = writer.work / CHECKPOINT
        self.saved_in: Path | None = None  # the checkpoint file holding the last epoch

    def extra(self, history: dict[str, list[float]] | None = None) -> dict[str, Any]:
        return {
            "config": self.cfg,
            "data": self.spec.to_dict(),
            "data_fingerprint": self.fingerprint,
            "history": self.history if history is None else history,
        }

    def resume(self) -> Any:
        """The interrupted (or finished) run's estimator, its options checked to be these."""
        from crossent.io import ModelFileError, load_model

        source = self.writer.checkpoint_source(CHECKPOINT)
        try:
            model, extra = load_model(source, with_extra=True)
        except ModelFileError as exc:
            raise CLIError(f"--resume: {exc}") from None
        saved = extra.get("config") if isinstance(extra.get("config"), dict) else {}
        data = extra.get("data") if isinstance(extra.get("data"), dict) else {}
        now = {**self.cfg, **{f"data.{k}": v for k, v in self.spec.to_dict().items()}}
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
        then_print = extra.get("data_fingerprint")
        if isinstance(then_print, dict) and then_print and then_print != self.fingerprint:
            raise CLIError(
                f"--resume: the data changed since {source} was saved (size or SHA-256 of "
                f"{', '.join(sorted(then_print))[:200]}); restore it, or train without --resume"
            )
        self.history = _history(extra, source)
        self.saved_in = source
        return _shared.classifier_of(model)

    def run(self, clf: Any, ds: Any) -> int:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        X_fit, y_fit, X_val, y_val = self.parts
        scaler = StandardScaler().fit(X_fit)  # fitted on the training part only
        Z_fit = scaler.transform(X_fit)
        Z_val = scaler.transform(X_val) if X_val is not None else None
        if self.args.resume:
            clf = self.resume()
        done = len(self.history["loss"])
        clf.set_params(warm_start=self.args.resume, max_iter=max(self.cfg["epochs"] - done, 1))
        pipe = Pipeline([("scaler", scaler), ("clf", clf)])
        t0 = time.perf_counter()
        converged = self.fit(pipe, (Z_fit, y_fit, Z_val, y_val))
        if converged is None:
            return 130
        fit_seconds = time.perf_counter() - t0
        return self.finish(pipe, ds, (Z_fit, Z_val), fit_seconds=fit_seconds, converged=converged)

    def fit(self, pipe: Any, data: tuple[Any, ...]) -> bool | None:
        """Train with the progress bar; whether it converged, or None when interrupted."""
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning

        from crossent.io import save_model

        Z_fit, y_fit, Z_val, y_val = data
        clf, cfg, unit, done = pipe[-1], self.cfg, self.unit, len(self.history["loss"])

        def on_epoch(info: dict[str, Any]) -> None:
            loss = float(info["loss"])
            if not math.isfinite(loss):
                raise _Diverged(f"the loss became {loss} in {unit} {len(self.history['loss']) + 1}")
            new = {k: [*v] for k, v in self.history.items()}
            new["loss"].append(loss)
            new["train_accuracy"].append(float(np.mean(clf.predict(Z_fit) == y_fit)))
            if Z_val is not None:
                new["val_accuracy"].append(float(np.mean(clf.predict(Z_val) == y_val)))
            save_model(pipe, self.checkpoint, extra=self.extra(new))
            self.history, self.saved_in = new, self.checkpoint  # only once it is on disk
            val = f"{new['val_accuracy'][-1]:.3f}" if new["val_accuracy"] else "—"
            progress.update(task, advance=1, loss=loss, acc=new["train_accuracy"][-1], val=val)

        progress = _shared.make_progress(
            _shared.console(stderr=True), unit, disable=self.args.quiet
        )
        with progress:
            task = progress.add_task(
                f"{cfg['model']} {cfg['solver']} {unit}s", total=cfg["epochs"], completed=done,
                loss=float("nan"), acc=float("nan"), val="—",
            )  # fmt: skip
            try:
                converged = True
                if cfg["epochs"] > done:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", ConvergenceWarning)
                        _fit(clf, Z_fit, y_fit, on_epoch, cfg)
                    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
                n_done = len(self.history["loss"])
                progress.update(task, total=n_done, completed=n_done)
            except KeyboardInterrupt:
                progress.stop()
                self.interrupted()
                return None
        return converged

    def interrupted(self) -> None:
        """Say what Ctrl-C kept: exactly the epochs the checkpoint on disk holds."""
        out, n, unit = self.writer.out, len(self.history["loss"]), self.unit
        self.writer.keep_partial = True
        err = _shared.console(stderr=True)
        if self.saved_in is None:
            err.print(
                f"[yellow]interrupted[/] before the first {unit} was complete; nothing to "
                f"resume ({out} is unchanged)"
            )
            return
        note = ""
        if self.cfg["solver"] == "lbfgs":  # SciPy's L-BFGS cannot be handed its memory back
            note = (
                "; note: L-BFGS restarts its curvature memory when resumed, so the resumed "
                "run is not identical to an uninterrupted one"
            )
        err.print(
            f"[yellow]interrupted[/] after {n} {unit}{'s' if n != 1 else ''}; the last "
            f"completed one is saved in {self.saved_in}; continue with "
            f"`crossent train --resume --out {out}` and the same options "
            f"({out} is unchanged){note}"
        )

    def finish(self, pipe: Any, ds: Any, Z: tuple[Any, Any], **facts: Any) -> int:
        """Metrics, model, checkpoint, pictures, then the run directory replaces ``--out``."""
        from crossent.io import save_model, write_json_atomic

        work, clf = self.writer.work, pipe[-1]
        metrics = _shared.fit_metrics(pipe, clf, ds, self.parts, *Z)
        metrics.update(unit=self.unit, model_file=MODEL, **facts, **self.extra())
        model_extra = {k: v for k, v in self.extra().items() if k != "history"}
        save_model(pipe, work / MODEL, extra=model_extra)
        save_model(pipe, self.checkpoint, extra=self.extra())
        failed = None if self.args.no_plots else self.pictures(pipe, metrics)
        write_json_atomic(work / "metrics.json", metrics)
        self.writer.commit()
        if failed is not None:  # the run is kept; the pictures alone are missing
            raise CLIError(
                f"the run is saved in {self.writer.out}, but its pictures could not be drawn "
                f"({failed}); pass --no-plots, or fix matplotlib and train again"
            )
        if self.args.json:
            _shared.print_json({k: v for k, v in metrics.items() if k != "history"})
        else:
            _shared.print_summary(_shared.console(), metrics, self.writer.out, self.unit)
        return 0

    def pictures(self, pipe: Any, metrics: dict[str, Any]) -> str | None:
        """Draw the pictures into the run; what went wrong, if drawing failed (a full disk
        is an OSError and stops the run: the old one is kept)."""
        from crossent.cli._pictures import save_pictures

        try:
            metrics["pictures"] = save_pictures(self.writer.work, pipe, metrics)
        except OSError:
            raise
        except Exception as exc:  # matplotlib's own failure must not cost the trained model
            metrics["pictures"] = []
            return f"{type(exc).__name__}: {exc}"
        return None


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
