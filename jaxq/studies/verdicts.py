"""Verdicts the studies share: how a claim is judged from intervals over seeds, and how it is said.

A claim's parts are ``True`` (held), ``False`` (not held) or ``None`` (mixed); :func:`verdict` writes
the one-line result, :func:`slashed` one number per setting.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np


def verdict(held: bool | None, text: str) -> str:
    """One line: ``HELD``, ``NOT HELD`` or ``MIXED`` (``held=None``), then the numbers."""
    tag = "MIXED" if held is None else ("HELD" if held else "NOT HELD")
    return f"{tag}: {text}"


def slashed(values: Iterable[Any], spec: str = "") -> str:
    """``values`` formatted with ``spec`` and joined by "/": one number per setting in a verdict line."""
    return "/".join(format(v, spec) for v in values)


def word(held: bool | None) -> str:
    return {True: "yes", False: "no", None: "mixed"}[held]


def all_of(parts: Sequence[bool | None]) -> bool | None:
    """True if every part holds, False if every part fails, None (mixed) otherwise."""
    if all(p is True for p in parts):
        return True
    if all(p is False for p in parts):
        return False
    return None


def both(parts: Sequence[bool | None]) -> bool | None:
    """A claim made of parts: False if one part fails, True if all hold, None otherwise."""
    if any(p is False for p in parts):
        return False
    return True if all(p is True for p in parts) else None


def trend(intervals: Sequence[tuple[float, float]]) -> bool | None:
    """Does a quantity grow along an ordered grid, judged by 95% intervals ``(low, high)`` per point?

    True: the last interval lies entirely above the first, and no step goes significantly down (the
    next interval entirely below the previous one); None: the last lies above the first but some
    step goes significantly down; False: the last does not lie above the first.
    """
    if not intervals[-1][0] > intervals[0][1]:
        return False
    drops = any(b[1] < a[0] for a, b in zip(intervals, intervals[1:]))
    return None if drops else True


def interval(summary: dict[str, Any], robust: bool = False) -> tuple[float, float]:
    """The 95% interval of a :func:`jaxq.metrics.summarize` result: of the mean, or of the IQM."""
    return tuple(summary["iqm_ci95"]) if robust else (summary["ci95_low"], summary["ci95_high"])


def coverage(terminations: np.ndarray) -> dict[str, float]:
    """Over lanes (``terminations``: episodes that reached the terminal, per lane): the fraction that
    reached it at least once and the median/mean number of such episodes."""
    t = np.asarray(terminations, np.float64)
    return {"reached_fraction": float(np.mean(t > 0)), "episodes_median": float(np.median(t)),
            "episodes_mean": float(np.mean(t))}


def volatility(curves: np.ndarray, detrend: bool = True) -> np.ndarray:
    """Per lane, the RMS deviation of a curve ``[..., T]`` over its second half (``t >= T // 2``) from
    its least-squares line (``detrend``) or from its mean: ``sqrt(mean_t (e_t - a - b t)^2)``."""
    half = np.asarray(curves, np.float64)[..., curves.shape[-1] // 2:]
    t = np.arange(half.shape[-1], dtype=np.float64)
    t -= t.mean()
    resid = half - half.mean(-1, keepdims=True)
    if detrend:
        resid -= (resid @ t)[..., None] / (t @ t) * t
    return np.sqrt((resid**2).mean(-1))
