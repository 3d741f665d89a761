"""Benchmark crossent.torch.distributed: time, peak memory per rank and bytes communicated.

Vocabulary-parallel cross-entropy and fused head at world size 2 (gloo, one CPU thread per
rank) against the all-gather approach (gather the logits, call the single-process loss, keep
this rank's columns of the gradient) and against one process holding everything:

    python benchmarks/bench_distributed.py --n 4096 --v 128256 --d 1024

The vocabulary-parallel steps alternate ``check_ranks=True`` and ``False`` in the same process
group (each round in the other order): the cost of checking that the ranks' arguments agree is
printed below the table. ``--impls`` runs some of the implementations only (the ratio columns
are then against the first one given when all-gather or single is left out).

Each (case, implementation) runs in a fresh process group so that each rank's peak resident
memory is its own. "peak" is the inputs plus the peak extra memory of a steady-state step
(after a warm-up step) above the level once the inputs exist (``VmHWM`` reset through
``/proc/self/clear_refs``); the torch runtime itself is not counted. Bytes per row are
counted by wrapping ``torch.distributed``'s collectives during one step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

IMPLS = ["single", "all-gather", "vocab-parallel"]
CHECK = [True]  # check_ranks of the vocabulary-parallel steps, switched between steps


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _count_collectives(dist: Any, log: list[tuple[str, int]], d: int) -> None:
    """Wrap the collectives crossent and this benchmark use: (name, bytes sent per rank)."""
    for name in ("all_reduce", "all_gather"):
        orig = getattr(dist, name)

        def wrapped(*a: Any, _orig: Any = orig, _name: str = name, **k: Any) -> Any:
            t = a[1] if _name == "all_gather" else a[0]
            op = str(k.get("op", "SUM")).split(".")[-1]
            label = _name if _name == "all_gather" else f"{_name} {op}"
            if t.ndim == 2 and t.shape[1] == d:
                label = "all_reduce of the input gradient"
            log.append((label, t.numel() * t.element_size()))
            return _orig(*a, **k)

        setattr(dist, name, wrapped)


def _setup(case: str, impl: str, rank: int, world: int, args: Any):  # type: ignore[no-untyped-def]
    """``step()`` running forward + backward once, and the bytes of the inputs."""
    import torch
    import torch.distributed as dist

    from crossent.torch import cross_entropy, linear_cross_entropy
    from crossent.torch.distributed import (
        vocab_parallel_cross_entropy,
        vocab_parallel_linear_cross_entropy,
    )

    n, v, d = args.n, args.v, args.d
    lo, hi = (v * rank // world, v * (rank + 1) // world)
    g = torch.Generator().manual_seed(rank)
    y = torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(0))

    def gather(t: Any) -> Any:  # (N, V) from every rank's (N, V_r)
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, 1)

    if case == "ce":
        x = (torch.randn(n, hi - lo, generator=g) * 2).requires_grad_()
        if impl == "single":
            return (lambda: cross_entropy(x, y).backward()), x.nbytes

        def ag() -> None:
            full = gather(x.detach()).requires_grad_()
            cross_entropy(full, y).backward()
            x.grad = full.grad[:, lo:hi].clone()  # type: ignore[index]

        vp = lambda: vocab_parallel_cross_entropy(x, y, check_ranks=CHECK[0]).backward()  # noqa: E731
        return (ag if impl == "all-gather" else vp), x.nbytes
    h = torch.randn(n, d, generator=torch.Generator().manual_seed(1)).requires_grad_()
    w = (torch.randn(hi - lo, d, generator=g) * d**-0.5).requires_grad_()
    if impl == "single":
        return (lambda: linear_cross_entropy(h, w, y).backward()), h.nbytes + w.nbytes

    def ag_head() -> None:
        logits = h @ w.T
        full = gather(logits.detach()).requires_grad_()
        cross_entropy(full, y).backward()
        logits.backward(full.grad[:, lo:hi])  # type: ignore[index]
        dist.all_reduce(h.grad)  # the input gradient: a sum over ranks

    vp_head = lambda: vocab_parallel_linear_cross_entropy(  # noqa: E731
        h, w, y, check_ranks=CHECK[0]
    ).backward()
    return (ag_head if impl == "all-gather" else vp_head), h.nbytes + w.nbytes


def _worker(rank: int, world: int, case: str, impl: str, args: Any, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{out}.store", rank=rank, world_size=world
        )
    step, input_bytes = _setup(case, impl, rank, world, args)
    step()  # warm-up: recycled buffers exist from here on
    base = _kib("VmRSS") * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    log: list[tuple[str, int]] = []
    if world > 1:
        _count_collectives(dist, log, args.d)
    step()
    peak = _kib("VmHWM") * 1024 - base
    coll: dict[str, int] = {}
    for name, nbytes in log:
        coll[name] = coll.get(name, 0) + nbytes
    if world > 1:
        dist.barrier()
    times: dict[bool, list[float]] = {True: [], False: []}
    flags = (True, False) if impl == "vocab-parallel" else (True,)
    for i in range(args.repeat):
        for flag in flags if i % 2 == 0 else flags[::-1]:
            CHECK[0] = flag
            t0 = time.perf_counter()
            step()
            times[flag].append(time.perf_counter() - t0)
            if world > 1:
                dist.barrier()
    res = {"time": statistics.median(times[True]), "peak": input_bytes + peak, "extra": peak,
           "collectives": coll, "unchecked": statistics.median(times[False] or [0.0])}  # fmt: skip
    Path(f"{out}.{rank}.json").write_text(json.dumps(res))
    if world > 1:
        dist.destroy_process_group()


def _cpu() -> str:
    name = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    except OSError:
        simd = "?"
    return f"{name}, {os.cpu_count()} cores, {simd}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--v", type=int, default=128256)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=["ce", "lce"], choices=["ce", "lce"])
    p.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    args = p.parse_args()
    os.environ.setdefault("CROSSENT_NUM_THREADS", "1")  # one core per rank

    import torch
    import torch.multiprocessing as mp

    print(f"CPU: {_cpu()}; torch {torch.__version__}, gloo, float32, one thread per rank")
    print(f"N={args.n}, V={args.v}, D={args.d}, world size {args.world}; median of "
          f"{args.repeat} steps (forward + backward); peak = inputs + peak extra, per rank\n")  # fmt: skip
    print("| case | implementation | time (s) | × all-gather | peak per rank (GB) | "
          "× single | bytes/row per collective |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|")
    notes: list[str] = []
    for case in args.cases:
        res: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for impl in args.impls:
                world = 1 if impl == "single" else args.world
                out = f"{tmp}/{case}-{impl}"
                mp.spawn(_worker, args=(world, case, impl, args, out), nprocs=world)
                ranks = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(world)]
                res[impl] = {
                    "time": max(r["time"] for r in ranks),
                    "unchecked": max(r["unchecked"] for r in ranks),
                    "peak": max(r["peak"] for r in ranks),
                    "collectives": ranks[0]["collectives"],
                }
        base = res.get("all-gather", res[args.impls[0]])
        single = res.get("single", res[args.impls[0]])
        for impl in args.impls:
            r = res[impl]
            coll = ", ".join(
                f"{k}: {b / args.n:.0f}" for k, b in r["collectives"].items() if b >= args.n
            )
            name = {"ce": "cross-entropy", "lce": "linear + cross-entropy"}[case]
            print(f"| {name} | {impl} | {r['time']:.3f} | "
                  f"{r['time'] / base['time']:.2f} | {r['peak'] / 1e9:.2f} | "
                  f"{r['peak'] / single['peak']:.2f} | {coll or '-'} |")  # fmt: skip
        notes.append(_check_cost(res, name, args.repeat))
    print("\n" + "\n".join(n for n in notes if n), flush=True)


def _check_cost(res: dict[str, dict[str, Any]], name: str, repeat: int) -> str:
    r = res.get("vocab-parallel")
    if r is None:
        return ""
    return (f"{name}: check_ranks=True {r['time']:.3f} s, False {r['unchecked']:.3f} s "
            f"(median of {repeat} interleaved steps each): "
            f"{100 * (r['time'] / r['unchecked'] - 1):+.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
