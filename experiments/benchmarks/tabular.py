"""Benchmark: Tabular Q-learning sweep on Chain vs a NumPy loop and a jit-per-seed loop (the same as `jaxq bench tabular`).

    python experiments/benchmarks/tabular.py [--quick] [--json FILE]
"""

import sys

from jaxq.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "tabular", *sys.argv[1:]]))
