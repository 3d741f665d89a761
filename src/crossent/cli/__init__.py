"""The ``crossent`` command line: ``train``, ``evaluate``, ``predict``, ``explain``, ``bench``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; heavy dependencies are imported inside ``run`` only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from crossent import __version__

# subcommands, each a module under crossent.cli
SUBCOMMANDS = ("train", "evaluate", "predict", "explain", "bench")


# optional dependencies the commands import, and the extra that installs each
OPTIONAL_MODULES = {
    "rich": "cli",
    "sklearn": "cli",
    "scipy": "cli",
    "matplotlib": "cli",
    "threadpoolctl": "cli",
    "torch": "torch",
}


class CLIError(Exception):
    """A user-facing error: printed as ``crossent: error: ...`` with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CLIError as exc:
        print(f"crossent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(
            f"crossent {args.command}: error: this command needs {exc.name!r}, which is not "
            f"installed; install it with: pip install 'crossent[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
