"""Benchmark crossent.torch.transformers.patch_model: one training step of a Llama-style model.

A small Llama (random weights from a config, no download) with a large vocabulary, one
sequence of ``--tokens`` tokens, labels = the inputs; a step is the forward and backward pass of
the whole model (``model(ids, labels=ids).loss.backward()``), gradients zeroed in place between
steps. Each (dtype, implementation) runs in a fresh subprocess (so that its peak resident memory
is its own); ratios are against the unpatched model in the same run.

    python benchmarks/bench_transformers.py                      # hidden 256, V=128256, 4096 tokens
    python benchmarks/bench_transformers.py --hidden 512 --dtype bfloat16 --repeat 5
    python benchmarks/bench_transformers.py --device cuda        # adds Liger-Kernel and CCE

Memory is the peak of a steady-state step (after a warm-up step) above the level once the model,
its gradients and the inputs exist: on CUDA ``torch.cuda.max_memory_allocated``, on the CPU the
peak resident set size (see ``bench_torch.Memory``). Liger-Kernel and Apple's Cut Cross-Entropy
run on CUDA only; on the CPU they are listed as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench_torch import Memory

IMPLS = ["unpatched", "crossent"]
GPU_EXTRA = ["liger", "cce"]


def _model(impl: str, dtype: Any, hidden: int, layers: int, vocab: int, device: str) -> Any:
    import torch
    import transformers

    if impl == "liger":  # patches the Llama classes: before the model is built
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama()
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 256), max_position_embeddings=8192,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(device=device, dtype=dtype)
    if impl == "crossent":
        from crossent.torch.transformers import patch_model

        patch_model(model)
    elif impl == "cce":
        from cut_cross_entropy.transformers import cce_patch

        model = cce_patch(model)
    return model


def _one(argv: list[str]) -> None:
    """Child process: time one implementation, print a JSON line."""
    import torch

    impl, dtype_name, device, repeat, hidden, layers, vocab, tokens = argv
    dtype = getattr(torch, dtype_name)
    model = _model(impl, dtype, int(hidden), int(layers), int(vocab), device)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, int(vocab), (1, int(tokens)), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> float:
        model.zero_grad(set_to_none=False)
        loss = model(ids, labels=ids).loss
        loss.backward()
        return float(loss)

    step()  # warm-up: gradients allocated, buffers recycled from here on
    sync()
    base = Memory.level(device)
    with Memory(device, base) as mem:
        loss = step()
    times = []
    for _ in range(int(repeat)):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"min_ms": min(times) * 1e3, "median_ms": statistics.median(times) * 1e3,
                      "peak_mb": mem.peak / 2**20, "loss": loss}))  # fmt: skip


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "unknown CPU")  # fmt: skip
    simd = "AVX-512" if " avx512f" in info else "AVX2" if " avx2" in info else "no AVX2"
    import os

    return f"{name}, {os.cpu_count()} cores, {simd}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        _one(sys.argv[2:])
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--impl", nargs="+", default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    impls = a.impl or (IMPLS + GPU_EXTRA)
    where = _cpu_name() if a.device == "cpu" else "CUDA"
    print(f"Llama hidden={a.hidden} layers={a.layers} V={a.vocab}, 1 × {a.tokens} tokens, "
          f"forward + backward; {where}\n")  # fmt: skip
    print(f"| dtype | implementation | step time (ms, min / median of {a.repeat}) | "
          f"vs {IMPLS[0]} | peak step memory (MB) | vs {IMPLS[0]} |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for dtype in a.dtype:
        base = None
        for impl in impls:
            if impl in GPU_EXTRA and a.device != "cuda":
                print(f"| {dtype} | {impl} | needs CUDA (Triton GPU kernels) | | | |", flush=True)
                continue
            cmd = [sys.executable, __file__, "_one", impl, dtype, a.device, str(a.repeat),
                   str(a.hidden), str(a.layers), str(a.vocab), str(a.tokens)]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                err = (r.stderr.strip().splitlines() or ["?"])[-1][:80]
                print(f"| {dtype} | {impl} | failed: {err} | | | |", flush=True)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            base = base or res
            print(f"| {dtype} | {impl} | {res['min_ms']:.0f} / {res['median_ms']:.0f} | "
                  f"{res['min_ms'] / base['min_ms']:.2f}× | {res['peak_mb']:.0f} | "
                  f"{res['peak_mb'] / max(base['peak_mb'], 1e-9):.2f}× |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
