"""``crossent bench``: the CPU benchmark of :mod:`crossent.bench`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    from crossent import bench

    parser = subparsers.add_parser(
        "bench",
        help="benchmark cross-entropy forward+backward against PyTorch and NumPy",
        description=(bench.__doc__ or "").split("\n\n")[0],
    )
    bench.build_parser(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from crossent import bench

    return bench.report(args)
