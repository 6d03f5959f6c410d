"""Figures readable on their own: titled with the setup, labelled axes, labelled confidence bands."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxq.metrics import mean_ci  # noqa: E402


def interval(ax: Any, x: Any, mean: Any, lo: Any, hi: Any, label: str, **style: Any) -> Any:
    """A line through ``mean`` with ``[lo, hi]`` shaded in its colour; returns the line."""
    (line,) = ax.plot(x, mean, label=label, **style)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def band(ax: Any, t: np.ndarray, curves: np.ndarray, label: str, **style: Any) -> None:
    """Mean over seeds (axis 0) with its shaded 95% t-interval; diverged lanes are left out."""
    interval(ax, t, *mean_ci(curves, axis=0), label, **style)


def finish(fig: Any, axes: Any, title: str, *, legend_fontsize: int = 7) -> Any:
    """Grid on every axis in ``axes`` and a legend on those with labelled artists, ``title`` (the
    setup) over the figure, tight layout; returns ``fig``."""
    for ax in np.ravel(axes):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=legend_fontsize)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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


def returns_figure(t: np.ndarray, train: dict[str, np.ndarray], evaluation: dict[str, np.ndarray], *,
                   title: str, seeds: int) -> Any:
    """Training return (left) and greedy evaluation return (right), one band per grid point
    (label -> ``[seeds, T]``). NaN marks log points without an ended episode / an evaluation: those
    are left out, and the evaluation panel is drawn only at log points where it was evaluated."""
    panels = [("training return (episodes ended in each interval)", train),
              ("greedy evaluation return", evaluation)]
    panels = [(name, curves) for name, curves in panels if curves]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels):
        for label, c in curves.items():
            points = np.isfinite(c).any(axis=0)
            band(ax, t[points], c[:, points], label, marker="." if points.sum() < 30 else None)
        ax.set_xlabel("environment steps per seed")
        ax.set_ylabel("undiscounted return")
        ax.set_title(name, fontsize=9)
    for ax in axes[0]:
        ax.legend(fontsize=8, title=f"mean, band = 95% CI over {seeds} seeds", title_fontsize=8)
    return finish(fig, axes, title)
