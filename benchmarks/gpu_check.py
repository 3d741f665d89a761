"""The first run on a GPU, in one command (needs CUDA, torch and triton; < 10 min on an H100).

1. the CUDA tests: tests/test_torch_triton.py, which runs the Triton kernels on the device
   (the same tests run in Triton's interpreter on the CPU);
2. cross-entropy on given logits, bfloat16, N=8192, V=128256, forward + backward: crossent
   against PyTorch eager and ``torch.compile`` (and Liger-Kernel when installed);
3. the fused head, bfloat16, N=8192, D=4096, V=128256: crossent's ``linear_cross_entropy``
   against ``F.linear`` + ``F.cross_entropy`` eager and compiled, PyTorch's chunked
   ``F.linear_cross_entropy`` (and Liger-Kernel, Cut Cross-Entropy when installed);
4. writes ``benchmarks/results/<gpu name>.json``:
   ``{gpu, versions, results: [{op, impl, dtype, shape, ms, peak_extra_gb}], floors, tests}``
   and prints each time beside the roofline floor of docs/performance.md.

    python benchmarks/gpu_check.py                # everything
    python benchmarks/gpu_check.py --skip-tests   # the benchmarks only

Each benchmark row is benchmarks/bench_torch.py's measurement (a fresh process per row; median
of the repeats; peak memory above the inputs, gradients included). Exit status: 2 without a
CUDA device (one line, nothing ran), 1 when the tests or a crossent row failed, else 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_torch import GPU_IMPLS, run_case  # noqa: E402
from triton_compile import write_json  # noqa: E402

CE = {"N": 8192, "V": 128256}
LCE = {"N": 8192, "D": 4096, "V": 128256}
REPEAT = {"ce": 20, "lce": 5}
OPS = {"ce": "cross_entropy", "lce": "linear_cross_entropy"}
OPTIONAL = {"liger": "liger_kernel", "cce": "cut_cross_entropy"}
CASE_TIMEOUT_S = 240  # torch.compile of the unfused head takes about a minute
# peak HBM bandwidth (bytes/s) and dense bfloat16 tensor throughput (flop/s); first match wins
PEAKS = {"H100 PCIe": (2.0e12, 756e12), "H100": (3.35e12, 989e12), "H200": (4.8e12, 989e12)}


def floors_ms(gpu: str) -> dict[str, float] | None:
    """The roofline floors (docs/performance.md): the cross-entropy reads the bfloat16 logits
    once and writes their gradient once; the fused head does 6·N·D·V flops."""
    peak = next((p for name, p in PEAKS.items() if name in gpu), None)
    if peak is None:
        return None
    bandwidth, flops = peak
    ce_bytes = 2 * CE["N"] * CE["V"] * 2
    lce_flops = 6 * LCE["N"] * LCE["D"] * LCE["V"]
    return {"ce": ce_bytes / bandwidth * 1e3, "lce": lce_flops / flops * 1e3}


def versions() -> dict[str, str | None]:
    import torch
    import triton

    import crossent

    out: dict[str, str | None] = {
        "crossent": crossent.__version__,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
    }
    for module in OPTIONAL.values():
        out[module] = None
        if importlib.util.find_spec(module) is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                out[module] = version(module.replace("_", "-"))
            except PackageNotFoundError:
                out[module] = "installed"
    return out


def run_tests() -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_torch_triton.py"]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=600)
    summary = (r.stdout.strip().splitlines() or ["?"])[-1]
    print(summary, flush=True)
    return {"command": " ".join(cmd[1:]), "returncode": r.returncode, "summary": summary,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def run_benchmarks(floors: dict[str, float] | None) -> tuple[list[dict[str, Any]], list[str]]:
    results, failed = [], []
    for kind, shape in (("ce", CE), ("lce", LCE)):
        for impl in GPU_IMPLS[kind]:
            if impl in OPTIONAL and importlib.util.find_spec(OPTIONAL[impl]) is None:
                print(f"  {OPS[kind]} {impl}: not installed ({OPTIONAL[impl]})", flush=True)
                continue
            res = run_case(kind, impl, "bfloat16", "cuda", REPEAT[kind], list(shape.values()),
                           timeout=CASE_TIMEOUT_S)  # fmt: skip
            row: dict[str, Any] = {"op": OPS[kind], "impl": impl, "dtype": "bfloat16",
                                   "shape": shape, "ms": None, "peak_extra_gb": None}  # fmt: skip
            if isinstance(res, str):
                row["error"] = res
                failed += [f"{OPS[kind]} {impl}: {res}"] if impl.startswith("crossent") else []
                print(f"  {OPS[kind]} {impl}: failed: {res}", flush=True)
            else:
                row.update(ms=round(res["median_ms"], 3), min_ms=round(res["min_ms"], 3),
                           peak_extra_gb=round(res["peak_mb"] * 2**20 / 1e9, 3))  # fmt: skip
                vs = f" ({row['ms'] / floors[kind]:.2f}× the floor)" if floors else ""
                print(f"  {OPS[kind]} {impl}: {row['ms']:.2f} ms{vs}, "
                      f"{row['peak_extra_gb']:.2f} GB extra", flush=True)  # fmt: skip
            results.append(row)
    return results, failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--skip-tests", action="store_true", help="run the benchmarks only")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    a = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: error: needs torch and triton; pip install 'crossent[triton]'",
              file=sys.stderr)  # fmt: skip
        return 2
    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device, so nothing ran; run it on a machine with a "
              "GPU (benchmarks/bench_torch.py measures the CPU)", file=sys.stderr)  # fmt: skip
        return 2
    gpu = torch.cuda.get_device_name()
    floors = floors_ms(gpu)
    print(f"{gpu}; floors (ms): {floors or 'unknown GPU: see docs/performance.md'}", flush=True)
    tests = None if a.skip_tests else run_tests()
    results, failed = run_benchmarks(floors)
    out = a.out_dir / (re.sub(r"[^A-Za-z0-9._-]+", "-", gpu).strip("-") + ".json")
    write_json(out, {"gpu": gpu, "versions": versions(), "results": results,
                     "floors_ms": floors, "tests": tests})  # fmt: skip
    print(f"wrote {out}")
    if tests is not None and tests["returncode"] != 0:
        failed.append(f"tests: {tests['summary']}")
    for line in failed:
        print(f"gpu_check: failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
