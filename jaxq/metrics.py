"""Statistics over seeds: means with t-intervals, robust summaries, bootstrap intervals.

Non-finite values (diverged lanes) are never averaged in: they are counted and reported as a
fraction, and every statistic is computed over the finite lanes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_Z975 = 1.959963984540054


def t_quantile_975(dof: np.ndarray | int) -> np.ndarray:
    """Two-sided 95% Student-t quantile ``t_{0.975, dof}`` (Cornish-Fisher expansion; exact table
    values for dof < 4, error < 1e-3 beyond)."""
    nu = np.maximum(np.asarray(dof, np.float64), 1.0)
    z = _Z975
    approx = z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2) + (
        3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3)
    table = {1: 12.7062, 2: 4.3027, 3: 3.1824}
    return np.select([nu == k for k in table], list(table.values()), approx)


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over finite entries along ``axis`` and its 95% t-interval ``mean +- t s / sqrt(n)``."""
    x = np.asarray(values, np.float64)
    finite = np.isfinite(x)
    n = finite.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, x, 0.0).sum(axis) / n
        centered = np.where(finite, x - np.expand_dims(mean, axis), 0.0)
        std = np.sqrt((centered**2).sum(axis) / np.maximum(n - 1, 1))
        half = np.where(n > 1, t_quantile_975(n - 1) * std / np.sqrt(n), np.nan)
    return mean, mean - half, mean + half


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the finite values."""
    x = np.sort(np.asarray(values, np.float64)[np.isfinite(values)])
    if x.size == 0:
        return float("nan")
    lo, hi = int(np.floor(0.25 * x.size)), int(np.ceil(0.75 * x.size))
    return float(x[lo:max(hi, lo + 1)].mean())


def bootstrap_ci(values: np.ndarray, statistic=iqm, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of ``statistic`` over the finite values."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(x[rng.integers(0, x.size, x.size)]) for _ in range(resamples)])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def summarize(values: Any) -> dict[str, float]:
    """Summary of one quantity over seeds: n, diverged fraction, mean, std, 95% CI of the mean,
    median, IQM and its bootstrap 95% CI."""
    x = np.asarray(values, np.float64).reshape(-1)
    finite = x[np.isfinite(x)]
    mean, lo, hi = mean_ci(x)
    return {
        "n": int(x.size),
        "diverged_fraction": float(1.0 - finite.size / max(x.size, 1)),
        "mean": float(mean),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "ci95_low": float(lo),
        "ci95_high": float(hi),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "iqm": iqm(finite),
        "iqm_ci95": list(bootstrap_ci(finite)),
    }
