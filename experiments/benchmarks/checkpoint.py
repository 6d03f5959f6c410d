"""Benchmark: checkpoint overhead of a sweep and lanes per second from 1 to 10^6 lanes (the same as `jaxq bench checkpoint`).

    python experiments/benchmarks/checkpoint.py [--quick] [--json FILE]
"""

import sys

from jaxq.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "checkpoint", *sys.argv[1:]]))
