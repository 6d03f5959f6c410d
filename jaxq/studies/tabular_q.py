"""Study 2 -- tabular Q-learning on the branching MDP: the staircase and convergence across seeds.

Setup: the default 5-state Branching tree, gamma = 0.9, epsilon-greedy behaviour (epsilon = 0.3),
``Q_0 = 0``, one update per step ``Q(s, a) += alpha_t (r + gamma max_a' Q(s', a') - Q(s, a))`` with
two step-size rules: ``alpha_t = 1 / (1 + N(s, a))`` (Robbins-Monro; ``N`` counts earlier updates of
the pair) and a constant ``alpha = 0.1``. Both on the deterministic tree (as in the seed document)
and with transition noise 0.2 (the executed action is replaced by a uniform one with probability
0.2), where the TD target is random and Robbins-Monro step sizes matter.

The seed document's claims: (1) the error ``e_t = ||Q_t - Q*||_inf`` (over the 10 non-terminal
pairs; absolute, ``||Q*||_inf = 1``) is a staircase -- one entry changes per step, so ``e_t`` only
moves when the worst pair is updated; measured as the fraction of steps ``t`` of the first stretch
(logged every step) with ``e_t == e_{t-1}`` exactly; (2) under Robbins-Monro step sizes and
coverage, ``Q_t -> Q*``; measured as the fraction of seeds whose final error is below 0.05 and the
median error's reduction over the second half of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import jaxq
from jaxq import metrics, plots
from jaxq.learners import make_learner
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import verdict
from jaxq.sweep import sweep

NAME = "tabular_q"
GAMMA, EPSILON, ALPHA = 0.9, 0.3, 0.1
NOISES = (0.0, 0.2)
TOLERANCE = 0.05
RULES = {"inverse_count": "alpha = 1/(1+N(s,a))", "constant": f"constant alpha = {ALPHA}"}
STALLED = 0.9  # a median error reduced by less than 10% over the second half has stalled
DISPLAY_FLOOR = 1e-9
EVERY_STEP_LOGS = 1 << 22  # most errors logged every step in one sweep (16 MiB of float32)  # final errors below this are drawn at this value on log axes


def error_sweep(rule: str, steps: int, log_every: int, seeds: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Q-learning with step-size ``rule`` at every noise level: errors ``[noise, seeds, T]`` and timing."""
    env, params = jaxq.make("Branching")
    learner = make_learner("q", env, params, steps=steps, log_every=log_every, step_size=rule,
                           log_bias=False, log_policy_value=False)
    axes: dict[str, list] = {"noise": list(NOISES), "gamma": [GAMMA], "epsilon": [EPSILON]}
    if rule == "constant":
        axes["alpha"] = [ALPHA]
    result = sweep(learner, axes, seeds=seeds)
    errors = result.logs["error"].reshape(len(NOISES), seeds, -1)
    return errors, result.timing


def error_runs(rule: str, seeds: int, stair_steps: int, steps: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Errors logged every step over the first ``stair_steps`` and every ``steps / 100`` over the run
    (``[noise, seeds, T]`` each), and the sweeps' timings.

    When every-step logs of the whole run fit ``EVERY_STEP_LOGS`` values, one sweep logged every step
    gives both (one compilation instead of two); otherwise two sweeps run. Both ways give the same
    numbers: a lane's randomness depends only on its key and the step index.
    """
    log_every = steps // 100
    if seeds * len(NOISES) * steps <= EVERY_STEP_LOGS:
        errors, timing = error_sweep(rule, steps, 1, seeds)
        return errors[..., :stair_steps + 1], errors[..., ::log_every], {"every_step": timing}
    stair, stair_timing = error_sweep(rule, stair_steps, 1, seeds)
    long, long_timing = error_sweep(rule, steps, log_every, seeds)
    return stair, long, {"staircase": stair_timing, "long": long_timing}


def flat_fraction(errors: np.ndarray) -> np.ndarray:
    """Per seed, the fraction of steps ``t = 1..T`` with ``e_t == e_{t-1}`` (errors logged every step)."""
    return (np.diff(errors, axis=-1) == 0).mean(-1)


def convergence(final: np.ndarray, midway: np.ndarray) -> dict[str, Any]:
    """Final-error summary over seeds, the fraction below ``TOLERANCE`` and
    ``median(e_T) / median(e_{T/2})`` (about 1: stalled; well below 1: still converging)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        reduction = float(np.median(final) / np.median(midway))
    return {"final_error": metrics.summarize(final), "fraction_below_tolerance": float(np.mean(final < TOLERANCE)),
            "second_half_reduction": reduction}


def convergence_word(reduction: float) -> str:
    """Words for a second-half reduction ``median(e_T) / median(e_{T/2})``."""
    return "stalled at a noise floor" if reduction >= STALLED else "still decreasing"


def figure(stair: dict[str, np.ndarray], long: dict[str, np.ndarray], t_long: np.ndarray, seeds: int) -> Any:
    """(a) the staircase (one seed and the mean band), (b) the long run, (c) final-error distributions."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.8))
    for r, (rule, label) in enumerate(RULES.items()):
        errors = stair[rule][0]  # deterministic tree
        t = np.arange(errors.shape[-1])
        plots.band(a, t, errors, f"{label}: mean over seeds", color=f"C{r}")
        a.plot(t, errors[0], drawstyle="steps-post", color=f"C{r}", linewidth=0.9, alpha=0.8, linestyle="--",
               label=f"{label}: seed 0")
        for n, noise in enumerate(NOISES):
            style = {"color": f"C{r}", "linestyle": "-" if noise == 0 else ":"}
            plots.band(b, t_long, long[rule][n], f"{label}, noise {noise}", **style)
            final = np.sort(np.maximum(long[rule][n][:, -1], DISPLAY_FLOOR))
            c.plot(final, np.arange(1, final.size + 1) / final.size, label=f"{label}, noise {noise}", **style)
    a.set_title(f"(a) the staircase: first {stair['constant'].shape[-1] - 1} steps, logged every step, noise 0",
                fontsize=9)
    a.set_xlabel("environment step")
    a.set_ylabel("||Q_t - Q*||_inf (absolute; ||Q*||_inf = 1)")
    b.set_title(f"(b) convergence: mean, band = 95% CI of the mean over {seeds} seeds", fontsize=9)
    b.set_xlabel("environment step")
    b.set_ylabel("||Q_t - Q*||_inf")
    b.axhline(TOLERANCE, color="black", linestyle="--", linewidth=1, label=f"tolerance {TOLERANCE}")
    if plots.spans_decades(np.concatenate([np.ravel(v) for v in long.values()])):
        b.set_yscale("log")
    c.axvline(TOLERANCE, color="black", linestyle="--", linewidth=1, label=f"tolerance {TOLERANCE}")
    c.set_xscale("log")
    c.set_title(f"(c) final error after {int(t_long[-1])} steps, all {seeds} seeds", fontsize=9)
    c.set_xlabel(f"final ||Q_T - Q*||_inf (values < {DISPLAY_FLOOR:g} drawn at {DISPLAY_FLOOR:g})")
    c.set_ylabel("fraction of seeds with final error <= x")
    return plots.finish(fig, [a, b, c], f"Tabular Q-learning on the 5-state Branching tree: gamma = {GAMMA}, "
                        f"epsilon-greedy epsilon = {EPSILON}, Q_0 = 0, {seeds} seeds per setting")


def statistics(stair: dict[str, np.ndarray], long: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Per ``"<rule>, noise <x>"``: the staircase (flat-step fraction over seeds, its lowest seed, changes
    per 100 steps) and :func:`convergence` (final vs midway error of the long run)."""
    mid = (long["constant"].shape[-1] - 1) // 2
    staircase, conv = {}, {}
    for rule in RULES:
        for n, noise in enumerate(NOISES):
            key = f"{rule}, noise {noise}"
            flat = flat_fraction(stair[rule][n])
            staircase[key] = {"flat_fraction": metrics.summarize(flat), "min_over_seeds": float(flat.min()),
                              "changes_per_100_steps": float(100 * (1 - flat.mean()))}
            conv[key] = convergence(long[rule][n][:, -1], long[rule][n][:, mid])
    return staircase, conv


def describe(staircase: dict, conv: dict, seeds: int, stair_steps: int, steps: int) -> tuple[bool, bool, str]:
    """``(staircase held, convergence held, verdict text)``. The staircase holds when, without noise, the
    95% CI of the mean flat fraction lies above 1/2 for both rules; convergence when >= 95% of seeds end
    below ``TOLERANCE`` with alpha = 1/(1+N) at every noise level."""
    s_ic, s_c = (staircase[f"{rule}, noise 0.0"]["flat_fraction"] for rule in RULES)
    staircase_held = s_ic["ci95_low"] > 0.5 and s_c["ci95_low"] > 0.5
    rm = [conv[f"inverse_count, noise {noise}"] for noise in NOISES]
    const = [conv[f"constant, noise {noise}"] for noise in NOISES]
    convergence_held = all(c["fraction_below_tolerance"] >= 0.95 for c in rm)
    text = (
        f"staircase: the sup-norm error is unchanged on {s_ic['mean']:.1%} (95% CI {s_ic['ci95_low']:.1%}-"
        f"{s_ic['ci95_high']:.1%}; lowest seed {staircase['inverse_count, noise 0.0']['min_over_seeds']:.1%}) of the "
        f"first {stair_steps} steps with 1/(1+N) and {s_c['mean']:.1%} with constant alpha (noise 0, {seeds} seeds); "
        f"convergence with alpha = 1/(1+N): {rm[0]['fraction_below_tolerance']:.1%} / "
        f"{rm[1]['fraction_below_tolerance']:.1%} of seeds end below {TOLERANCE} after {steps} steps (noise "
        f"{NOISES[0]} / {NOISES[1]}; median final error {rm[0]['final_error']['median']:.3g} / "
        f"{rm[1]['final_error']['median']:.3g}, median x{rm[0]['second_half_reduction']:.2f} / "
        f"x{rm[1]['second_half_reduction']:.2f} over the second half); constant alpha = {ALPHA}: "
        f"{const[0]['fraction_below_tolerance']:.1%} / {const[1]['fraction_below_tolerance']:.1%} (median "
        f"{const[0]['final_error']['median']:.3g} / {const[1]['final_error']['median']:.3g}; with noise "
        f"x{const[1]['second_half_reduction']:.2f} over the second half: {convergence_word(const[1]['second_half_reduction'])})"
    )
    return staircase_held, convergence_held, text


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Staircase (every-step logs of a first stretch) and convergence (a long run) for both rules."""
    seeds, stair_steps, steps = pick(size, tiny=(16, 100, 1_000), quick=(256, 1_000, 50_000),
                                     full=(1_000, 1_000, 50_000))
    log_every = steps // 100
    stair, long, timing = {}, {}, {}
    for rule in RULES:
        stair[rule], long[rule], timing[rule] = error_runs(rule, seeds, stair_steps, steps)
    t_long = np.arange(long["constant"].shape[-1]) * log_every
    staircase, conv = statistics(stair, long)
    staircase_held, convergence_held, text = describe(staircase, conv, seeds, stair_steps, steps)
    held = staircase_held and convergence_held
    summary = {
        "study": NAME,
        "title": "Tabular Q-learning on the Branching MDP: staircase and convergence",
        "claim": "The sup-norm error of tabular Q-learning is a staircase (one entry changes per step, the norm "
                 "moves only when the worst pair is updated), and under Robbins-Monro step sizes with coverage "
                 "Q_t -> Q*.",
        "setup": {"env": "Branching (default 5-state tree)", "noise": list(NOISES), "gamma": GAMMA,
                  "epsilon": EPSILON, "q0": 0.0, "step_sizes": list(RULES.values()), "seeds": seeds,
                  "steps": steps, "log_every": log_every, "staircase_steps": stair_steps,
                  "error": "||Q_t - Q*||_inf over the 10 non-terminal pairs (absolute; ||Q*||_inf = 1)",
                  "flat_fraction": "fraction of steps t = 1..T_s with e_t == e_{t-1} exactly (logged every step)",
                  "tolerance": TOLERANCE,
                  "second_half_reduction": "median(e_T) / median(e_{T/2}) over seeds"},
        "staircase": staircase,
        "convergence": conv,
        "staircase_held": staircase_held,
        "convergence_held": convergence_held,
        "timing": timing,
        "held": held,
        "verdict": verdict(held, text),
    }
    arrays = {"t_staircase": np.arange(stair_steps + 1), "t": t_long, "noise": np.asarray(NOISES),
              **{f"staircase_error_{rule}": stair[rule] for rule in RULES},
              **{f"error_{rule}": long[rule] for rule in RULES}}
    return write_outputs(out, summary, arrays, figure(stair, long, t_long, seeds))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
