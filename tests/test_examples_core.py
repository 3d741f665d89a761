"""examples/loss_core.py runs and prints the seed's numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "loss_core.py"


def test_loss_core_example():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True
    ).stdout
    assert "probabilities: [0.6652 0.2447 0.09  ]" in out
    assert "loss = -log(0.6652) = 0.4076" in out
    assert "gradient p - y: [-0.3348  0.2447  0.09  ]" in out
    assert "all-ignored mean: 0.0" in out
    assert "nan" not in out.lower()
