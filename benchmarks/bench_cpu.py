"""CPU benchmark: crossent vs PyTorch eager, torch.compile and naive NumPy.

See crossent.cli.bench.

Run: ``python benchmarks/bench_cpu.py`` (the same as ``crossent bench``); ``--help`` for options.
"""

import sys

from crossent.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
