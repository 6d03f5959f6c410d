"""Benchmark: prioritised replay sample + update and add throughput, jaxq vs flashbax (the same as `jaxq bench replay`).

    python experiments/benchmarks/replay.py [--quick] [--json FILE]
"""

import sys

from jaxq.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "replay", *sys.argv[1:]]))
