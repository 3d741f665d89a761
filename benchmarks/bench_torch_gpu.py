"""The GPU check for crossent.torch in one command (needs CUDA and triton).

1. the Triton tests on the GPU (the same tests run in the interpreter on the CPU);
2. cross_entropy, bfloat16, N=8192, V=128256 (goal ≤ 1.6 ms fwd+bwd; floor 1.25 ms on H100);
3. linear_cross_entropy, bfloat16, N=8192, D=4096, V=128256 (goal ≤ 40 ms, ≤ 1 GB extra).

Liger-Kernel and Cut Cross-Entropy rows appear when ``liger-kernel`` and
``cut-cross-entropy`` are installed (their rows say "failed" otherwise).

    python benchmarks/bench_torch_gpu.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_torch_triton.py"],
    [sys.executable, str(HERE / "bench_torch.py"), "ce", "--device", "cuda", "--n", "8192",
     "--v", "128256", "--dtype", "bfloat16", "--repeat", "20"],
    [sys.executable, str(HERE / "bench_torch.py"), "lce", "--device", "cuda", "--n", "8192",
     "--d", "4096", "--v", "128256", "--dtype", "bfloat16", "--repeat", "5"],
]  # fmt: skip


def main() -> int:
    """Run every step; non-zero when there is no GPU (nothing would run) or a step failed."""
    try:
        import torch
    except ImportError:
        print("bench_torch_gpu: error: needs torch; pip install 'crossent[torch]'", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_torch_gpu: error: no CUDA device, so nothing ran; run it on a machine with "
              "a GPU (benchmarks/bench_torch.py measures the CPU)", file=sys.stderr)  # fmt: skip
        return 2
    status = 0
    for cmd in STEPS:
        print("$", " ".join(cmd[1:]), flush=True)
        status |= subprocess.run(cmd, cwd=HERE.parent).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
