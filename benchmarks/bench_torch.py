"""Benchmark crossent.torch against PyTorch: time and peak extra memory, forward + backward.

Every (case, implementation) runs in a fresh subprocess so that its peak resident memory is
its own; ratios are against the first implementation listed, in the same run.

    python benchmarks/bench_torch.py ce  --n 4096 --v 32000 128256 --dtype float32 bfloat16
    python benchmarks/bench_torch.py lce --n 2048 --d 1024 --v 32000 --dtype float32
    python benchmarks/bench_torch.py lce --dtype bfloat16 --baseline-src ../main/src

``--baseline-src DIR`` adds a row ``crossent@baseline``: crossent imported from ``DIR`` (another
checkout's ``src``), for a before/after comparison in one run.

Memory is the peak of a steady-state call (after a warm-up call) above the level once the
inputs exist, so what an implementation keeps between calls counts: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size (``VmHWM``, reset
through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CE_IMPLS = ["eager", "compile", "crossent", "crossent-inplace"]
LCE_IMPLS = ["unfused", "torch-chunked", "crossent"]
GPU_IMPLS = {"ce": ["eager", "compile", "crossent", "crossent-inplace", "liger"],
             "lce": ["unfused", "unfused-compile", "torch-chunked", "crossent", "liger", "cce"]}  # fmt: skip
BASELINE = "crossent@baseline"  # crossent imported from --baseline-src


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


class Memory:
    """Peak memory of one call above ``base`` (the level once the inputs exist): memory an
    implementation keeps between calls (compiled code, recycled buffers) counts."""

    def __init__(self, device: str, base: int) -> None:
        import torch

        self.torch, self.cuda, self.base = torch, device == "cuda", base

    @staticmethod
    def level(device: str) -> int:
        import torch

        if device == "cuda":
            torch.cuda.synchronize()
            return int(torch.cuda.memory_allocated())
        return _rss_kib("VmRSS") * 1024

    def __enter__(self) -> Memory:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current VmRSS
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.peak = self.torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _rss_kib("VmHWM") * 1024 - self.base


def _ce_step(impl: str, dtype: Any, n: int, v: int, device: str):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(n, v, generator=g, device=device) * 2).to(dtype)
    y = torch.randint(0, v, (n,), generator=g, device=device)
    if impl == "eager":
        fn = F.cross_entropy
    elif impl == "compile":
        fn = torch.compile(F.cross_entropy)
    elif impl.startswith("crossent"):  # crossent, crossent-inplace, crossent@baseline
        from crossent.torch import cross_entropy

        inplace = impl == "crossent-inplace"
        fn = lambda a, b: cross_entropy(a, b, inplace=inplace)  # noqa: E731
    elif impl == "liger":
        from liger_kernel.transformers.functional import liger_cross_entropy

        fn = liger_cross_entropy
    else:
        raise ValueError(impl)

    class Made(torch.autograd.Function):
        """Logits "made by a model op" for the in-place mode: a copy (untimed) whose backward
        ends the graph, as the matmul that makes real logits needs no (N, V) gradient."""

        @staticmethod
        def forward(ctx: Any, t: Any) -> Any:
            return t.clone()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return None

    def setup() -> Any:
        leaf = x.detach().requires_grad_()
        if impl == "crossent-inplace":  # in-place needs logits made by an op, not a leaf
            return Made.apply(leaf)
        return leaf

    def step(logits: Any) -> None:
        fn(logits, y).backward()

    return setup, step


def _lce_step(impl: str, dtype: Any, n: int, d: int, v: int, device: str):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(n, d, generator=g, device=device).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g, device=device) * d**-0.5).to(dtype).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g, device=device)
    if impl == "unfused":
        fn = lambda: F.cross_entropy(F.linear(h, w), y)  # noqa: E731
    elif impl == "unfused-compile":
        compiled = torch.compile(lambda a, b, t: F.cross_entropy(F.linear(a, b), t))
        fn = lambda: compiled(h, w, y)  # noqa: E731
    elif impl == "torch-chunked":
        opts = torch.nn.LinearCrossEntropyOptions()
        fn = lambda: F.linear_cross_entropy(h, w, y, options=opts)  # noqa: E731
    elif impl in ("crossent", BASELINE):
        from crossent.torch import linear_cross_entropy

        fn = lambda: linear_cross_entropy(h, w, y)  # noqa: E731
    elif impl == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        fn = lambda: liger_fused_linear_cross_entropy(h, w, y)  # noqa: E731
    elif impl == "cce":
        from cut_cross_entropy import linear_cross_entropy as cce

        fn = lambda: cce(h, w, y)  # noqa: E731
    else:
        raise ValueError(impl)

    def setup() -> None:
        h.grad = w.grad = None

    def step(_: None) -> None:
        fn().backward()

    return setup, step


def _one(argv: list[str]) -> None:
    """Child process: time one implementation on one case, print a JSON line."""
    import torch

    kind, impl, dtype_name, device, repeat, *dims = argv
    dtype = getattr(torch, dtype_name)
    sizes = [int(s) for s in dims]
    make = _ce_step if kind == "ce" else _lce_step
    setup, step = make(impl, dtype, *sizes, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base = Memory.level(device)
    step(setup())  # warm-up (compilation, first-touch of the allocator)
    arg = setup()
    sync()
    with Memory(device, base) as mem:
        step(arg)
    del arg
    times = []
    for _ in range(int(repeat)):
        arg = setup()
        sync()
        t0 = time.perf_counter()
        step(arg)
        sync()
        times.append(time.perf_counter() - t0)
        del arg
    print(json.dumps({"min_ms": min(times) * 1e3, "median_ms": statistics.median(times) * 1e3,
                      "peak_mb": mem.peak / 2**20}))  # fmt: skip


def run_case(
    kind: str,
    impl: str,
    dtype: str,
    device: str,
    repeat: int,
    dims: list[int],
    baseline_src: str | None = None,
    timeout: float | None = None,
) -> dict[str, float] | str:
    """One implementation on one case in a fresh process: ``{min_ms, median_ms, peak_mb}``, or
    the last line of its error (``impl == BASELINE`` imports crossent from ``baseline_src``)."""
    cmd = [sys.executable, __file__, "_one", kind, impl, dtype, device, str(repeat),
           *map(str, dims)]  # fmt: skip
    env = None
    if impl == BASELINE:
        env = {**os.environ, "PYTHONPATH": str(baseline_src)}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["?"])[-1][:80]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("kind", choices=["ce", "lce"])
    p.add_argument("--n", type=int, nargs="+", default=None)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--v", type=int, nargs="+", default=None)
    p.add_argument("--dtype", nargs="+", default=["float32"])
    p.add_argument("--impl", nargs="+", default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help=f"add a row {BASELINE}: crossent imported from DIR")  # fmt: skip
    return p.parse_args()


def main() -> int:
    """Print the table; exit 1 when a crossent row failed or no row ran at all."""
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        _one(sys.argv[2:])
        return 0
    a = _parse()
    impls = a.impl or (GPU_IMPLS[a.kind] if a.device == "cuda" else
                       CE_IMPLS if a.kind == "ce" else LCE_IMPLS)  # fmt: skip
    if a.baseline_src:
        impls = [*impls, BASELINE]
    ns = a.n or ([4096] if a.kind == "ce" else [2048])
    print(f"| case | implementation | time (ms, min / median of {a.repeat}) | vs {impls[0]} | "
          f"peak extra memory (MB) | vs {impls[0]} |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    ran, crossent_failed = 0, []
    for dtype in a.dtype:
        for n in ns:
            for v in a.v or [32000]:
                dims = [n, v] if a.kind == "ce" else [n, a.d, v]
                case = f"{dtype} N={n}" + (f" D={a.d}" if a.kind == "lce" else "") + f" V={v}"
                base = None
                for impl in impls:
                    res = run_case(a.kind, impl, dtype, a.device, a.repeat, dims, a.baseline_src)
                    if isinstance(res, str):
                        print(f"| {case} | {impl} | failed: {res} | | | |", flush=True)
                        if impl.startswith("crossent"):
                            crossent_failed.append(f"{case} {impl}")
                        continue
                    ran += 1
                    base = base or res
                    print(f"| {case} | {impl} | {res['min_ms']:.0f} / {res['median_ms']:.0f} | "
                          f"{res['min_ms'] / base['min_ms']:.2f}× | {res['peak_mb']:.0f} | "
                          f"{res['peak_mb'] / max(base['peak_mb'], 1e-9):.2f}× |", flush=True)  # fmt: skip
    if crossent_failed or not ran:
        print(f"bench_torch: error: {'nothing ran' if not ran else 'failed: '}"
              f"{', '.join(crossent_failed)}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
