"""Writing results: JSON that survives NumPy values and NaNs, and a sweep's standard outputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from jaxq import metrics, plots
from jaxq.sweep import SweepResult


def jsonable(x: Any) -> Any:
    """``x`` with NumPy scalars/arrays turned into Python values and non-finite floats made explicit."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(data), indent=2) + "\n")


def grid_label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "all"


# NaN where no training episode ended in a log interval: summarised per lane over the last tenth of
# the run. (Evaluations, NaN between them, are summarised at the last log point, always evaluated.)
TRAINING_EPISODES = ("train_return", "train_length")


def final_training(values: np.ndarray) -> np.ndarray:
    """Per lane (``values``: ``[seeds, T]``), the mean over the last tenth of the log points of the
    intervals in which an episode ended (NaN if none did)."""
    tail = values[:, -max(1, values.shape[1] // 10):]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(tail, axis=1)


def grid_summary(result: SweepResult) -> list[dict[str, Any]]:
    """Per grid point: the final value of every scalar metric summarised over seeds (training
    returns and lengths averaged over the last tenth of the run, see :func:`final_training`)."""
    rows = []
    for index, point in result.grid_points():
        row: dict[str, Any] = dict(point)
        for name, values in result.logs.items():
            if values[index].ndim != 2:
                continue
            final = final_training(values[index]) if name in TRAINING_EPISODES else values[index][:, -1]
            row[f"final_{name}"] = metrics.summarize(final)
        if "error" in result.logs:  # exact metrics: did each lane ever reach the (single) terminal?
            reached = np.take(result.logs["terminations"][index], -1, axis=1) > 0
            row["reached_terminal_fraction"] = float(reached.mean())
        rows.append(row)
    return rows


def sweep_figure(result: SweepResult, title: str) -> Any:
    """``||Q_t - Q*||_inf`` bands when the sweep has exact metrics, else training and greedy returns."""
    t = np.asarray(result.coords["t"])
    varying = [k for k in result.grid_axes if len(result.coords[k]) > 1]
    seeds = len(result.coords["seed"])

    def curves(metric: str) -> dict[str, np.ndarray]:
        if metric not in result.logs:
            return {}
        return {grid_label({k: point[k] for k in varying}): result.logs[metric][index]
                for index, point in result.grid_points()}

    if "error" in result.logs:
        return plots.curves_figure(t, curves("error"), title=title, xlabel="environment steps per seed",
                                   ylabel="||Q_t - Q*||_inf", seeds=seeds)
    return plots.returns_figure(t, curves("train_return"), curves("eval_return"), title=title, seeds=seeds)


def write_sweep(result: SweepResult, out: Path, *, title: str, extra: dict[str, Any] | None = None,
                rows: list[dict[str, Any]] | None = None, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``curves.npz`` and ``sweep.png`` for a sweep; return the summary.

    ``rows`` replace the per-grid-point summaries (default :func:`grid_summary`); ``arrays`` are
    saved next to the logged curves."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "curves.npz", **result.logs, **(arrays or {}), t=np.asarray(result.coords["t"]),
                        axes=np.asarray(result.axes))
    seeds = len(result.coords["seed"])
    figure = sweep_figure(result, title)
    figure.savefig(out / "sweep.png", dpi=120)
    plt.close(figure)
    summary = {
        **(extra or {}),
        "axes": result.axes,
        "coords": {k: v for k, v in result.coords.items() if k not in ("seed", "t")},
        "seeds": seeds,
        "log_steps": result.coords["t"],
        "config": result.config,
        "grid": grid_summary(result) if rows is None else rows,
        "timing": result.timing,
        "files": {"curves": "curves.npz", "figure": "sweep.png"},
    }
    write_json(out / "summary.json", summary)
    return summary
