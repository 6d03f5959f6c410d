"""Study 5 -- discount sweep on chain-64: does the error grow as gamma -> 1, although the net can represent Q*?

Setup (the seed document's, which showed 5 seeds): Chain(64), reward +1 on the last forward step,
the 257-parameter MLP (64 ReLU units, input ``[i / 64, a]``), semi-gradient Q-learning with plain
SGD, alpha = 5e-4, epsilon-greedy behaviour with epsilon = 0.3, 60k online steps (episodes cut at
1000 steps), gamma in {0.9, 0.95, 0.99, 0.995, 0.999, 0.9999} (effective horizons 10 ... 10^4), both
chain variants: "reset" (the other action returns to s_0; a walk to the terminal then succeeds with
probability about 0.85^64 ~ 3e-5 per attempt when the greedy action is forward) and "stay".

Claim tested: "as gamma -> 1 the effective horizon 1/(1 - gamma) grows and bootstrapping errors
compound more severely, even though the network has sufficient capacity to represent Q*".
Measured per seed at the end of training: ``||Q_T - Q*||_inf`` over the non-terminal pairs, absolute
(equal to the error relative to ``||Q*||_inf``, which is 1 for every gamma) and relative to the mean
``|Q*(s, a)|`` (which grows from about 0.1 to 1 with gamma, so the two can rank gammas differently).
Capacity: the same network fitted to ``Q*`` by plain regression (:func:`supervised_fit_error`) shows
how closely it can represent ``Q*`` at each gamma. Summaries over seeds: mean with its 95% t-interval, median, and the interquartile mean (IQM) with a
bootstrap 95% interval; a lane whose error is not finite or exceeds ``1 / (1 - gamma)`` (no return
of this MDP can) counts as diverged. Coverage: episodes that reached the terminal.

"Grows" is judged on the IQM (one exploding lane cannot decide it): the interval at the largest
gamma lies above the one at the smallest, and no step to a larger gamma goes significantly down
(:func:`jaxq.studies.verdicts.trend`). The verdict rests on the variants in which at least
``OBSERVED`` of the seeds reached the terminal at every gamma (the reward was actually observed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from jaxq import metrics, plots
from jaxq.envs.chain import q_star_closed_form
from jaxq.learners import MLPQ
from jaxq.studies.chain_depth import (
    ALPHA, EPSILON, LEARNER, TIME_LIMIT, VARIANTS, WIDTH, chain_mlp_sweep, grid, q_star_scales,
)
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import all_of, coverage, interval, slashed, trend, verdict, word

NAME = "discount_sweep"
DEPTH = 64
GAMMAS = (0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)
OBSERVED = 0.9  # a variant "observed the reward" when this fraction of seeds reached the terminal
FIT_LEARNING_RATE = 1e-2  # Adam, cosine-decayed to 0, for the supervised capacity check


def supervised_fit_error(gammas: Sequence[float], steps: int, inits: int) -> np.ndarray:
    """Capacity check: can the same 257-parameter network represent Q*?

    Fits ``MLP([i / 64, a])`` to the exact ``Q*`` of every variant and gamma by full-batch regression
    (mean squared error over the 128 pairs, Adam, ``steps`` steps) from ``inits`` random
    initialisations, and returns the smallest ``||Q_fit - Q*||_inf`` found, ``[variant, gamma]``: an
    upper bound on how well the network can represent Q*.
    """
    q = MLPQ(2, WIDTH)
    obs = (jnp.arange(DEPTH, dtype=jnp.float32) / DEPTH)[:, None]
    targets = jnp.asarray([[q_star_closed_form(DEPTH, g, v) for g in gammas] for v in VARIANTS], jnp.float32)
    optimizer = optax.adam(optax.cosine_decay_schedule(FIT_LEARNING_RATE, steps))

    def fit(key: jax.Array, target: jax.Array) -> jax.Array:
        predict = jax.vmap(q, (None, 0))
        loss = lambda p: jnp.mean((predict(p, obs) - target) ** 2)  # noqa: E731

        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        params = q.init(key, obs[0])
        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
        return jnp.max(jnp.abs(predict(params, obs) - target))

    per_target = jax.vmap(fit, (0, None))
    errors = jax.jit(jax.vmap(jax.vmap(per_target, (None, 0)), (None, 0)))(
        jax.random.split(jax.random.PRNGKey(0), inits), targets)
    return np.asarray(errors).min(-1)


def diverged(final: np.ndarray, gamma: float) -> np.ndarray:
    """Lanes whose final error is not finite or exceeds ``1 / (1 - gamma)``, the largest possible return
    (rewards are in [0, 1]), so no Q-value of this MDP can be that far from Q*."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(final) | (final > 1.0 / (1.0 - gamma))


def statistics(error: np.ndarray, terminations: np.ndarray, fit_error: np.ndarray,
               gammas: Sequence[float]) -> list[dict[str, Any]]:
    """Per variant and gamma: final error absolute and relative to mean |Q*| (all lanes, robust
    summaries included), diverged fraction, coverage and the supervised fit's error. ``error``:
    ``[variant, gamma, seed, t]``; ``terminations``: ``[variant, gamma, seed]``; ``fit_error``:
    ``[variant, gamma]`` (:func:`supervised_fit_error`)."""
    rows = []
    for v, variant in enumerate(VARIANTS):
        for g, gamma in enumerate(gammas):
            sup, mean_abs = q_star_scales(DEPTH, gamma, variant)
            final = error[v, g, :, -1]
            rows.append({
                "variant": variant, "gamma": gamma, "horizon": 1.0 / (1.0 - gamma),
                "q_star_sup": sup, "q_star_mean_abs": mean_abs,
                "final_error": metrics.summarize(final),
                "final_error_rel_sup": metrics.summarize(final / sup),
                "final_error_rel_mean": metrics.summarize(final / mean_abs),
                "nonfinite_fraction": float(np.mean(~np.isfinite(final))),
                "diverged_fraction": float(np.mean(diverged(final, gamma))),
                "coverage": coverage(terminations[v, g]),
                "supervised_fit_error": float(fit_error[v, g]),
            })
    return rows


def judge(rows: list[dict[str, Any]]) -> tuple[bool | None, dict[str, dict[str, Any]]]:
    """Per variant: does the IQM of the final error grow with gamma (absolute and relative to mean |Q*|),
    and was the reward observed? The claim is judged on the variants that observed it."""
    parts = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        parts[variant] = {
            "grows": trend([interval(r["final_error"], robust=True) for r in mine]),
            "grows_relative": trend([interval(r["final_error_rel_mean"], robust=True) for r in mine]),
            "reward_observed": min(r["coverage"]["reached_fraction"] for r in mine) >= OBSERVED,
        }
    observed = [p["grows"] for p in parts.values() if p["reward_observed"]]
    return (all_of(observed) if observed else None), parts


def describe(rows: list[dict[str, Any]], parts: dict[str, dict[str, Any]], seeds: int) -> str:
    """The verdict's numbers: which variants it rests on, then per variant the IQM error along gamma."""
    observed = [v for v in VARIANTS if parts[v]["reward_observed"]]
    rests = (f"rests on {', '.join(observed)} (reward observed by >= {OBSERVED:.0%} of seeds at every gamma)"
             if observed else f"no variant observed the reward in >= {OBSERVED:.0%} of seeds at every gamma")
    texts = []
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        gammas = slashed((r["gamma"] for r in mine), "g")
        iqm = slashed((r["final_error"]["iqm"] for r in mine), ".3g")
        rel = slashed((r["final_error_rel_mean"]["iqm"] for r in mine), ".3g")
        div = slashed((r["diverged_fraction"] for r in mine), ".0%")
        cov = slashed((r["coverage"]["reached_fraction"] for r in mine), ".0%")
        p = parts[variant]
        texts.append(
            f"{variant} (gamma {gammas}): IQM final error {iqm} (grows: {word(p['grows'])}; relative to mean |Q*| "
            f"{rel}, grows: {word(p['grows_relative'])}), diverged {div}, seeds that reached the terminal {cov}")
    fit = max(r["supervised_fit_error"] for r in rows)
    return (f"{seeds} seeds per setting; verdict {rests}; capacity: the same network fitted to Q* by regression "
            f"reaches ||Q - Q*||_inf <= {fit:.2g} at every gamma; " + "; ".join(texts))


def figure(t: np.ndarray, error: np.ndarray, rows: list[dict[str, Any]], gammas: Sequence[float], seeds: int,
           steps: int) -> Any:
    """(a) absolute and (b) relative final error against the horizon, (c) the stay runs over time,
    (d) coverage and divergence against the horizon."""
    fig, ((a, b), (c, d)) = plt.subplots(2, 2, figsize=(14, 9.5))
    horizon = 1.0 / (1.0 - np.asarray(gammas))
    for v, variant in enumerate(VARIANTS):
        mine = [r for r in rows if r["variant"] == variant]
        for ax, key in [(a, "final_error"), (b, "final_error_rel_mean")]:
            iqm = np.array([r[key]["iqm"] for r in mine])
            ci = np.array([r[key]["iqm_ci95"] for r in mine])
            ax.errorbar(horizon, iqm, yerr=[iqm - ci[:, 0], ci[:, 1] - iqm], marker="o", capsize=4, color=f"C{v}",
                        label=f"{variant}: IQM, 95% bootstrap CI")
            ax.plot(horizon, [r[key]["median"] for r in mine], linestyle=":", marker="x", color=f"C{v}",
                    label=f"{variant}: median")
        a.plot(horizon, [r["supervised_fit_error"] for r in mine], linestyle="--", marker="^", color=f"C{v}",
               alpha=0.6, label=f"{variant}: same net fitted to Q* by regression (capacity)")
        d.plot(horizon, [r["coverage"]["reached_fraction"] for r in mine], marker="o", color=f"C{v}",
               label=f"{variant}: seeds that reached the terminal")
        d.plot(horizon, [r["diverged_fraction"] for r in mine], marker="x", linestyle="--", color=f"C{v}",
               label=f"{variant}: diverged seeds (error > 1/(1-gamma) or not finite)")
    stay = VARIANTS.index("stay")
    for g, gamma in enumerate(gammas):
        plots.band(c, t, error[stay, g], f"gamma = {gamma:g}", color=plt.cm.viridis(g / max(len(gammas) - 1, 1)))
    if plots.spans_decades(error[stay]):
        c.set_yscale("log")
    a.set_ylabel("final ||Q_T - Q*||_inf (absolute = relative to ||Q*||_inf = 1)")
    b.set_ylabel("final ||Q_T - Q*||_inf / mean |Q*(s, a)|")
    a.set_title(f"(a) absolute final error after {steps} steps, {seeds} seeds per point", fontsize=9)
    scale = [r["q_star_mean_abs"] for r in rows]
    b.set_title(f"(b) the same, relative to mean |Q*| (from {min(scale):.2g} to {max(scale):.2g} across gamma)",
                fontsize=9)
    c.set_title(f"(c) stay variant: mean, band = 95% CI of the mean over {seeds} seeds", fontsize=9)
    c.set_xlabel("environment steps per seed")
    c.set_ylabel("||Q_t - Q*||_inf")
    d.set_title("(d) coverage and divergence", fontsize=9)
    d.set_ylabel("fraction of seeds")
    d.set_ylim(-0.05, 1.05)
    for ax in (a, b, d):
        ax.set_xscale("log")
        ax.set_xlabel("effective horizon 1 / (1 - gamma)")
    for ax in (a, b):
        ax.set_yscale("log")
    return plots.finish(fig, [a, b, c, d], f"Discount sweep on Chain(64): 257-parameter MLP, semi-gradient "
                        f"Q-learning, SGD alpha = {ALPHA}, epsilon = {EPSILON}, {steps} steps, gamma in "
                        f"{{{', '.join(f'{g:g}' for g in gammas)}}}, {seeds} seeds per setting")


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Final error, divergence and coverage on chain-64 across gamma, both variants."""
    seeds, steps, log_every = pick(size, tiny=(8, 1_200, 100), quick=(200, 60_000, 600), full=(1_000, 60_000, 600))
    fit_steps, fit_inits = pick(size, tiny=(1_500, 2), quick=(3_000, 4), full=(3_000, 8))
    result = chain_mlp_sweep((DEPTH,), GAMMAS, seeds, steps, log_every, False)
    fit_error = supervised_fit_error(GAMMAS, fit_steps, fit_inits)
    error = grid(result, "error")[:, 0]
    terminations = grid(result, "terminations")[:, 0, :, :, -1]
    rows = statistics(error, terminations, fit_error, GAMMAS)
    held, parts = judge(rows)
    t = np.asarray(result.coords["t"])
    summary = {
        "study": NAME,
        "title": "Discount sweep on chain-64: does the error grow as gamma -> 1? (257-parameter MLP)",
        "claim": "As gamma -> 1 the effective horizon 1/(1-gamma) grows and bootstrapping errors compound more "
                 "severely, even though the network has sufficient capacity to represent Q* (seed: 5 seeds).",
        "setup": {"env": f"Chain({DEPTH}), variants {list(VARIANTS)}, reward +1, episodes cut at {TIME_LIMIT} steps",
                  "gammas": list(GAMMAS), "learner": LEARNER, "alpha": ALPHA, "epsilon": EPSILON, "steps": steps,
                  "log_every": log_every, "seeds": seeds,
                  "error": "||Q_T - Q*||_inf over non-terminal pairs at the last step; absolute = relative to "
                           "||Q*||_inf (= 1 for every gamma); also relative to mean |Q*(s, a)|",
                  "diverged": "final error not finite or > 1/(1-gamma), the largest possible return",
                  "grows": "IQM bootstrap 95% CI at the largest gamma above the one at the smallest gamma, and no step "
                           "to a larger gamma significantly down",
                  "reward_observed": f">= {OBSERVED:.0%} of seeds reached the terminal at every gamma",
                  "supervised_fit": f"capacity check: the same network fitted to Q* by full-batch regression (MSE, "
                                    f"Adam, lr {FIT_LEARNING_RATE} cosine-decayed, {fit_steps} steps), best "
                                    f"||Q_fit - Q*||_inf of {fit_inits} initialisations"},
        "results": rows,
        "judgement": parts,
        "timing": result.timing,
        "held": held,
        "verdict": verdict(held, describe(rows, parts, seeds)),
    }
    arrays = {"t": t, "gamma": np.asarray(GAMMAS), "variant": np.asarray(VARIANTS), "error": error,
              "terminations": terminations, "supervised_fit_error": fit_error}
    return write_outputs(out, summary, arrays, figure(t, error, rows, GAMMAS, seeds, steps))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
