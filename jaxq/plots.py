"""Figures readable on their own: titled with the setup, labelled axes, labelled confidence bands."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxq.metrics import mean_ci  # noqa: E402


def band(ax: Any, t: np.ndarray, curves: np.ndarray, label: str, **style: Any) -> None:
    """Mean over seeds (axis 0) with its shaded 95% t-interval; diverged lanes are left out."""
    mean, lo, hi = mean_ci(curves, axis=0)
    (line,) = ax.plot(t, mean, label=label, **style)
    ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def spans_decades(values: np.ndarray, decades: float = 2.0) -> bool:
    """True if the positive finite values span more than ``decades`` orders of magnitude."""
    v = np.asarray(values)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 0 and np.log10(v.max() / v.min()) > decades


def curves_figure(t: np.ndarray, curves: dict[str, np.ndarray], *, title: str, xlabel: str, ylabel: str,
                  seeds: int, logy: bool | None = None) -> Any:
    """One band per entry of ``curves`` (label -> ``[seeds, T]``), log scale when values span decades."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, c in curves.items():
        band(ax, t, c, label)
    values = np.concatenate([np.ravel(c) for c in curves.values()])
    if logy if logy is not None else spans_decades(values):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=f"mean, band = 95% CI over {seeds} seeds", title_fontsize=8)
    fig.tight_layout()
    return fig
