"""Throughput studies (``jaxq bench NAME``): jaxq and its peer measured side by side in one run.

Each benchmark module exposes ``run(quick: bool) -> dict`` returning a JSON-ready report made by
:func:`jaxq.bench.timing.report`. ``quick`` shrinks every size so that CI can prove the benchmark
still runs; the numbers of a quick run mean nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxq.validation import check_choice

BENCHMARKS: dict[str, str] = {
    "tabular": "jaxq.bench.tabular",
    "mlp": "jaxq.bench.mlp",
    "lunar": "jaxq.bench.lunar",
}


def run(name: str, quick: bool = False) -> dict[str, Any]:
    """Run benchmark ``name`` and return its report (see :mod:`jaxq.bench.timing`)."""
    check_choice("benchmark", name, BENCHMARKS)
    return importlib.import_module(BENCHMARKS[name]).run(quick=quick)
