"""``jaxq bench checkpoint``: what checkpoints cost a sweep, and how a sweep scales from 1 to 10^6 lanes.

* Overhead, for any learner (:func:`overhead_rows`; here tabular Q-learning, and DQN on CartPole with
  10^5-slot replay buffers, the large state): the same sweep without checkpoints (the peer)
  and with checkpoints at the default interval (at most 10 saves per chunk, fewer where a save's
  cost would exceed 5 % of the time since the one before), alternately in one process, best of
  ``repeats`` each. ``blocking``: the seconds the saves block (checksums, the copy
  to the host, starting the write, and the wait for the last write) over the run seconds without
  checkpoints; ``overhead``: (run + checkpoint seconds) / run seconds without - 1, which adds what
  the background writes take from the computation (and the timing noise). Compile seconds apart.
* Scaling: lanes finished per second of a tabular sweep (Q-learning on Chain(32), 1000 steps per
  lane, 10 log points) from 1 to 10^6 lanes, no checkpoints.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from jaxq.bench.timing import report

SCALING_STEPS = 1_000


def _tabular(steps: int) -> Any:
    import jaxq
    from jaxq.learners import make_learner

    env, params = jaxq.make("Chain", depth=32, max_depth=32)
    return make_learner("q", env, params, steps=steps, log_every=steps // 10, step_size="constant",
                        log_bias=False, log_policy_value=False)


def _dqn(steps: int, buffer_size: int) -> Any:
    import jaxq
    from jaxq.learners import make_learner
    from jaxq.learners.dqn import PRESETS

    env, params = jaxq.make("CartPole-v1")
    options = {**PRESETS["CartPole-v1"]["options"], "buffer_size": buffer_size, "widths": (64, 64),
               "eval_every": steps // 2}
    if steps < options["learning_starts"] * 2:
        options.update(learning_starts=steps // 4, batch_size=min(options["batch_size"], steps // 4),
                       train_freq=steps // 10, gradient_steps=steps // 20)
    return make_learner("dqn", env, params, steps=steps, log_every=steps // 10, **options)


def _largest_step_bytes(folder: Path) -> int:
    steps = [p for p in folder.iterdir() if p.name.isdigit()]
    return max((sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in steps), default=0)


def overhead_rows(label: str, make: Callable[[], Any], axes: dict[str, list], seeds: int, *,
                  repeats: int = 2) -> list[dict[str, Any]]:
    """Two rows for ``make()``'s learner swept over ``axes`` x ``seeds``: without checkpoints, and with
    checkpoints at the default interval (with its overhead)."""
    from jaxq.sweep import sweep

    learner = make()
    plain, saved = [], []
    for _ in range(repeats):
        plain.append(sweep(learner, axes, seeds).timing)
        with tempfile.TemporaryDirectory() as folder:
            timing = sweep(learner, axes, seeds, checkpoint_dir=folder).timing
            saved.append({**timing, "step_bytes": _largest_step_bytes(Path(folder))})
    base = min(plain, key=lambda t: t["run_s"])
    best = min(saved, key=lambda t: t["run_s"] + t["checkpoint_s"])
    total = best["run_s"] + best["checkpoint_s"]
    common = {"lanes": base["lanes"], "chunks": base["chunks"]}
    return [
        {"method": f"{label}, no checkpoints", **common, "run_s": base["run_s"], "compile_s": base["compile_s"],
         "lanes_per_s": base["lanes"] / base["run_s"], "env_steps_per_s": base["env_steps_per_s"],
         "saves": 0, "ms_per_save": 0.0, "MB_per_save": 0.0, "blocking": 0.0, "overhead": 0.0},
        {"method": f"{label}, checkpointed", **common, "run_s": total,
         "compile_s": best["compile_s"], "lanes_per_s": best["lanes"] / total,
         "env_steps_per_s": best["env_steps"] / total, "saves": best["saves"],
         "ms_per_save": 1e3 * best["checkpoint_s"] / max(best["saves"], 1), "MB_per_save": best["step_bytes"] / 1e6,
         "blocking": best["checkpoint_s"] / base["run_s"], "overhead": total / base["run_s"] - 1},
    ]


def scaling_row(learner: Any, lanes: int) -> dict[str, Any]:
    """Lanes per second of one sweep of ``lanes`` lanes (one grid point, ``lanes`` seeds)."""
    from jaxq.sweep import sweep

    t = sweep(learner, {"gamma": [0.9], "alpha": [0.1], "epsilon": [0.3]}, seeds=lanes).timing
    return {"method": f"tabular, chain-32, {learner.steps} steps", "lanes": lanes, "chunks": t["chunks"],
            "run_s": t["run_s"], "compile_s": t["compile_s"], "lanes_per_s": lanes / t["run_s"],
            "env_steps_per_s": t["env_steps_per_s"], "saves": 0, "ms_per_save": 0.0, "MB_per_save": 0.0,
            "blocking": 0.0, "overhead": 0.0}


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark: checkpoint overhead of a tabular sweep and of a DQN run with large replay
    buffers, then lane scaling of the tabular sweep, in one process."""
    steps = 500 if quick else 200_000
    seeds = 16 if quick else 1024
    cases = [  # (label, learner factory, axes, seeds): any learner can be added here
        (f"tabular, depth {{2, 8, 32}} x gamma {{0.9, 0.99}} x {seeds} seeds, {steps} steps",
         lambda: _tabular(steps), {"depth": [2, 8, 32], "gamma": [0.9, 0.99], "alpha": [0.1], "epsilon": [0.3]},
         seeds),
    ]
    dqn_steps, dqn_buffer, dqn_seeds = (400, 1_000, 4) if quick else (20_000, 100_000, 64)
    cases.append((f"DQN, CartPole-v1, [64, 64], {dqn_buffer:,}-slot buffers, {dqn_seeds} seeds, {dqn_steps:,} steps",
                   lambda: _dqn(dqn_steps, dqn_buffer), {}, dqn_seeds))
    rows: list[dict[str, Any]] = []
    for label, make, axes, n in cases:
        rows.extend(overhead_rows(label, make, axes, n, repeats=1 if quick else 3))
    learner = _tabular(200 if quick else SCALING_STEPS)
    for lanes in ([1, 256] if quick else [1, 16, 256, 4096, 65_536, 1_000_000]):
        rows.append(scaling_row(learner, lanes))
    return report(
        "checkpoint", rows, quick=quick, peers={},
        notes=("blocking = seconds the saves block / run seconds without checkpoints; overhead = (run + "
               "checkpoint seconds) / run seconds without checkpoints - 1 (it includes what the background writes "
               "take from the run, and the noise of a shared machine), best of 3 each, measured alternately in one "
               "process; checkpoints at the default interval (at most 10 saves per chunk, each at most 5 % of the "
               "time since the last); lanes_per_s = lanes / run seconds (per lane: the exact Q* at init, 1000 "
               "steps, 11 log points of ||Q - Q*||)."),
        headline_overhead=rows[1]["overhead"],
    )
