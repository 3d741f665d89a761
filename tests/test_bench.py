"""The CPU benchmark runs end to end (tiny sizes) and its NumPy peer is right."""

from __future__ import annotations

import json

import numpy as np
import pytest

import crossent
from crossent.cli import main
from crossent.cli.bench import format_table, naive_numpy


def test_naive_numpy_peer_matches_crossent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 7))
    y = rng.integers(0, 7, size=20)
    y[::7] = -100
    loss, grad = naive_numpy(x.copy(), y)
    ref_loss, ref_grad = crossent.cross_entropy_with_grad(x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_crossent_bench_cli_prints_the_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--vocab", "50", "-n", "64", "--dtype", "float32", "--repeat", "1",
            "--impl", "crossent", "crossent-inplace", "numpy-naive", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| V | dtype | implementation | median ms |" in text
    for impl in ("crossent", "crossent-inplace", "numpy-naive", "exp-floor", "copy-floor"):
        assert f"| 50 | float32 | {impl} |" in text
    assert "N=64, C=10 (per call): crossent" in text
    data = json.loads(out.read_text())
    assert {c["impl"] for c in data["cases"]} >= {"crossent", "numpy-naive", "exp-floor"}
    assert all(c["ms"] > 0 for c in data["cases"])


def test_format_table_ratios():
    rows = [
        {"impl": "crossent", "n": 10, "v": 100, "dtype": "float32", "ms": 2.0,
         "peak_extra_bytes": 4000},
        {"impl": "torch-eager", "n": 10, "v": 100, "dtype": "float32", "ms": 10.0,
         "peak_extra_bytes": 12000},
    ]  # fmt: skip
    table = format_table(rows)
    assert "| 100 | float32 | torch-eager | 10.0 | 5.00 |" in table
    assert table.splitlines()[2].endswith("| 1.00 |")  # crossent: 4000 B = 1.00 x the logits


def test_the_jax_peer_computes_crossents_loss_and_gradient():
    pytest.importorskip("optax")
    import jax

    from crossent.cli.bench import _jax_case

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 7)).astype(np.float32)
    y = rng.integers(0, 7, size=20)
    y[::7] = -100
    loss, grad = _jax_case(x, y)()
    ref_loss, ref_grad = crossent.cross_entropy_with_grad(x, y)
    # float32 on both sides, XLA's exp and summation order against NumPy's: a few ulp
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.device_get(grad)), ref_grad, rtol=1e-5, atol=1e-7)
