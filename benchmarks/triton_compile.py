"""Compile crossent's Triton kernel for real GPU targets on a machine without a GPU.

Triton's compiler and NVIDIA's ``ptxas`` ship in the ``triton`` wheel, so every specialization
the host code can launch is compiled here for sm_80 (A100), sm_90 (H100/H200) and sm_100
(B200, where the installed Triton can), exactly as Triton's JIT would specialize it: the
arguments and launch options come from the launcher's own :func:`kernel_call`, and Triton's
own binder turns them into the signature, the constexprs and the alignment attributes.
For each variant and target it records registers per thread, spilled bytes (``ptxas -v``),
shared memory, PTX size and the blocks of the chosen ``num_warps`` that the registers leave
resident per SM.

    python benchmarks/triton_compile.py                  # all variants -> results/triton_compile.json
    python benchmarks/triton_compile.py --representative --out /tmp/x.json   # the CI subset

Exit status 1 when a variant fails to compile, spills, or leaves fewer than
``MIN_RESIDENT_BLOCKS`` blocks resident on sm_90.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "triton_compile.json"
ARCHS = (80, 90, 100)
DTYPES = ("float32", "bfloat16", "float16")
VOCABS = (1000, 32000, 128256, 262144)
FLAGS = ("weight", "prob", "smooth", "cap", "grad")
MIN_RESIDENT_BLOCKS = 2  # on sm_90: a second block hides the first one's latency
# sm_90 per SM: 64 Ki 32-bit registers allocated per warp in units of 256, 64 warps, 228 KiB
# of shared memory (1 KiB of it reserved per block), at most 32 blocks
SM90 = {"regs": 65536, "reg_unit": 256, "warps": 64, "smem": 228 * 1024, "smem_block": 1024,
        "blocks": 32}  # fmt: skip

# the CI subset: every flag on and off at least once, each logits dtype, both block sizes
REPRESENTATIVE = [
    ("float32", 1000, ()),
    ("bfloat16", 32000, ("weight", "smooth", "cap", "grad")),
    ("float16", 128256, ("prob", "smooth", "grad")),
    ("bfloat16", 262144, ("weight", "prob", "smooth", "cap", "grad")),
]


def all_variants() -> list[tuple[str, int, tuple[str, ...]]]:
    subsets = itertools.product(*[(None, f) for f in FLAGS])
    flag_sets = [tuple(f for f in s if f) for s in subsets]
    return [(d, v, f) for d in DTYPES for v in VOCABS for f in flag_sets]


def launch_for(dtype: str, v: int, flags: tuple[str, ...]) -> tuple[tuple[Any, ...], dict]:
    """The arguments and launch options the host code picks for rows of ``v`` logits of
    ``dtype`` with these options (small CPU tensors stand in for the device's: only their
    dtypes, strides and alignment matter to the specialization)."""
    import torch

    from crossent.torch import _triton_ce
    from crossent.torch._options import Scales, make_options

    dt = getattr(torch, dtype)
    x = torch.empty(2, v, dtype=dt)
    q = torch.empty(2, v, dtype=dt) if "prob" in flags else torch.zeros(2, dtype=torch.int64)
    opts = make_options(
        backend="triton",
        label_smoothing=0.1 if "smooth" in flags else 0.0,
        softcap=30.0 if "cap" in flags else None,
        z_loss=1e-4,
    )
    weight = torch.empty(v, dtype=dt) if "weight" in flags else None
    grad = torch.empty_like(x) if "grad" in flags else None
    rows = torch.empty(2)
    return _triton_ce.kernel_call(x, grad, q, weight, rows, rows.clone(), opts, Scales())


def specialize(dtype: str, v: int, flags: tuple[str, ...], arch: int) -> tuple[Any, ...]:
    """What Triton's JIT would compile for that launch: ``(source, target, options)``."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    from crossent.torch._triton_ce import _ce_kernel as fn

    args, launch = launch_for(dtype, v, flags)
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **launch)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch, bound, spec, options)
    return ASTSource(fn, signature, constexprs, attrs), target, options.__dict__


def resident_blocks(regs: int, num_warps: int, shared: int) -> int:
    """Blocks of ``num_warps`` warps resident per sm_90 SM, by registers, warps and shared memory."""
    warp_regs = math.ceil(regs * 32 / SM90["reg_unit"]) * SM90["reg_unit"]
    by_regs = (SM90["regs"] // warp_regs) // num_warps
    by_warps = SM90["warps"] // num_warps
    by_smem = SM90["smem"] // (shared + SM90["smem_block"])
    return int(min(by_regs, by_warps, by_smem, SM90["blocks"]))


def compile_one(job: tuple[str, list[int], tuple[str, ...], int]) -> dict[str, Any]:
    """One variant for one target: its resources, or the reason it did not compile."""
    import triton

    dtype, vs, flags, arch = job
    rec: dict[str, Any] = {"dtype": dtype, "V": vs, "flags": list(flags), "target": f"sm_{arch}"}
    t0 = time.perf_counter()
    try:
        src, target, options = specialize(dtype, vs[0], flags, arch)
        rec["BLOCK_C"] = src.constants[(src.fn.arg_names.index("BLOCK_C"),)]
        rec["num_warps"] = options["num_warps"]
        rec["maxnreg"] = options.get("maxnreg")
        triton.knobs.nvidia.dump_ptxas_log = True  # ptxas -v's report, printed to stdout
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            k = triton.compile(src, target=target, options=options)
    except Exception as e:  # a compiler error is this variant's result
        rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        return rec
    report = log.getvalue()
    used = re.search(r"Used (\d+) registers", report)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]
    stack = re.search(r"(\d+) bytes stack frame", report)
    rec.update(
        registers=int(used.group(1)) if used else None,
        spill_bytes=sum(spills) if spills else None,
        stack_bytes=int(stack.group(1)) if stack else None,
        shared_bytes=int(k.metadata.shared),
        ptx_bytes=len(k.asm["ptx"].encode()),
        compile_s=round(time.perf_counter() - t0, 2),
    )
    if used is None or not spills:
        rec["error"] = f"no register report from ptxas: {report.strip()[:300]!r}"
    elif arch == 90:
        rec["resident_blocks_sm90"] = resident_blocks(rec["registers"], rec["num_warps"],
                                                      rec["shared_bytes"])  # fmt: skip
    return rec


def problems(records: list[dict[str, Any]]) -> list[str]:
    """What breaks the goals: a failed compile (sm_100 is optional), a spill, too few blocks."""
    out = []
    for r in records:
        name = f"{r['target']} {r['dtype']} V={r['V']} {'+'.join(r['flags']) or 'no flags'}"
        if "error" in r:
            if r["target"] != "sm_100":
                out.append(f"{name}: {r['error']}")
        elif r["spill_bytes"] or r["stack_bytes"]:
            out.append(f"{name}: spills {r['spill_bytes']} bytes (stack {r['stack_bytes']})")
        elif r.get("resident_blocks_sm90", MIN_RESIDENT_BLOCKS) < MIN_RESIDENT_BLOCKS:
            out.append(f"{name}: {r['registers']} registers leave "
                       f"{r['resident_blocks_sm90']} resident block(s)")  # fmt: skip
    return out


def jobs(variants: list[tuple[str, int, tuple[str, ...]]]) -> list[tuple[Any, ...]]:
    """One job per distinct specialization and target: ``(dtype, [V, ...], flags, arch)``
    (V=32000, 128256 and 262144 specialize alike: the same block size, warps and alignment)."""
    same: dict[str, tuple[str, list[int], tuple[str, ...]]] = {}
    for d, v, f in variants:
        src, _, options = specialize(d, v, f, 90)
        key = repr((src.signature, src.constants, src.attrs, options["num_warps"]))
        same.setdefault(key, (d, [], f))[1].append(v)
    return [(*variant, arch) for variant in same.values() for arch in ARCHS]


def write_json(path: Path, data: Any) -> None:
    """Atomically: a temporary file in the same directory, renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--representative", action="store_true", help="the CI subset only")
    p.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("triton_compile: error: TRITON_INTERPRET=1 is set: unset it (the kernel must be "
              "compiled, not interpreted)", file=sys.stderr)  # fmt: skip
        return 2
    import torch
    import triton

    variants = REPRESENTATIVE if a.representative else all_variants()
    todo = jobs(variants)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        records = list(pool.map(compile_one, todo))
    bad = problems(records)
    write_json(a.out, {
        "triton": triton.__version__, "torch": torch.__version__,
        "subset": "representative" if a.representative else "all",
        "seconds": round(time.perf_counter() - t0, 1), "problems": bad, "variants": records,
    })  # fmt: skip
    print(f"compiled {len(records)} variant-targets in {time.perf_counter() - t0:.0f} s -> {a.out}")
    for line in bad:
        print("problem:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
