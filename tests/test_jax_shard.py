"""crossent.jax's vocabulary-parallel functions on four host devices, in a subprocess.

JAX fixes its number of CPU devices when it starts; the cases are in jax_shard_cases.py, run
here by pytest in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
so that the other tests of this process keep their single device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")


def test_the_sharded_functions_equal_one_device_on_2_and_4_devices():
    here = Path(__file__).parent
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    cmd = [sys.executable, "-m", "pytest", str(here / "jax_shard_cases.py"), "-q",
           "-p", "no:cacheprovider", "-rs"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=here.parent)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "skipped" not in out.stdout, out.stdout[-2000:]
