"""Benchmark: 257-parameter MLP semi-gradient sweep vs a PyTorch CPU loop (the same as `jaxq bench mlp`).

    python experiments/benchmarks/mlp.py [--quick] [--json FILE]
"""

import sys

from jaxq.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "mlp", *sys.argv[1:]]))
