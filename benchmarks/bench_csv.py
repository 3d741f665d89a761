"""Time and peak memory of reading a large CSV file with ``crossent.data.load_csv``.

    python benchmarks/bench_csv.py [--mb 100] [--reference SRC_DIR]

Writes a digits-like file (scikit-learn's 1797 8×8 images, repeated: 64 integer pixels 0–16 and
a label column, header ``p0,…,p63,label``) of about ``--mb`` MB into a temporary directory, and
a second one with the pixels divided by 16 (decimals: the float parser) — then reads each in a
fresh process and prints the wall time and the process's peak RSS. With ``--reference`` (the
``src`` directory of another checkout, e.g. the previous release), the same reads by that code
run in the same run, interleaved, for a ratio that this machine's load does not skew.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sklearn.datasets import load_digits

READ = """
import resource, sys, time
from crossent.data import load_csv
t = time.perf_counter()
X, y = load_csv(sys.argv[1])
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{dt:.2f} {rss:.0f} {X.shape[0]}")
"""


def write(path: Path, mb: float, scale: float) -> None:
    X, y = load_digits(return_X_y=True)
    fmt = (lambda v: str(int(v))) if scale == 1 else (lambda v: f"{v / scale:.4g}")
    body = "".join(",".join(map(fmt, r)) + f",{c}\n" for r, c in zip(X, y, strict=True))
    with open(path, "w") as fh:
        fh.write(",".join(f"p{i}" for i in range(64)) + ",label\n")
        for _ in range(int(mb * 1e6 / len(body)) + 1):
            fh.write(body)


def read(src: str, path: Path) -> tuple[float, float, int]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path)], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    dt, rss, n = out.stdout.split()
    return float(dt), float(rss), int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--reference", help="src directory of the code to compare with")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    codes = [("this checkout", here)] + ([("reference", args.reference)] if args.reference else [])
    with tempfile.TemporaryDirectory() as tmp:
        for name, scale in (("integer pixels", 1.0), ("decimal pixels", 16.0)):
            path = Path(tmp) / "digits.csv"
            write(path, args.mb, scale)
            size = path.stat().st_size / 1e6
            for code, src in codes:
                dt, rss, n = read(src, path)
                print(f"{name:15} {size:6.1f} MB {n:8d} rows  {code:14} {dt:7.2f} s  {rss:6.0f} MB")


if __name__ == "__main__":
    main()
