"""Study 9 -- DQN vs Double DQN on the LunarLander port: how many seeds solve it, and do the
policies trained in the port fly Gymnasium's real LunarLander-v3?

Setup: ``jaxq train dqn LunarLander-v3``'s preset (see :data:`jaxq.learners.dqn.PRESETS`) with the
leaf ``double`` swept over {0, 1}: every seed of both variants is an independent agent of ONE
jitted call (paired seeds: seed ``s`` starts from the same key in both). Reported per variant:

* learning curves (training return and greedy evaluation return, mean and 95% CI over seeds);
* the final greedy return: each final network flown for ``final_episodes`` greedy episodes in the
  port (mean, 95% CI, IQM over seeds), and the fraction of seeds whose mean is >= 200 (solved);
* steps to threshold: the first evaluation (``eval_episodes`` greedy episodes) at or above 200;
* the same final networks flown in Gymnasium's Box2D ``LunarLander-v3`` (``gym_episodes`` episodes
  each, when gymnasium[box2d] is installed), paired with their port returns.

Claim tested: DQN solves the task (mean final greedy return >= 200 over seeds), Double DQN does at
least as well, and the port's returns carry over to Box2D (the mean paired difference Box2D - port
lies within +-10 points).

The full size (16 seeds per variant, the preset's 3 x 10^5 env steps) is a separate command,
``python experiments/dqn_lunar.py``; ``jaxq reproduce`` runs the "quick" size, whose budget allows
far fewer steps -- its verdict then says how far training got, not whether DQN can solve the task.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import jaxq
from jaxq import metrics, plots, training
from jaxq.learners import make_learner
from jaxq.learners.dqn import PRESETS
from jaxq.policy import Policy, lane_policies
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import verdict

NAME = "dqn_lunar"
ENV = "LunarLander-v3"
SOLVED = PRESETS[ENV]["solved"]
VARIANTS = ("DQN", "Double DQN")  # double = 0, 1
TRANSFER_TOLERANCE = 10.0  # points of return: "the same score in Box2D"


@dataclasses.dataclass(frozen=True)
class Size:
    seeds: int
    steps: int
    final_episodes: int
    gym_episodes: int
    options: dict[str, Any]


def size_of(size: str) -> Size:
    """The full size is the preset; the smaller ones shrink the network, the run and the buffer."""
    preset = PRESETS[ENV]["options"]
    small = {**preset, "widths": (64, 64), "batch_size": 64, "buffer_size": 20_000, "learning_starts": 2_000,
             "n_steps": 3}
    return pick(
        size,
        tiny=Size(2, 2_000, 2, 1, {**small, "widths": (16,), "buffer_size": 1_000, "learning_starts": 256,
                                   "eval_every": 1_000, "eval_episodes": 2}),
        quick=Size(8, 40_000, 20, 5, {**small, "eval_every": 10_000, "eval_episodes": 5}),
        full=Size(16, PRESETS[ENV]["steps"], 100, 100, dict(preset)),
    )


def fly_in_gymnasium(policies: list[Policy], episodes: int, seed: int = 0) -> np.ndarray | None:
    """``[lanes]`` mean return of each policy over ``episodes`` episodes of Gymnasium's Box2D
    LunarLander-v3 (``reset(seed=seed + e)``), or None without gymnasium[box2d]."""
    try:
        import gymnasium as gym
    except ImportError:
        return None
    try:
        env = gym.make(ENV)
    except Exception:  # gymnasium without Box2D
        return None
    means = []
    for policy in policies:
        total = 0.0
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                total += float(reward)
                done = terminated or truncated
        means.append(total / episodes)
    env.close()
    return np.asarray(means)


def statistics(run: training.TrainResult, gym_returns: np.ndarray | None) -> list[dict[str, Any]]:
    """Per variant: final greedy return in the port, solved fraction, steps to threshold, Box2D returns."""
    rows = []
    for v, (row, label) in enumerate(zip(training.training_rows(run), VARIANTS)):
        entry = {"variant": label, "final_greedy_return": row["final_greedy_return"],
                 "solved_fraction": row["solved_fraction"], "steps_to_threshold": row.get("steps_to_threshold"),
                 "final_train_return": row.get("final_train_return")}
        if gym_returns is not None:
            port, box2d = run.final_return[v], gym_returns[v]
            entry["gymnasium_return"] = metrics.summarize(box2d)
            entry["gymnasium_solved_fraction"] = float(np.mean(box2d >= SOLVED))
            entry["box2d_minus_port"] = metrics.summarize(box2d - port)
        rows.append(entry)
    return rows


def judge(rows: list[dict[str, Any]], paired: dict[str, float]) -> tuple[bool | None, dict[str, bool | None]]:
    """Parts: both variants solve (mean final greedy return >= 200); Double DQN is not worse (the 95%
    CI of the paired seed-by-seed difference Double - DQN reaches 0 or above); Box2D matches the port
    within the tolerance for both variants."""
    parts: dict[str, bool | None] = {
        "solves": all(r["final_greedy_return"]["mean"] >= SOLVED for r in rows),
        "double_at_least_as_good": bool(paired["ci95_high"] >= 0.0),
    }
    if "box2d_minus_port" in rows[0]:
        gaps = [r["box2d_minus_port"] for r in rows]
        parts["transfers"] = all(abs(g["mean"]) <= TRANSFER_TOLERANCE for g in gaps)
    values = list(parts.values())
    held = True if all(values) else (False if not any(values) else None)
    return held, parts


def describe(rows: list[dict[str, Any]], paired: dict[str, float], size: Size) -> str:
    text = []
    for r in rows:
        f = r["final_greedy_return"]
        s = r["steps_to_threshold"] or {}
        part = (f"{r['variant']}: final greedy return {f['mean']:.1f} (CI {f['ci95_low']:.1f}-{f['ci95_high']:.1f}, "
                f"IQM {f['iqm']:.1f}), {r['solved_fraction']:.0%} of {size.seeds} seeds solved")
        if s:
            part += f", {s['reached_fraction']:.0%} reached 200 in an evaluation (median step {s['median']:.0f})"
        if "gymnasium_return" in r:
            g, d = r["gymnasium_return"], r["box2d_minus_port"]
            part += (f"; in Box2D {g['mean']:.1f} ({r['gymnasium_solved_fraction']:.0%} solved), "
                     f"Box2D - port {d['mean']:+.1f} (CI {d['ci95_low']:+.1f} to {d['ci95_high']:+.1f})")
        text.append(part)
    text.append(f"paired Double - DQN {paired['mean']:+.1f} (CI {paired['ci95_low']:+.1f} to {paired['ci95_high']:+.1f})")
    return f"after {size.steps:,} env steps per seed: " + "; ".join(text)


def figure(run: training.TrainResult, rows: list[dict[str, Any]], gym_returns: np.ndarray | None,
           size: Size) -> Any:
    """(a) training and (b) greedy evaluation returns with bands, (c) final returns per seed: port vs Box2D."""
    result = run.sweep
    t = np.asarray(result.coords["t"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for v, label in enumerate(VARIANTS):
        train = result.logs["train_return"][v]
        plots.band(axes[0], t, train, label)
        if "eval_return" in result.logs:
            ev = result.logs["eval_return"][v]
            points = np.isfinite(ev).any(axis=0)
            plots.band(axes[1], t[points], ev[:, points], label, marker=".")
        port = run.final_return[v]
        x = np.full(port.shape, v, float) + np.linspace(-0.15, 0.15, port.size)
        axes[2].scatter(x - 0.05, port, s=14, label="port" if v == 0 else None, color="C0")
        if gym_returns is not None:
            axes[2].scatter(x + 0.05, gym_returns[v], s=14, marker="x", color="C3",
                            label="Box2D (same networks)" if v == 0 else None)
    for ax in axes:
        ax.axhline(SOLVED, color="gray", lw=0.8, ls="--")
    axes[0].set(title="training return (episodes ended in each interval)", xlabel="env steps per seed",
                ylabel="undiscounted return")
    axes[1].set(title="greedy evaluation return", xlabel="env steps per seed", ylabel="undiscounted return")
    axes[2].set(title=f"final greedy return per seed ({size.final_episodes} port / {size.gym_episodes} Box2D "
                "episodes)", xticks=[0, 1], xticklabels=list(VARIANTS), ylabel="mean return")
    return plots.finish(fig, axes, f"DQN vs Double DQN on the LunarLander-v3 port: {size.seeds} seeds each in one "
                        f"call, {size.steps:,} env steps per seed; bands: 95% CI of the mean over seeds; "
                        f"dashed: solved ({SOLVED:g})")


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Both variants in one call, their final greedy returns in the port and in Box2D."""
    s = size_of(size)
    env, params = jaxq.make(ENV)
    learner = make_learner("dqn", env, params, steps=s.steps, log_every=s.options["eval_every"], **s.options)
    t0 = time.perf_counter()
    result = training.train(learner, {"double": [0, 1]}, seeds=s.seeds, final_episodes=s.final_episodes,
                            threshold=SOLVED)
    train_s = time.perf_counter() - t0
    policies = lane_policies(result.sweep, learner)
    t0 = time.perf_counter()
    flown = fly_in_gymnasium(policies, s.gym_episodes)
    gym_returns = None if flown is None else flown.reshape(len(VARIANTS), s.seeds)
    rows = statistics(result, gym_returns)
    paired = metrics.summarize(result.final_return[1] - result.final_return[0])
    held, parts = judge(rows, paired)
    summary = {
        "study": NAME,
        "title": "DQN vs Double DQN on the LunarLander-v3 port, and their policies in Box2D",
        "claim": f"DQN solves LunarLander (mean final greedy return >= {SOLVED:g} over seeds), Double DQN does at "
                 f"least as well, and the policies score the same in Gymnasium's Box2D LunarLander-v3 (within "
                 f"+-{TRANSFER_TOLERANCE:g}).",
        "setup": {"env": ENV, "seeds_per_variant": s.seeds, "steps": s.steps, "final_episodes": s.final_episodes,
                  "gym_episodes": s.gym_episodes, "learner": learner.describe(),
                  "hyperparameters": {k: v for k, v in learner.defaults().items()
                                      if k in learner.hyperparameters and k != "double"},
                  "box2d": "gymnasium LunarLander-v3" if gym_returns is not None else "not installed"},
        "results": rows,
        "double_minus_dqn": paired,
        "parts": parts,
        "timing": {**result.sweep.timing, "train_and_final_eval_s": train_s,
                   "gymnasium_s": time.perf_counter() - t0},
        "held": held,
        "verdict": verdict(held, describe(rows, paired, s)),
    }
    arrays = {"t": np.asarray(result.sweep.coords["t"]), "final_return": result.final_return,
              **{k: v for k, v in result.sweep.logs.items()}}
    if gym_returns is not None:
        arrays["gymnasium_return"] = gym_returns
    return write_outputs(out, summary, arrays, figure(result, rows, gym_returns, s))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
