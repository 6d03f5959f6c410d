"""Study 4 -- chain depth: is the error of a 257-parameter MLP larger and more volatile on deeper chains?

Setup (the seed document's, which showed one seed): Chain(D) for D = 2, 8, 32, reward +1 on the
last forward step, gamma = 0.9. ``Q(s, a) = MLP([i / D, a])`` with one hidden layer of 64 ReLU units
(257 parameters), semi-gradient Q-learning with plain SGD, alpha = 5e-4, on
``1/2 (y - Q(s_t, a_t))^2``, ``y = r + gamma (1 - terminated) max_a' Q(s', a')`` (held fixed),
epsilon-greedy behaviour with epsilon = 0.3, 10k online steps (episodes cut at 1000 steps). Both
chain variants: "reset" (the other action returns to s_0: with epsilon = 0.3 a walk to the terminal
is rare on deep chains) and "stay" (it keeps s_i: the reward is found on every chain).

Claim tested: "deeper chains require more bootstrapping steps to propagate the reward signal,
leading to larger and more volatile errors". Measured per seed:

* error ``e_t = ||Q_t - Q*||_inf`` over the non-terminal pairs at the end of training, absolute (equal
  to the error relative to ``||Q*||_inf``, which is 1 on every chain) and relative to the mean
  ``|Q*(s, a)|`` (which shrinks with depth);
* volatility: the root-mean-square deviation of ``e_t`` (logged every 100 steps) from its
  least-squares line over the second half of training (detrended; the raw standard deviation over
  the same window is reported too);
* coverage: how many episodes reached the terminal.

"Larger" / "more volatile" means the 95% interval at the deepest chain lies above the one at the
shallowest and no step to a deeper chain goes significantly down (see
:func:`jaxq.studies.verdicts.trend`, beside ``coverage`` and ``volatility``).

The chain MLP sweep here is shared with the discount and per-state-bias studies.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

import jaxq
from jaxq import metrics, plots
from jaxq.envs.chain import q_star_closed_form
from jaxq.learners import make_learner
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import all_of, both, coverage, interval, slashed, trend, verdict, volatility, word
from jaxq.sweep import SweepResult, sweep

NAME = "chain_depth"
VARIANTS = ("reset", "stay")
DEPTHS = (2, 8, 32)
GAMMA, ALPHA, EPSILON, WIDTH, TIME_LIMIT = 0.9, 5e-4, 0.3, 64, 1000
LEARNER = ("MLP Q(s, a) = MLP([i/D, a]), 1 hidden layer of 64 ReLU units (257 parameters), semi-gradient "
           "Q-learning, plain SGD")


# -- shared by the chain studies (4, 5, 7) ---------------------------------------------------------
def chain_mlp_sweep(depths: tuple[int, ...], gammas: tuple[float, ...], seeds: int, steps: int,
                    log_every: int, log_bias: bool) -> SweepResult:
    """The 257-parameter MLP learner on Chain over variant x depth x gamma x ``seeds``, in one call.

    Chains shorter than ``max(depths)`` are padded (depth is a traced parameter).
    """
    env, params = jaxq.make("Chain", depth=max(depths), max_depth=max(depths), max_steps_in_episode=TIME_LIMIT)
    learner = make_learner("mlp", env, params, steps=steps, log_every=log_every, width=WIDTH,
                           log_bias=log_bias, log_policy_value=False)
    axes = {"variant": list(VARIANTS), "depth": list(depths), "gamma": list(gammas), "alpha": [ALPHA],
            "epsilon": [EPSILON]}
    return sweep(learner, axes, seeds=seeds)


def run_shape(result: SweepResult) -> tuple[int, int, int]:
    """``(seeds, steps, log_every)`` of a sweep."""
    learner = result.config["learner"]
    return len(result.coords["seed"]), learner["steps"], learner["log_every"]


def grid(result: SweepResult, metric: str) -> np.ndarray:
    """Logs of ``metric`` from :func:`chain_mlp_sweep` as ``[variant, depth, gamma, seed, t, ...]``."""
    return result.logs[metric][:, :, :, 0, 0]


def q_star_scales(depth: int, gamma: float, variant: str) -> tuple[float, float]:
    """``(||Q*||_inf, mean |Q*|)`` over the non-terminal pairs of Chain(depth) (closed-form ``Q*``)."""
    q = np.abs(q_star_closed_form(depth, gamma, variant))
    return float(q.max()), float(q.mean())


# -- study 4 ---------------------------------------------------------------------------------------
def statistics(error: np.ndarray, terminations: np.ndarray, depths: Sequence[int]) -> list[dict[str, Any]]:
    """Per variant and depth: final error (absolute, relative to ``||Q*||_inf`` and to mean ``|Q*|``),
    volatility (detrended and raw), coverage, and the final error of lanes that did / did not reach
    the terminal. ``error``: ``[variant, depth, seed, t]``; ``terminations``: ``[variant, depth, seed]``."""
    rows = []
    for v, variant in enumerate(VARIANTS):
        for d, depth in enumerate(depths):
            sup, mean_abs = q_star_scales(depth, GAMMA, variant)
            final = error[v, d, :, -1]
            reached = terminations[v, d] > 0
            rows.append({
                "variant": variant, "depth": depth, "q_star_sup": sup, "q_star_mean_abs": mean_abs,
                "final_error": metrics.summarize(final),
                "final_error_rel_sup": metrics.summarize(final / sup),
                "final_error_rel_mean": metrics.summarize(final / mean_abs),
                "volatility": metrics.summarize(volatility(error[v, d])),
                "volatility_raw": metrics.summarize(volatility(error[v, d], detrend=False)),
                "coverage": coverage(terminations[v, d]),
                "final_error_reached": metrics.summarize(final[reached]) if reached.any() else None,
                "final_error_not_reached": metrics.summarize(final[~reached]) if (~reached).any() else None,
            })
    return rows


def judge(rows: list[dict[str, Any]]) -> tuple[bool | None, dict[str, dict[str, bool | None]]]:
    """Per variant: does the final error (absolute; also relative to mean |Q*|) and the volatility grow
    with depth (:func:`trend` on the 95% CI of the mean)? The claim holds in a variant when the
    absolute error and the volatility both grow."""
    parts = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        parts[variant] = {
            "larger_error": trend([interval(r["final_error"]) for r in mine]),
            "larger_relative_error": trend([interval(r["final_error_rel_mean"]) for r in mine]),
            "more_volatile": trend([interval(r["volatility"]) for r in mine]),
        }
        parts[variant]["held"] = both([parts[variant]["larger_error"], parts[variant]["more_volatile"]])
    return all_of([p["held"] for p in parts.values()]), parts


def describe(rows: list[dict[str, Any]], parts: dict[str, dict[str, bool | None]], seeds: int) -> str:
    """The verdict's numbers: per variant, error, volatility and coverage at each depth."""
    texts = []
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        depth_list = slashed(r["depth"] for r in mine)
        err = slashed((r["final_error"]["mean"] for r in mine), ".3g")
        rel = slashed((r["final_error_rel_mean"]["mean"] for r in mine), ".3g")
        vol = slashed((r["volatility"]["mean"] for r in mine), ".2g")
        cov = slashed((r["coverage"]["reached_fraction"] for r in mine), ".0%")
        p = parts[variant]
        texts.append(
            f"{variant} (depth {depth_list}): final error {err} (larger with depth: {word(p['larger_error'])}; "
            f"relative to mean |Q*|: {rel}, larger: {word(p['larger_relative_error'])}), volatility {vol} (more "
            f"volatile: {word(p['more_volatile'])}), seeds that ever reached the terminal {cov}")
    return f"means over {seeds} seeds per chain; " + "; ".join(texts)


def figure(t: np.ndarray, error: np.ndarray, rows: list[dict[str, Any]], depths: Sequence[int], seeds: int,
           steps: int) -> Any:
    """Per variant: (a) error curves, (b) final error absolute and relative to mean |Q*|, (c) volatility."""
    fig, axes = plt.subplots(len(VARIANTS), 3, figsize=(17, 4.3 * len(VARIANTS)), squeeze=False)
    x = np.arange(len(depths))
    for v, variant in enumerate(VARIANTS):
        a, b, c = axes[v]
        mine = [r for r in rows if r["variant"] == variant]
        for d, depth in enumerate(depths):
            plots.band(a, t, error[v, d], f"chain-{depth}", color=f"C{d}")
        if plots.spans_decades(error[v]):
            a.set_yscale("log")
        a.set_title(f"({variant}) ||Q_t - Q*||_inf: mean, band = 95% CI of the mean over {seeds} seeds", fontsize=9)
        a.set_xlabel("environment steps per seed")
        a.set_ylabel("||Q_t - Q*||_inf (absolute = relative to ||Q*||_inf = 1)")
        for key, label, marker in [("final_error", "absolute", "o"), ("final_error_rel_mean", "relative to mean |Q*|", "s")]:
            means = np.array([r[key]["mean"] for r in mine])
            lo = means - np.array([r[key]["ci95_low"] for r in mine])
            hi = np.array([r[key]["ci95_high"] for r in mine]) - means
            b.errorbar(x, means, yerr=[lo, hi], marker=marker, capsize=4, label=label)
        b.set_yscale("log")
        b.set_title(f"({variant}) final error after {steps} steps: mean and 95% CI", fontsize=9)
        b.set_ylabel("final ||Q_T - Q*||_inf (absolute, or / mean |Q*|)")
        vol = np.array([r["volatility"]["mean"] for r in mine])
        vol_err = [vol - np.array([r["volatility"]["ci95_low"] for r in mine]),
                   np.array([r["volatility"]["ci95_high"] for r in mine]) - vol]
        c.bar(x, vol, yerr=vol_err, capsize=4, color=[f"C{d}" for d in range(len(depths))], alpha=0.8)
        for i, r in enumerate(mine):
            c.annotate(f"reached terminal:\n{r['coverage']['reached_fraction']:.0%} of seeds", (x[i], 0.02),
                       xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7,
                       bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
        c.set_title(f"({variant}) volatility: RMS of e_t around its linear trend, 2nd half; 95% CI", fontsize=9)
        c.set_ylabel("detrended RMS of ||Q_t - Q*||_inf")
        for ax in (b, c):
            ax.set_xticks(x, [f"chain-{dd}" for dd in depths])
            ax.set_xlabel("chain depth D")
    return plots.finish(fig, axes, f"Chain depth: 257-parameter MLP, semi-gradient Q-learning, SGD alpha = {ALPHA}, "
                        f"epsilon = {EPSILON}, gamma = {GAMMA}, {steps} steps, {seeds} seeds per chain (variants "
                        "reset / stay)", legend_fontsize=8)


@functools.lru_cache(maxsize=1)
def depth_runs(size: str) -> SweepResult:
    """The chain runs of studies 4 and 7 at ``size``: depths 2, 8, 32, both variants, gamma 0.9.

    The last result is kept, so the two studies share it when they run in one process; a lane's
    numbers depend only on its key and settings, so a study run alone gets the same numbers.
    """
    seeds, steps, log_every = pick(size, tiny=(8, 1_000, 50), quick=(300, 10_000, 100), full=(1_000, 10_000, 100))
    return chain_mlp_sweep(DEPTHS, (GAMMA,), seeds, steps, log_every, True)


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Error, volatility and coverage on chains of depth 2, 8 and 32, both variants."""
    result = depth_runs(size)
    seeds, steps, log_every = run_shape(result)
    error = grid(result, "error")[:, :, 0]
    terminations = grid(result, "terminations")[:, :, 0, :, -1]
    rows = statistics(error, terminations, DEPTHS)
    held, parts = judge(rows)
    t = np.asarray(result.coords["t"])
    summary = {
        "study": NAME,
        "title": "Chain depth: larger and more volatile error on deeper chains? (257-parameter MLP)",
        "claim": "Deeper chains require more bootstrapping steps to propagate the reward signal, leading to larger "
                 "and more volatile errors (seed: one seed per depth).",
        "setup": {"env": f"Chain(D), D in {list(DEPTHS)}, variants {list(VARIANTS)}, reward +1, episodes cut at "
                         f"{TIME_LIMIT} steps", "gamma": GAMMA, "learner": LEARNER, "alpha": ALPHA,
                  "epsilon": EPSILON, "steps": steps, "log_every": log_every, "seeds": seeds,
                  "error": "||Q_T - Q*||_inf over non-terminal pairs at the last step; absolute = relative to "
                           "||Q*||_inf (= 1 on every chain); also relative to mean |Q*(s, a)|",
                  "volatility": "per seed, RMS deviation of ||Q_t - Q*||_inf (logged every log_every steps) from its "
                                "least-squares line over the second half of training; volatility_raw: from its mean",
                  "grows": "the 95% CI of the mean at the deepest chain lies above the one at the shallowest, and no "
                           "step to a deeper chain goes significantly down"},
        "results": rows,
        "judgement": parts,
        "timing": result.timing,
        "held": held,
        "verdict": verdict(held, describe(rows, parts, seeds)),
    }
    arrays = {"t": t, "depth": np.asarray(DEPTHS), "variant": np.asarray(VARIANTS), "error": error,
              "terminations": terminations, "volatility": volatility(error)}
    return write_outputs(out, summary, arrays, figure(t, error, rows, DEPTHS, seeds, steps))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
