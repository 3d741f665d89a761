"""The ``crossent`` command line: ``train``, ``evaluate``, ``predict``, ``explain``, ``bench``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; what they share (arguments, checks, model resolution, progress, tables)
is in :mod:`crossent.cli._shared`, run directories in ``_rundir``, pictures in ``_pictures``.
Heavy dependencies are imported inside ``run`` only. A user's mistake ends with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Sequence

from crossent import __version__
from crossent.cli._shared import OPTIONAL_MODULES, CLIError, Parser, missing_module

__all__ = ["OPTIONAL_MODULES", "SUBCOMMANDS", "CLIError", "build_parser", "main"]

# subcommands, each a module under crossent.cli
SUBCOMMANDS = ("train", "evaluate", "predict", "explain", "bench")


def build_parser() -> Parser:
    parser = Parser(
        prog="crossent",
        description="Softmax cross-entropy, done right: train, evaluate, explain, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"crossent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"crossent.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"crossent.cli.{module_name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def _quiet_stdout() -> None:
    """The reader of stdout left (``crossent ... --json | head``): send the rest nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0 as usual; a usage error returns 2
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args) or 0)
    except CLIError as exc:
        print(f"crossent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in OPTIONAL_MODULES:
            raise
        print(f"crossent {args.command}: error: {missing_module(exc.name or '')}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as exc:  # the system refused a file (disk full, permissions): not a bug
        if exc.filename is None:
            raise
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # atomic: nothing written
        what = f"write {exc.filename} ({exc.strerror}); nothing was written" if full else (
            f"use {exc.filename} ({exc.strerror})"
        )  # fmt: skip
        print(f"crossent {args.command}: error: cannot {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
