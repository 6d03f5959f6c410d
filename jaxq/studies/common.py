"""What every study shares: sizes, writing its outputs and its command-line entry (verdicts:
:mod:`jaxq.studies.verdicts`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np

from jaxq.outputs import write_json
from jaxq.studies import SIZES
from jaxq.validation import check_choice


def pick(size: str, *, tiny: Any, quick: Any, full: Any) -> Any:
    """The setting for ``size`` ("tiny", "quick" or "full")."""
    return {"tiny": tiny, "quick": quick, "full": full}[check_choice("size", size, SIZES)]


def write_outputs(out: Path, summary: dict[str, Any], arrays: dict[str, np.ndarray],
                  figure: Any, *, figure_name: str = "figure.png") -> dict[str, Any]:
    """Write ``summary.json``, ``curves.npz`` (the raw arrays) and the figure (then closed) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "curves.npz", **arrays)
    figure.savefig(out / figure_name, dpi=120, bbox_inches="tight")
    plt.close(figure)
    summary = {**summary, "figure": figure_name, "curves": "curves.npz"}
    write_json(out / "summary.json", summary)
    return summary


def study_main(run: Callable[..., dict[str, Any]], name: str, description: str) -> None:
    """Command-line entry point of one study: ``python experiments/<name>.py [--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--out", type=Path, default=Path("runs") / name,
                        help="output folder (default: runs/%(prog)s)")
    parser.add_argument("--quick", action="store_true",
                        help="the quick size, the one `jaxq reproduce --quick` runs (minutes on a laptop CPU)")
    parser.add_argument("--size", choices=SIZES,
                        help="tiny (seconds, for tests), quick, or full (the default; the study's docstring "
                             "gives each size)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    summary = run(args.out, size=args.size or ("quick" if args.quick else "full"))
    print(f"{name}: {summary.get('verdict', '')}")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
