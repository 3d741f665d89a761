"""Benchmark crossent.jax against optax and a naive log_softmax: forward + backward under jit.

    python benchmarks/bench_jax.py ce  --n 4096 --v 32000 128256
    python benchmarks/bench_jax.py lce --n 4096 --d 1024 --v 128256

``ce``: the mean cross-entropy of float32 logits and its gradient (``jax.value_and_grad``)
by crossent.jax.cross_entropy, optax's ``softmax_cross_entropy_with_integer_labels`` (then
``.mean()``) and ``-take_along_axis(log_softmax(x), y).mean()``. ``lce``: the fused head
crossent.jax.linear_cross_entropy against ``cross_entropy(x @ w.T, y)``, gradients for ``x``
and ``w``. Time: the median of ``--repeat`` calls after a warm-up (compilation excluded).
Peak extra memory: the temporaries of the compiled step, from XLA's buffer assignment
(``compiled.memory_analysis().temp_size_in_bytes``): what the step needs beyond its inputs
and outputs, the same on every run of it. Ratios are against the first implementation of
each table, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def ce_impls() -> dict[str, Callable[[Any, Any], Any]]:
    import optax

    from crossent.jax import cross_entropy

    def naive(x: Any, y: Any) -> Any:
        logp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.take_along_axis(logp, y[:, None], axis=-1).mean()

    return {
        "crossent.jax": lambda x, y: cross_entropy(x, y),
        "optax": lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean(),
        "naive log_softmax": naive,
    }


def lce_impls() -> dict[str, Callable[[Any, Any, Any], Any]]:
    from crossent.jax import cross_entropy, linear_cross_entropy

    return {
        "unfused x @ w.T + cross_entropy": lambda x, w, y: cross_entropy(x @ w.T, y),
        "crossent.jax fused head": lambda x, w, y: linear_cross_entropy(x, w, y),
    }


def measure(step: Any, args: tuple[Any, ...], repeat: int) -> tuple[float, int]:
    """(median seconds, XLA's temporary bytes) of a jitted step."""
    compiled = step.lower(*args).compile()
    temp = int(compiled.memory_analysis().temp_size_in_bytes)
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), temp


def table(title: str, rows: list[tuple[str, float, int]]) -> str:
    t0, m0 = rows[0][1], max(rows[0][2], 1)
    lines = [
        f"\n{title}\n",
        "| implementation | median s | time vs first | peak extra MiB | memory vs first |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t, m in rows:
        lines.append(f"| {name} | {t:.3f} | {t / t0:.2f} | {m / 2**20:.0f} | {m / m0:.2f} |")
    return "\n".join(lines)


def bench_ce(n: int, vocab: list[int], repeat: int) -> None:
    key = jax.random.key(0)
    for v in vocab:
        x = jax.random.normal(key, (n, v), jnp.float32)
        y = jax.random.randint(jax.random.key(1), (n,), 0, v)
        rows = []
        for name, fn in ce_impls().items():
            sec, temp = measure(jax.jit(jax.value_and_grad(fn)), (x, y), repeat)
            rows.append((name, sec, temp))
        print(table(f"cross-entropy, forward + backward, N={n}, V={v}, float32", rows))
        del x


def bench_lce(n: int, d: int, vocab: list[int], repeat: int) -> None:
    for v in vocab:
        x = jax.random.normal(jax.random.key(0), (n, d), jnp.float32)
        w = jax.random.normal(jax.random.key(1), (v, d), jnp.float32) * d**-0.5
        y = jax.random.randint(jax.random.key(2), (n,), 0, v)
        rows = []
        for name, fn in lce_impls().items():
            step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
            sec, temp = measure(step, (x, w, y), repeat)
            rows.append((name, sec, temp))
        print(table(f"linear head + loss, forward + backward, N={n}, D={d}, V={v}, float32", rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["ce", "lce"])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--v", type=int, nargs="+", default=None)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    if a.what == "ce":
        bench_ce(a.n, a.v or [32000, 128256], a.repeat)
    else:
        bench_lce(a.n, a.d, a.v or [128256], a.repeat)


if __name__ == "__main__":
    main()
