"""Study 7 -- per-state bias: does ``Q_theta(s, a*) - Q*(s, a*)`` grow with the distance to the terminal?

Setup: the chain runs of study 4 (:mod:`jaxq.studies.chain_depth`): Chain(D), D = 2, 8, 32, variants
"reset" and "stay", gamma = 0.9, the 257-parameter MLP (64 ReLU units), semi-gradient Q-learning
with SGD alpha = 5e-4, epsilon = 0.3, 10k steps. At the end of training, for every state ``s_i`` its
bias ``b(s_i) = Q_theta(s_i, a*) - Q*(s_i, a*)`` at the optimal action ``a* = forward``, as a function
of the distance to the terminal ``D - i`` (forward steps still to go; 1 = the last state).

Claim tested (the seed document, after Park 2024, one run): "states near the terminal have small
bias because bootstrapping stops there; states far from it must propagate Q* through many
bootstrapping steps", i.e. the bias grows with the distance. Measured: the mean bias over seeds at
each distance (a systematic error, with its 95% CI), and the Spearman rank correlation between the
distance and the magnitude of that mean, with a bootstrap 95% interval over seeds. It grows on a
chain when that interval lies above 0; chains of depth 2 (two distances) are shown but not judged.
Coverage (seeds that ever reached the terminal) is reported next to it: a seed that never saw the
reward has nothing to propagate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from jaxq import metrics, plots
from jaxq.studies.chain_depth import (
    ALPHA, DEPTHS, EPSILON, GAMMA, LEARNER, TIME_LIMIT, VARIANTS, depth_runs, grid, run_shape,
)
from jaxq.studies.common import study_main, write_outputs
from jaxq.studies.verdicts import all_of, coverage, verdict

NAME = "per_state_bias"
MIN_DISTANCES = 3  # chains with fewer states are not judged (a rank correlation of two points is +-1)
RESAMPLES = 1000


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``x`` [n] with each row of ``y`` [..., n] (no ties assumed)."""
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y, axis=-1), axis=-1).astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry @ rx) / np.sqrt((ry**2).sum(-1) * (rx @ rx))


def growth(bias: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Rank correlation between distance and ``|mean_seeds bias|`` (``bias``: ``[seeds, distance]``,
    distance 1, 2, ... along the last axis), with a percentile bootstrap 95% interval over seeds.
    Diverged (non-finite) seeds are left out."""
    bias = bias[np.all(np.isfinite(bias), axis=1)]
    n, distances = bias.shape
    d = np.arange(1, distances + 1)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=RESAMPLES) / n
    boot = spearman(d, np.abs(weights @ bias))
    return {"rho": float(spearman(d, np.abs(bias.mean(0)))),
            "rho_ci95": [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))]}


def by_distance(bias: np.ndarray, depth: int) -> np.ndarray:
    """Per-state bias ``[..., S]`` of Chain(depth) reordered by distance to the terminal: ``[..., depth]``
    with index ``k`` holding distance ``k + 1`` (state ``depth - 1 - k``)."""
    return bias[..., :depth][..., ::-1]


def statistics(bias: np.ndarray, terminations: np.ndarray) -> list[dict[str, Any]]:
    """Per variant and depth: the bias profile (mean and 95% CI per distance), its growth, coverage.
    ``bias``: ``[variant, depth, seed, S]``; ``terminations``: ``[variant, depth, seed]``."""
    rows = []
    for v, variant in enumerate(VARIANTS):
        for d, depth in enumerate(DEPTHS):
            profile = by_distance(bias[v, d], depth)
            mean, lo, hi = metrics.mean_ci(profile, axis=0)
            rows.append({
                "variant": variant, "depth": depth,
                "bias_mean": mean.tolist(), "bias_ci95_low": lo.tolist(), "bias_ci95_high": hi.tolist(),
                "nearest": metrics.summarize(profile[:, 0]), "farthest": metrics.summarize(profile[:, -1]),
                "growth": growth(profile) if depth >= MIN_DISTANCES else None,
                "coverage": coverage(terminations[v, d]),
            })
    return rows


def judge(rows: list[dict[str, Any]]) -> tuple[bool | None, dict[str, bool]]:
    """The bias grows on a judged chain when the bootstrap interval of the rank correlation lies above 0."""
    parts = {f"{r['variant']}, chain-{r['depth']}": r["growth"]["rho_ci95"][0] > 0 for r in rows if r["growth"]}
    return all_of(list(parts.values())), parts


def describe(rows: list[dict[str, Any]], seeds: int) -> str:
    """The verdict's numbers: per judged chain, the correlation, the bias at both ends and coverage."""
    texts = []
    for r in rows:
        if r["growth"] is None:
            continue
        g, near, far = r["growth"], r["nearest"], r["farthest"]
        texts.append(
            f"{r['variant']} chain-{r['depth']}: rank correlation of distance with |mean bias| {g['rho']:+.2f} "
            f"(95% CI {g['rho_ci95'][0]:+.2f} to {g['rho_ci95'][1]:+.2f}), mean bias {near['mean']:+.3f} at the "
            f"last state vs {far['mean']:+.3f} at s_0, {r['coverage']['reached_fraction']:.0%} of seeds reached "
            f"the terminal")
    return f"{seeds} seeds per chain; " + "; ".join(texts)


def figure(rows: list[dict[str, Any]], seeds: int, steps: int) -> Any:
    """Per variant: mean bias against distance to the terminal, one band per depth."""
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(7 * len(VARIANTS), 4.8), squeeze=False)
    for v, variant in enumerate(VARIANTS):
        ax = axes[0, v]
        for d, r in enumerate(row for row in rows if row["variant"] == variant):
            distance = np.arange(1, r["depth"] + 1)
            label = f"chain-{r['depth']}, reached terminal: {r['coverage']['reached_fraction']:.0%} of seeds"
            if r["growth"]:
                label += f", rank corr. {r['growth']['rho']:+.2f}"
            plots.interval(ax, distance, r["bias_mean"], r["bias_ci95_low"], r["bias_ci95_high"], label,
                           marker="o", markersize=3, color=f"C{d}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"({variant}) mean over {seeds} seeds, band = 95% CI of the mean", fontsize=9)
        ax.set_xlabel("distance to the terminal D - i (forward steps to go; 1 = last state)")
        ax.set_ylabel("bias Q_theta(s_i, a*) - Q*(s_i, a*) at the last step")
    return plots.finish(fig, axes, f"Per-state bias vs distance to the terminal: Chain(D), 257-parameter MLP, SGD "
                        f"alpha = {ALPHA}, epsilon = {EPSILON}, gamma = {GAMMA}, after {steps} steps, {seeds} seeds "
                        "per chain")


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Bias profiles at the end of the chain-depth runs, both variants."""
    result = depth_runs(size)
    seeds, steps, _ = run_shape(result)
    bias = grid(result, "bias")[:, :, 0, :, -1]
    terminations = grid(result, "terminations")[:, :, 0, :, -1]
    rows = statistics(bias, terminations)
    held, parts = judge(rows)
    summary = {
        "study": NAME,
        "title": "Per-state bias vs distance to the terminal (257-parameter MLP on chains)",
        "claim": "States near the terminal have small bias because bootstrapping stops there; states far from it "
                 "must propagate Q* through many bootstrapping steps, so the bias grows with the distance to the "
                 "terminal (seed: one run, after Park 2024).",
        "setup": {"env": f"Chain(D), D in {list(DEPTHS)}, variants {list(VARIANTS)}, reward +1, episodes cut at "
                         f"{TIME_LIMIT} steps", "gamma": GAMMA, "learner": LEARNER, "alpha": ALPHA,
                  "epsilon": EPSILON, "steps": steps, "seeds": seeds,
                  "bias": "Q_theta(s_i, a*) - Q*(s_i, a*) at the optimal action (forward), after the last step",
                  "distance": "D - i: forward steps from s_i to the terminal",
                  "grows": f"Spearman rank correlation between distance and |mean bias over seeds| with a bootstrap "
                           f"95% CI over seeds ({RESAMPLES} resamples) above 0; chains with fewer than "
                           f"{MIN_DISTANCES} states are not judged"},
        "results": rows,
        "judgement": parts,
        "timing": result.timing,
        "held": held,
        "verdict": verdict(held, describe(rows, seeds)),
    }
    arrays = {"depth": np.asarray(DEPTHS), "variant": np.asarray(VARIANTS), "bias": bias,
              "terminations": terminations, "t_final": np.asarray(steps)}
    return write_outputs(out, summary, arrays, figure(rows, seeds, steps))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
