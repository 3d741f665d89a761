"""CPU benchmark of cross-entropy forward + backward: crossent against its peers, in one run.

Every case runs in a fresh worker process, so that its peak memory (the RSS high-water mark
minus the RSS once the logits exist) is its own. Peers: PyTorch eager (``F.cross_entropy`` +
``.backward()``), ``torch.compile(F.cross_entropy)``, and naive vectorized NumPy; floors: one
``np.exp`` over the logits into a preallocated buffer and into a fresh array, and one copy.
Targets are class indices with one row in seven ignored. ``crossent bench`` and
``benchmarks/bench_cpu.py`` run this. The default (V = 1000, 32000, 128256; float32 and float64;
every peer) takes several minutes on two cores and up to about 12 GB of memory; a quick look:
``crossent bench --vocab 32000 --dtype float32 --impl crossent torch-eager numpy-naive --repeat 3``
(21 s on a two-core EPYC).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossent.cli._shared import CLIError, Parser, integer, missing_module, require

IMPLS = (
    "crossent",
    "crossent-out",
    "crossent-inplace",
    "torch-eager",
    "torch-compile",
    "numpy-naive",
)
FLOORS = ("exp-floor", "exp-fresh", "copy-floor")


def naive_numpy(x: np.ndarray, y: np.ndarray, ignore_index: int = -100) -> tuple[Any, Any]:
    """The textbook vectorized implementation: softmax, then loss and gradient."""
    n = x.shape[0]
    valid = y != ignore_index
    ys = np.where(valid, y, 0)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    count = max(int(valid.sum()), 1)
    loss = -np.log(p[np.arange(n), ys])[valid].sum() / count
    grad = p
    grad[np.arange(n), ys] -= 1
    grad[~valid] = 0
    grad /= count
    return loss, grad


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _make_case(impl: str, n: int, v: int, dtype: str) -> Callable[[], Any]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, v), dtype=np.dtype(dtype).type)  # no temporary: RSS = logits
    y = rng.integers(0, v, size=n)
    y[::7] = -100
    if impl == "crossent":
        import crossent

        return lambda: crossent.cross_entropy_with_grad(x, y)
    if impl == "crossent-out":
        import crossent

        grad = np.empty_like(x)
        return lambda: crossent.cross_entropy_with_grad(x, y, out=grad)
    if impl == "crossent-inplace":
        import crossent

        # the gradient overwrites the logits; the next run takes it as its logits, which costs
        # the same (every value is in range), so no refill is needed between runs
        return lambda: crossent.cross_entropy_with_grad(x, y, out=x)
    if impl == "numpy-naive":
        return lambda: naive_numpy(x, y)
    if impl == "exp-floor":
        out = np.empty_like(x)
        return lambda: np.exp(x, out=out)
    if impl == "exp-fresh":  # the floor for any function that returns a new N×V array
        return lambda: np.exp(x)
    if impl == "copy-floor":
        out = np.empty_like(x)
        return lambda: np.copyto(out, x)
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.from_numpy(y)
    fn = torch.compile(F.cross_entropy) if impl == "torch-compile" else F.cross_entropy

    def run_torch() -> Any:
        xt.grad = None
        loss = fn(xt, yt)
        loss.backward()
        return loss

    return run_torch


def worker(impl: str, n: int, v: int, dtype: str, repeat: int) -> dict[str, Any]:
    """Run one case in this process: median time and peak extra memory."""
    fn = _make_case(impl, n, v, dtype)
    base = _peak_rss_bytes()
    fn()  # warm-up (and torch.compile's compilation); sets the memory high-water mark
    peak = _peak_rss_bytes() - base
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"impl": impl, "n": n, "v": v, "dtype": dtype, "ms": statistics.median(times) * 1e3,
            "peak_extra_bytes": max(peak, 0)}  # fmt: skip


def _run_worker(impl: str, n: int, v: int, dtype: str, repeat: int) -> dict[str, Any] | None:
    cmd = [sys.executable, "-m", "crossent.cli.bench", "--worker", impl, str(n), str(v), dtype,
           "--repeat", str(repeat)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {impl} {n}x{v} {dtype}: failed ({msg})", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def small_case(repeat: int = 2000, dtype: str = "float64") -> dict[str, float]:
    """N=64, C=10: per-call microseconds of crossent and naive NumPy (no thread start-up).

    The two alternate, round by round, and each keeps its best round: on a shared machine
    a burst of load then hits both, not just the one that happened to be running.
    """
    import crossent

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(dtype)
    y = rng.integers(0, 10, size=64)
    fns = {
        "crossent": lambda: crossent.cross_entropy_with_grad(x, y),
        "numpy-naive": lambda: naive_numpy(x, y),
    }
    out = dict.fromkeys(fns, float("inf"))
    rounds, per_round = 20, max(1, repeat // 20)
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn()
            out[name] = min(out[name], (time.perf_counter() - t0) / per_round * 1e6)
    return out


def run_cases(
    vocab_sizes: Sequence[int],
    n: int = 4096,
    dtypes: Sequence[str] = ("float32", "float64"),
    impls: Sequence[str] = IMPLS,
    repeat: int = 5,
) -> list[dict[str, Any]]:
    results = []
    for v in vocab_sizes:
        for dtype in dtypes:
            for impl in (*FLOORS, *impls):
                if dtype == "float64" and impl.startswith("torch"):
                    continue
                print(f"  running {impl} N={n} V={v} {dtype}", file=sys.stderr, flush=True)
                res = _run_worker(impl, n, v, dtype, repeat)
                if res is not None:
                    results.append(res)
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table: time, ratios of each peer to crossent, GB/s, peak extra memory."""
    lines = [
        "| V | dtype | implementation | median ms | × crossent time | GB/s | peak extra MB "
        "| × logits |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    by_case: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for r in results:
        by_case.setdefault((r["v"], r["dtype"]), {})[r["impl"]] = r
    for (v, dtype), rows in by_case.items():
        ref = rows.get("crossent")
        for impl in (*IMPLS, *FLOORS):
            if impl not in rows:
                continue
            r = rows[impl]
            nbytes = r["n"] * v * np.dtype(dtype).itemsize
            ratio = f"{r['ms'] / ref['ms']:.2f}" if ref else "-"
            gbs = 2 * nbytes / (r["ms"] * 1e-3) / 1e9
            mb = r["peak_extra_bytes"] / 2**20
            lines.append(
                f"| {v} | {dtype} | {impl} | {r['ms']:.1f} | {ratio} | {gbs:.1f} | {mb:.0f} "
                f"| {r['peak_extra_bytes'] / nbytes:.2f} |"
            )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark cross-entropy forward+backward against PyTorch and NumPy",
        description=(__doc__ or "").split("\n\n")[0],
    )
    build_parser(parser)
    parser.set_defaults(run=run)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or Parser(prog="crossent bench", description=__doc__)
    parser.add_argument(
        "--vocab",
        type=integer(1),
        nargs="+",
        default=[1000, 32000, 128256],
        help="class counts V to run (default: 1000 32000 128256)",
    )
    parser.add_argument("-n", "--rows", type=integer(1), default=4096, help="rows N (default 4096)")
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    parser.add_argument(
        "--impl",
        nargs="+",
        choices=IMPLS,
        help="implementations to run (default: all; the torch ones need torch)",
    )
    parser.add_argument("--repeat", type=integer(1), default=5, help="timed runs per case (median)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossent.cli.bench`` (and ``benchmarks/bench_cpu.py``): the benchmark, or
    with ``--worker`` one case in this process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        wp = argparse.ArgumentParser()
        wp.add_argument("impl", choices=(*IMPLS, *FLOORS))
        wp.add_argument("n", type=int)
        wp.add_argument("v", type=int)
        wp.add_argument("dtype")
        wp.add_argument("--repeat", type=int, default=5)
        a = wp.parse_args(argv[1:])
        print(json.dumps(worker(a.impl, a.n, a.v, a.dtype, a.repeat)))
        return 0
    from crossent.cli import main as cli_main

    return cli_main(["bench", *argv])


def run(args: argparse.Namespace) -> int:
    """``crossent bench``: check the output file first, then run and print the table."""
    args.impl = _implementations(args.impl)
    if args.json:
        target = Path(args.json)
        if target.is_dir() or not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
            raise CLIError(f"--json: expected a file name in a writable directory, got {args.json}")
    return report(args)


def _implementations(asked: list[str] | None) -> list[str]:
    """The peers to run: those asked for (torch's need torch), else every one that can run."""
    torch = [impl for impl in asked or IMPLS if impl.startswith("torch")]
    try:
        require("torch")
    except CLIError:
        if asked is not None and torch:
            raise CLIError(f"--impl {torch[0]}: {missing_module('torch')}") from None
        if torch:
            print(f"note: torch is not installed; {', '.join(torch)} skipped", file=sys.stderr)
        return [impl for impl in asked or IMPLS if impl not in torch]
    return list(asked or IMPLS)


def report(args: argparse.Namespace) -> int:
    t0 = time.time()
    results = run_cases(args.vocab, args.rows, args.dtype, args.impl, args.repeat)
    small = small_case()
    print(f"N={args.rows}, class-index targets, 1/7 ignored, forward + backward; "
          f"threads: {os.environ.get('CROSSENT_NUM_THREADS', 'all cores')}\n")  # fmt: skip
    print(format_table(results))
    print(f"\nN=64, C=10 (per call): crossent {small['crossent']:.1f} µs, "
          f"naive NumPy {small['numpy-naive']:.1f} µs "
          f"(ratio {small['crossent'] / small['numpy-naive']:.2f})")  # fmt: skip
    print(f"\n(benchmark wall time {time.time() - t0:.0f} s)")
    if args.json:
        from crossent.io import write_json_atomic

        write_json_atomic(args.json, {"cases": results, "small": small})
    return 0


if __name__ == "__main__":
    sys.exit(main())
