"""Throughput studies (``jaxq bench NAME``): jaxq and its peer measured side by side in one run.

Each benchmark module exposes ``run(quick: bool) -> dict`` returning a JSON-ready report made by
:func:`jaxq.bench.timing.report`. ``quick`` shrinks every size so that CI can prove the benchmark
still runs; the numbers of a quick run mean nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from jaxq.validation import check_choice

BENCHMARKS: dict[str, str] = {
    "tabular": "jaxq.bench.tabular",
    "mlp": "jaxq.bench.mlp",
    "lunar": "jaxq.bench.lunar",
    "dqn": "jaxq.bench.dqn",
    "replay": "jaxq.bench.replay",
    "checkpoint": "jaxq.bench.checkpoint",
}
# the peer packages each benchmark imports (the `bench` extra installs them all)
PEERS: dict[str, tuple[str, ...]] = {
    "tabular": (),
    "mlp": ("torch",),
    "lunar": ("gymnasium", "Box2D"),
    "dqn": ("gymnasium", "Box2D", "stable_baselines3"),
    "replay": ("flashbax",),
    "checkpoint": (),
}


def missing_peers(name: str) -> list[str]:
    """The peer packages of benchmark ``name`` that are not installed."""
    return [module for module in PEERS[name] if importlib.util.find_spec(module) is None]


def run(name: str, quick: bool = False) -> dict[str, Any]:
    """Run benchmark ``name`` and return its report (see :mod:`jaxq.bench.timing`)."""
    check_choice("benchmark", name, BENCHMARKS)
    missing = missing_peers(name)
    if missing:
        raise ModuleNotFoundError(
            f"jaxq bench {name} measures its peer in the same run and needs {', '.join(missing)}, "
            'which is not installed: pip install -e ".[bench]"')
    return importlib.import_module(BENCHMARKS[name]).run(quick=quick)
