"""Writing results: JSON that survives NumPy values and NaNs, and a sweep's standard outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def grid_summary(result: SweepResult) -> list[dict[str, Any]]:
    """Per grid point: the final value of every scalar metric summarised over seeds."""
    rows = []
    for index, point in result.grid_points():
        row: dict[str, Any] = dict(point)
        for name, values in result.logs.items():
            final = np.take(values[index], -1, axis=1)  # [seeds, ...]
            if final.ndim == 1:
                row[f"final_{name}"] = metrics.summarize(final)
        if "terminations" in result.logs:
            reached = np.take(result.logs["terminations"][index], -1, axis=1) > 0
            row["reached_terminal_fraction"] = float(reached.mean())
        rows.append(row)
    return rows


def write_sweep(result: SweepResult, out: Path, *, title: str, metric: str = "error",
                metric_label: str = "||Q_t - Q*||_inf", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``curves.npz`` and ``sweep.png`` for a sweep; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = {name: values for name, values in result.logs.items()}
    np.savez_compressed(out / "curves.npz", **arrays, t=np.asarray(result.coords["t"]),
                        axes=np.asarray(result.axes))
    t = np.asarray(result.coords["t"])
    varying = [k for k in result.grid_axes if len(result.coords[k]) > 1]
    curves = {grid_label({k: point[k] for k in varying}): result.logs[metric][index]
              for index, point in result.grid_points()}
    seeds = len(result.coords["seed"])
    fig = plots.curves_figure(t, curves, title=title, xlabel="environment steps per seed",
                              ylabel=metric_label, seeds=seeds)
    fig.savefig(out / "sweep.png", dpi=120)
    summary = {
        **(extra or {}),
        "axes": result.axes,
        "coords": {k: v for k, v in result.coords.items() if k not in ("seed", "t")},
        "seeds": seeds,
        "log_steps": result.coords["t"],
        "metric": metric_label,
        "config": result.config,
        "grid": grid_summary(result),
        "timing": result.timing,
        "files": {"curves": "curves.npz", "figure": "sweep.png"},
    }
    write_json(out / "summary.json", summary)
    return summary
