"""Benchmark: LunarLander port under vmap vs Gymnasium's Box2D env (single and sync vector) (the same as `jaxq bench lunar`).

    python experiments/benchmarks/lunar.py [--quick] [--json FILE]
"""

import sys

from jaxq.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "lunar", *sys.argv[1:]]))
