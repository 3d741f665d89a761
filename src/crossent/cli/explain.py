"""``crossent explain``: the classic step-by-step walk-through of the loss, for any scores.

With no arguments it shows the classic example (scores 10, 9, 8 for cat, dog, horse; the
image is a cat). Text by default; ``--json``, ``--plot FILE.png`` and ``--html FILE`` give the
same numbers as JSON, a picture and an interactive page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from crossent._penalties import PENALTY_KINDS
from crossent._spec import options_for
from crossent.cli import CLIError
from crossent.explain._messages import LANGS

# the loss options of `crossent explain`: the table's options for crossent.explain.explain
_LOSS_FLAGS = options_for("explain")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# the argument names of crossent.explain.explain (and of the penalty functions) -> options
_OPTION = {
    "scores": "SCORES",
    "classes": "--classes",
    "weight": "--weight",
    **{o.name: _flag(o.name) for o in _LOSS_FLAGS},
    "penalty": "--penalty",
    "alpha": "--alpha",
    "strength": "--alpha",
    "l1_ratio": "--l1-ratio",
    "params": "--weights",
    "w": "--weights",
}

EPILOG = """\
examples:
  crossent explain                             the classic example: cat 10, dog 9, horse 8
  crossent explain 10 9 8 --target horse       a wrong answer: a large loss
  crossent explain 2 1 0.1 --probs 0.7 0.2 0.1 a probability target: H(q, p)
  crossent explain --penalty l2 --alpha 0.1 --weights 0.5 -1.2 2
                                               loss term + regularization term
  crossent explain --json | --plot explain.png | --html explain.html
  crossent explain --lang zh                   the same walk-through in Chinese (中文)
  crossent explain --model runs/digits --index 7
                                               one test image through a trained model

Negative scores are fine (crossent explain 1 -2 0.5); put -- before any written like -1e3.
"""


_Table = list[tuple[tuple[str, ...], dict[str, Any]]]  # (flags, add_argument's keywords)
# the options, group by group (a data table; the target's two forms exclude each other)
_TARGET: _Table = [
    (("--target",), dict(metavar="CLASS",
        help="the true class: a class name or an index (a name wins; default: 0)")),
    (("--probs",), dict(nargs="+", type=float, metavar="Q",
        help="a probability target instead (one per class, summing to 1): the loss is H(q, p)")),
]  # fmt: skip
_LOSS: _Table = [
    (("--weight",), dict(nargs="+", type=float, metavar="W",
        help="class weights, one per class (>= 0)")),
    # the rest from the table of options: each option that explain takes
    *(((_flag(o.name),), dict(type=float, default=o.default, metavar=(o.cli or ("", ""))[0],
        help=(o.cli or ("", ""))[1])) for o in _LOSS_FLAGS),
]  # fmt: skip
_REGULARIZATION: _Table = [
    (("--penalty",), dict(choices=PENALTY_KINDS, help="R: L1, L2 or both")),
    (("--alpha",), dict(type=float, default=None,
        help="strength (default 1.0; with --model, the model's own alpha)")),
    (("--l1-ratio",), dict(type=float, default=0.5, help="L1 share of elasticnet (default 0.5)")),
    (("--weights",), dict(nargs="+", type=float, metavar="W",
        help="the model weights R is computed on (default with --model: the model's weights)")),
]  # fmt: skip
_MODEL: _Table = [
    (("--model",), dict(type=Path, metavar="RUN_DIR", help="the run directory")),
    (("--index",), dict(type=int, default=None, metavar="I",
        help="the test example (default 0)")),
]  # fmt: skip
_OUTPUT: _Table = [
    (("--json",), dict(action="store_true", help="print the numbers as JSON")),
    (("--plot",), dict(type=Path, metavar="FILE.png", help="write a picture")),
    (("--html",), dict(type=Path, metavar="FILE.html", help="write an interactive page")),
    (("--digits",), dict(type=int, default=3,
        help="decimals shown in text, picture, page (default 3)")),
    (("--lang",), dict(choices=list(LANGS), default="en",
        help="language of the words: en (English, default) or zh (Chinese); same numbers")),
]  # fmt: skip


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``explain`` to the ``crossent`` command's subparsers."""
    p = subparsers.add_parser(
        "explain",
        help="walk through the cross-entropy of one example, step by step",
        description=(
            "Show how softmax cross-entropy turns one example's class scores into a loss:\n"
            "shift, exp, sum, softmax probability, -log p, target, gradient, loss, and what\n"
            "the result means (the blog post's walk-through). Every number comes from crossent's\n"
            "own functions. With no arguments: the classic example (cat 10, dog 9, horse 8)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scores",
        nargs="*",
        type=float,
        metavar="SCORES",
        help="one class score (logit) per class; default: the classic example's 10 9 8",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        help="class names (default: cat dog horse for three scores, else 0 1 2 ...)",
    )
    groups: list[tuple[Any, _Table]] = [
        (p.add_mutually_exclusive_group(), _TARGET),
        (p.add_argument_group("loss options (as in crossent.cross_entropy)"), _LOSS),
        (p.add_argument_group("regularization: objective = loss term + alpha·R(weights)"),
         _REGULARIZATION),
        (p.add_argument_group("a real example through a model saved by `crossent train`"),
         _MODEL),
        (p.add_argument_group("output"), _OUTPUT),
    ]  # fmt: skip
    for group, table in groups:
        for flags, kwargs in table:
            group.add_argument(*flags, **kwargs)
    p.set_defaults(run=run)
    return p


def _check_output(path: Path | None, option: str, suffixes: tuple[str, ...]) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise CLIError(
            f"{option}: expected a file name ending in {' or '.join(suffixes)}, got {str(path)!r}"
        )
    if not path.parent.is_dir():
        raise CLIError(f"{option}: expected an existing directory, got {str(path.parent)!r}")
    if path.is_dir():
        raise CLIError(f"{option}: expected a file name, got the directory {str(path)!r}")
    if not os.access(path.parent, os.W_OK):
        raise CLIError(f"{option}: cannot write in {str(path.parent)!r} (permission denied)")


def _from_model(args: argparse.Namespace) -> dict[str, Any]:
    """Scores, classes, target, image and source of one test example of a saved run."""
    import numpy as np

    if args.scores:
        raise CLIError("SCORES: expected no scores with --model (they come from the model)")
    if args.classes:
        raise CLIError("--classes: expected no class names with --model (the run has them)")
    try:
        from crossent.io import load_run
    except ImportError as exc:
        raise CLIError(f"--model: this crossent cannot load runs ({exc})") from None
    if not args.model.is_dir():
        raise CLIError(f"--model: expected a run directory, got {str(args.model)!r}")
    try:
        run = load_run(args.model)
    except (OSError, ValueError, KeyError) as exc:
        raise CLIError(f"--model: cannot load the run in {str(args.model)!r}: {exc}") from None
    X = np.asarray(run.X_test)
    n = X.shape[0]
    i = 0 if args.index is None else args.index
    if not 0 <= i < n:
        raise CLIError(f"--index: expected a test example index in [0, {n - 1}], got {i}")
    scores = np.asarray(run.model.decision_function(X[i : i + 1]), dtype=np.float64)
    scores = scores.reshape(-1)
    names = getattr(run, "class_names", None)
    if names is None or len(names) != len(run.classes):
        names = run.classes
    classes = [str(c) for c in names]
    if scores.shape[0] == 1 and len(classes) == 2:  # a binary decision function
        scores = np.array([0.0, scores[0]])
    true = run.y_test[i]
    matches = [k for k, c in enumerate(run.classes) if c == true]
    if not matches:
        raise CLIError(f"--model: the label {true!r} of test example {i} is not a model class")
    image = None
    shape = getattr(run, "image_shape", None)
    if shape is not None and int(np.prod(shape)) == X[i].size:
        image = X[i].reshape(shape)
    # the penalized weights: every weight matrix of an MLP, coef_ of a linear model (no biases)
    clf = run.classifier
    params = np.concatenate([np.ravel(m) for m in clf.penalized_weights()]).astype(np.float64)
    alpha = clf.alpha_  # the strength used ("auto" resolved)
    pred = classes[int(np.argmax(scores))]
    source = (
        f"test example {i} of {n} from the model in {args.model}: true class {classes[matches[0]]}"
        f", predicted {pred}"
    )
    return {
        "scores": scores,
        "classes": classes,
        "target": matches[0],
        "image": image,
        "source": source,
        "model_params": params,
        "model_alpha": float(alpha),
    }


def _error(exc: Exception, args: argparse.Namespace) -> CLIError:
    msg = str(exc)
    name, sep, rest = msg.partition(": ")
    if sep and name == "target":
        return CLIError(f"{'--probs' if args.probs else '--target'}: {rest}")
    if sep and name in _OPTION:
        return CLIError(f"{_OPTION[name]}: {rest}")
    return CLIError(msg)


def _check_args(args: argparse.Namespace) -> None:
    """Everything about the options that needs no computation (and no heavy import)."""
    if not 0 <= args.digits <= 12:
        raise CLIError(f"--digits: expected an integer in [0, 12], got {args.digits}")
    if args.index is not None and args.model is None:
        raise CLIError("--index: expected --model RUN_DIR with it (the example's run)")
    _check_output(args.plot, "--plot", (".png",))
    _check_output(args.html, "--html", (".html", ".htm"))
    if args.penalty is None and args.weights is not None:
        raise CLIError("--penalty: expected l1, l2 or elasticnet with --weights, got none")
    if args.plot is not None:
        from crossent.cli._shared import check_matplotlib

        check_matplotlib("drop --plot")


def _explain_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`crossent.explain.explain` the options describe."""
    kw: dict[str, Any] = {}
    params, alpha = args.weights, args.alpha
    if args.model is not None:
        got = _from_model(args)
        model_params = got.pop("model_params")
        model_alpha = got.pop("model_alpha")
        if alpha is None:
            alpha = model_alpha
        kw.update(got)
        if params is None and args.penalty is not None:
            params = model_params
    else:
        if args.scores:
            kw["scores"] = args.scores
        if args.classes:
            kw["classes"] = args.classes
        if args.scores and len(args.scores) != 3 and args.classes is None:
            kw["classes"] = None
    if args.target is not None:
        kw["target"] = args.target
    if args.probs is not None:
        kw["target"] = args.probs
    if args.penalty is not None and params is None:
        raise CLIError("--weights: expected the model weights with --penalty, got none")
    return dict(
        kw,
        weight=args.weight,
        **{o.name: getattr(args, o.name) for o in _LOSS_FLAGS},
        penalty=args.penalty,
        alpha=1.0 if alpha is None else alpha,
        l1_ratio=args.l1_ratio,
        params=params,
    )


def _write_files(ex: Any, args: argparse.Namespace) -> None:
    """The picture and the page, each written atomically."""
    from crossent.explain import save_plot, write_html

    if args.plot is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            save_plot(ex, args.plot, digits=args.digits, lang=args.lang)
        for w in caught:  # no CJK font: the picture's labels fell back to English
            print(f"note: {w.message}", file=sys.stderr)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.html is not None:
        write_html(ex, args.html, digits=args.digits, lang=args.lang)
        print(f"wrote {args.html}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``crossent explain``; see ``crossent explain --help``."""
    _check_args(args)
    from crossent.explain import explain, format_text

    try:
        ex = explain(**_explain_arguments(args))
    except (ValueError, TypeError) as exc:
        raise _error(exc, args) from None
    if args.json:
        report = json.dumps(ex.to_dict(args.lang), indent=2, ensure_ascii=False)
    else:
        report = format_text(ex, digits=args.digits, lang=args.lang)
    try:
        sys.stdout.write(report + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `crossent explain --json | head`: the reader left; files still come
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    _write_files(ex, args)
    return 0
