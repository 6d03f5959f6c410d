"""Study 8 -- TD-variant gallery: Q-learning, Double Q, Expected SARSA, n-step Q and a new target.

Setup: tabular learners (one table per seed, ``Q_0 = 0``, constant step size alpha = 0.1,
epsilon-greedy behaviour with epsilon = 0.3, 10k steps) on the chain grid of the MLP studies:
Chain(D) for D = 2, 8, 32, variants "reset" and "stay", gamma in {0.9, 0.99}. Each TD variant is
only its target function ``target(reward, discount, successor) -> y`` (see :mod:`jaxq.td`); the
learner, the sweep over chains x gammas x seeds, ``Q*`` and the statistics are shared:

* Q-learning ``y = r + d max_a Q(s', a)``; Double Q-learning (two tables, one picks, the other
  evaluates); Expected SARSA ``y = r + d sum_a pi(a|s') Q(s', a)`` (on-policy: it learns the
  epsilon-greedy policy's values, not Q*); 3-step Q-learning (uncorrected n-step return);
* "bring your own target": :func:`mellowmax`, written in this module -- mellowmax Q-learning
  (Asadi & Littman 2017), a soft maximum whose fixed point lies below Q* where action values differ.

Claim tested (the project's, not the seed document's): a new TD variant is one small function --
it runs through the same one-call sweep as the built-in variants with no other code. Reported per
variant, chain and gamma: the final ``||Q_T - Q*||_inf`` (mean with 95% CI, IQM), the mean error
over training, and coverage (seeds that reached the terminal: on the "reset" chains a table that
starts at zero must find the reward by a random walk).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxq
from jaxq import metrics, plots, td
from jaxq.learners import make_learner
from jaxq.studies.chain_depth import DEPTHS, VARIANTS
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import coverage, verdict
from jaxq.sweep import SweepResult, sweep

NAME = "td_gallery"
GAMMAS = (0.9, 0.99)
ALPHA, EPSILON, OMEGA = 0.1, 0.3, 20.0
SMALL = 10  # "one small function": at most this many source lines, docstring included
FLOOR = 1e-6  # final errors below this are drawn at this value on log axes


def mellowmax(reward: jax.Array, discount: jax.Array, successor: td.Bootstrap) -> jax.Array:
    """Mellowmax Q-learning: ``y = r + d log(mean_a exp(omega Q(s', a))) / omega``, omega = ``OMEGA``."""
    q = successor.q_target
    return reward + discount * (jax.nn.logsumexp(OMEGA * q) - jnp.log(q.shape[-1])) / OMEGA


# label -> (learner name, options); every learner is the tabular one with a different target.
GALLERY: dict[str, tuple[str, dict[str, Any]]] = {
    "Q-learning": ("q", {}),
    "Double Q-learning": ("double_q", {}),
    "Expected SARSA": ("expected_sarsa", {}),
    "3-step Q-learning": ("n_step_q", {"n_steps": 3}),
    "mellowmax (bring your own)": ("q", {"target": mellowmax}),
}
BRING_YOUR_OWN = "mellowmax (bring your own)"


def gallery_sweep(name: str, options: dict[str, Any], seeds: int, steps: int,
                  log_every: int) -> SweepResult:
    """One variant over chain variant x depth x gamma x ``seeds``: errors ``[variant, depth, gamma, seed, t]``."""
    env, params = jaxq.make("Chain", depth=max(DEPTHS), max_depth=max(DEPTHS))
    learner = make_learner(name, env, params, steps=steps, log_every=log_every, step_size="constant",
                           log_bias=False, log_policy_value=False, **options)
    axes = {"variant": list(VARIANTS), "depth": list(DEPTHS), "gamma": list(GAMMAS), "alpha": [ALPHA],
            "epsilon": [EPSILON]}
    return sweep(learner, axes, seeds=seeds)


def statistics(error: np.ndarray, terminations: np.ndarray) -> list[dict[str, Any]]:
    """Per TD variant, chain variant, depth and gamma: final error, mean error over training, coverage.
    ``error``: ``[td, variant, depth, gamma, seed, t]``; ``terminations``: the same without ``t``."""
    rows = []
    for k, label in enumerate(GALLERY):
        for v, variant in enumerate(VARIANTS):
            for d, depth in enumerate(DEPTHS):
                for g, gamma in enumerate(GAMMAS):
                    e = error[k, v, d, g]
                    rows.append({"td": label, "variant": variant, "depth": depth, "gamma": gamma,
                                 "final_error": metrics.summarize(e[:, -1]),
                                 "mean_error_over_training": metrics.summarize(e.mean(-1)),
                                 "coverage": coverage(terminations[k, v, d, g])})
    return rows


def source_lines(fn: Any) -> int:
    """Lines of a function's source, signature and docstring included."""
    return len(inspect.getsource(fn).splitlines())


def describe(rows: list[dict[str, Any]], lines: int, finite: float, seeds: int) -> str:
    """The verdict's numbers: the new target's size, and the variants at the hardest stay and reset points."""
    points = len(VARIANTS) * len(DEPTHS) * len(GAMMAS)
    hardest = {"depth": max(DEPTHS), "gamma": max(GAMMAS)}

    def at(variant: str) -> str:
        mine = [r for r in rows if r["variant"] == variant and all(r[k] == v for k, v in hardest.items())]
        errors = ", ".join(f"{r['td']} {r['final_error']['mean']:.3g}" for r in mine)
        return (f"{variant} chain-{hardest['depth']} gamma {hardest['gamma']}: final error {errors} "
                f"(seeds that reached the terminal: {mine[0]['coverage']['reached_fraction']:.0%} for Q-learning)")

    return (f"the new target ({BRING_YOUR_OWN.split(' (')[0]}) is a {lines}-line function and ran through the same "
            f"one-call sweep as the four built-in variants ({points} chain/gamma points x {seeds} seeds each; "
            f"{finite:.0%} of its lanes finite); means over seeds: {at('stay')}; {at('reset')}")


def figure(t: np.ndarray, error: np.ndarray, rows: list[dict[str, Any]], seeds: int, steps: int) -> Any:
    """(a, b) final error per chain/gamma point for every variant, stay and reset; (c) curves at the
    hardest stay point."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(19, 5.2), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    points = [(depth, gamma) for depth in DEPTHS for gamma in GAMMAS]
    width = 0.8 / len(GALLERY)
    for ax, variant in [(a, "stay"), (b, "reset")]:
        for k, label in enumerate(GALLERY):
            mine = {(r["depth"], r["gamma"]): r["final_error"] for r in rows if r["td"] == label and r["variant"] == variant}
            mean = np.array([mine[p]["mean"] for p in points])
            err = [mean - np.array([mine[p]["ci95_low"] for p in points]),
                   np.array([mine[p]["ci95_high"] for p in points]) - mean]
            ax.bar(np.arange(len(points)) + (k - (len(GALLERY) - 1) / 2) * width, np.maximum(mean, FLOOR), width,
                   yerr=err, capsize=2, color=f"C{k}", label=label)
        ax.set_xticks(np.arange(len(points)), [f"chain-{d}\ngamma {g}" for d, g in points], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(f"final ||Q_T - Q*||_inf after {steps} steps (< {FLOOR:g} drawn at {FLOOR:g})")
        ax.set_title(f"({variant}) mean and 95% CI over {seeds} seeds per bar", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    v, d, g = VARIANTS.index("stay"), len(DEPTHS) - 1, len(GAMMAS) - 1
    for k, label in enumerate(GALLERY):
        plots.band(c, t, error[k, v, d, g], label, color=f"C{k}")
    if plots.spans_decades(error[:, v, d, g]):
        c.set_yscale("log")
    c.set_title(f"(stay) chain-{DEPTHS[d]}, gamma {GAMMAS[g]}: mean, band = 95% CI of the mean over {seeds} seeds",
                fontsize=9)
    c.set_xlabel("environment steps per seed")
    c.set_ylabel("||Q_t - Q*||_inf")
    return plots.finish(fig, [c], f"TD-variant gallery on Chain(D): tabular, Q_0 = 0, constant alpha = {ALPHA}, "
                        f"epsilon = {EPSILON}, {steps} steps, {seeds} seeds per setting; each variant is one target "
                        "function")


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Every variant of the gallery over the same chain/gamma grid."""
    seeds, steps, log_every = pick(size, tiny=(8, 1_000, 100), quick=(200, 10_000, 100), full=(1_000, 10_000, 100))
    results = {label: gallery_sweep(name, options, seeds, steps, log_every) for label, (name, options) in GALLERY.items()}
    error = np.stack([r.logs["error"][:, :, :, 0, 0] for r in results.values()])
    terminations = np.stack([r.logs["terminations"][:, :, :, 0, 0, :, -1] for r in results.values()])
    rows = statistics(error, terminations)
    lines = source_lines(mellowmax)
    finite = float(np.isfinite(error[list(GALLERY).index(BRING_YOUR_OWN)]).all(-1).mean())
    held = lines <= SMALL and finite == 1.0
    t = np.asarray(next(iter(results.values())).coords["t"])
    summary = {
        "study": NAME,
        "title": "TD-variant gallery on chains: a new variant is one small function",
        "claim": f"A new TD variant is one small function (at most {SMALL} lines): it runs through the same sweep, "
                 "exact Q* and statistics as the built-in variants with no other code.",
        "setup": {"env": f"Chain(D), D in {list(DEPTHS)}, variants {list(VARIANTS)}, reward +1",
                  "gammas": list(GAMMAS), "learner": "tabular, Q_0 = 0, constant step size", "alpha": ALPHA,
                  "epsilon": EPSILON, "steps": steps, "log_every": log_every, "seeds": seeds,
                  "variants": {label: {"learner": name, **{k: getattr(v, "__name__", v) for k, v in options.items()}}
                               for label, (name, options) in GALLERY.items()},
                  "bring_your_own": {"name": mellowmax.__name__, "omega": OMEGA, "source_lines": lines,
                                     "source": inspect.getsource(mellowmax)},
                  "error": "||Q_T - Q*||_inf over non-terminal pairs (absolute; ||Q*||_inf = 1)"},
        "results": rows,
        "timing": {label: r.timing for label, r in results.items()},
        "held": held,
        "verdict": verdict(held, describe(rows, lines, finite, seeds)),
    }
    arrays = {"t": t, "td": np.asarray(list(GALLERY)), "variant": np.asarray(VARIANTS), "depth": np.asarray(DEPTHS),
              "gamma": np.asarray(GAMMAS), "error": error, "terminations": terminations}
    return write_outputs(out, summary, arrays, figure(t, error, rows, seeds, steps))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
