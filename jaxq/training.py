"""Deep-RL runs end to end: a sweep of agents, their final greedy returns, how many solved the task,
when, and every agent's network saved as a policy (``jaxq train`` and the DQN studies).

``train(learner, axes, seeds, ...)`` runs :func:`jaxq.sweep.sweep`, then plays ``final_episodes``
greedy episodes with every lane's final network (all lanes vmapped, on fresh evaluation states) and
returns a :class:`TrainResult`. ``write_training`` writes its summary, curves, figure and policies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxq import metrics, outputs, policy
from jaxq.learners.dqn import greedy_returns
from jaxq.sweep import SweepResult, sweep
from jaxq.validation import check_count, check_range

FINAL_STREAM = 0x46494E  # fold-in tag of the final evaluation's randomness


@dataclasses.dataclass
class TrainResult:
    """A sweep of agents and their final greedy returns.

    Attributes:
        sweep: the :class:`~jaxq.sweep.SweepResult` (curves with named axes, final networks).
        final_return: ``[*grid, seeds]`` mean return of ``final_episodes`` greedy episodes per agent.
        final_episodes: episodes per agent behind ``final_return``.
        threshold: the return at which the task counts as solved (None: not judged).
    """

    sweep: SweepResult
    final_return: np.ndarray
    final_episodes: int
    threshold: float | None


def lane_hparams(learner: Any, result: SweepResult) -> dict[str, np.ndarray]:
    """Every lane's hyper-parameters (``[*grid, seeds]`` each), encoded as the sweep encoded them."""
    shape = [len(result.coords[a]) for a in result.grid_axes] + [len(result.coords["seed"])]
    columns = {}
    for name, default in learner.defaults().items():
        if name in result.grid_axes:
            axis = result.grid_axes.index(name)
            values = np.asarray([learner.encode(name, v) for v in result.coords[name]])
            columns[name] = np.broadcast_to(values.reshape([-1 if i == axis else 1 for i in range(len(shape))]), shape)
        else:
            columns[name] = np.broadcast_to(np.asarray(learner.encode(name, default)), shape)
    return columns


def final_greedy_returns(learner: Any, result: SweepResult, episodes: int, seed: int = 0,
                         lanes_per_call: int = 256) -> np.ndarray:
    """``[*grid, seeds]``: each agent's final network flown for ``episodes`` greedy episodes."""
    hp = lane_hparams(learner, result)
    shape = next(iter(hp.values())).shape
    flat_hp = {k: np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else None).reshape(-1)
               for k, v in hp.items()}
    flat_params = jax.tree.map(lambda x: x.reshape(-1, *x.shape[len(shape):]), result.finals)
    n = int(np.prod(shape))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), FINAL_STREAM + i))(jnp.arange(n))
    play = jax.jit(jax.vmap(lambda p, h, k: greedy_returns(learner, p, h, k, episodes)))
    width = min(lanes_per_call, n)  # every call the same width (the last one padded): one compile
    out = []
    for start in range(0, n, width):
        rows = np.minimum(np.arange(start, start + width), n - 1)
        take = lambda x: jnp.asarray(x[rows])  # noqa: E731
        out.append(np.asarray(play(jax.tree.map(take, flat_params), {k: take(v) for k, v in flat_hp.items()},
                                   keys[rows]))[:n - start])
    return np.concatenate(out).reshape(shape)


def train(learner: Any, axes: dict[str, Any] | None = None, seeds: int = 1, *, final_episodes: int = 100,
          threshold: float | None = None, **sweep_options: Any) -> TrainResult:
    """Sweep ``learner`` (see :func:`jaxq.sweep.sweep`), then fly every final network greedily.

    Raises:
        ValueError: before anything runs, for ``final_episodes < 1`` or a non-finite ``threshold``.
    """
    check_count(final_episodes, "final_episodes")
    if threshold is not None:
        check_range("threshold", threshold)
    result = sweep(learner, axes, seeds, **sweep_options)
    final = final_greedy_returns(learner, result, final_episodes, seed=sweep_options.get("seed", 0))
    return TrainResult(sweep=result, final_return=final, final_episodes=final_episodes, threshold=threshold)


def steps_to_threshold(t: np.ndarray, eval_return: np.ndarray, threshold: float) -> np.ndarray:
    """Per lane (``eval_return``: ``[..., T]``, NaN where not evaluated), the first logged env step at
    which the greedy evaluation return reached ``threshold``; NaN if it never did."""
    reached = np.nan_to_num(eval_return, nan=-np.inf) >= threshold
    first = np.argmax(reached, axis=-1)
    return np.where(reached.any(axis=-1), np.asarray(t, np.float64)[first], np.nan)


def training_rows(run: TrainResult) -> list[dict[str, Any]]:
    """Per grid point: the sweep's summaries, the final greedy return over seeds (mean, std, 95% CI,
    median, IQM with bootstrap CI), and with a threshold the fraction of seeds solved at the end
    (final greedy return >= threshold) and the steps to threshold (first evaluation reaching it)."""
    result, rows = run.sweep, outputs.grid_summary(run.sweep)
    t = np.asarray(result.coords["t"])
    for (index, _), row in zip(result.grid_points(), rows):
        final = run.final_return[index]
        row["final_greedy_return"] = {**metrics.summarize(final), "episodes_per_seed": run.final_episodes}
        if run.threshold is not None:
            row["solved_fraction"] = float(np.mean(final >= run.threshold))
            if "eval_return" in result.logs:
                steps = steps_to_threshold(t, result.logs["eval_return"][index], run.threshold)
                reached = steps[np.isfinite(steps)]
                row["steps_to_threshold"] = {
                    "reached_fraction": float(np.mean(np.isfinite(steps))),
                    "median": float(np.median(reached)) if reached.size else float("nan"),
                    "per_seed": steps.tolist(),
                }
    return rows


def write_training(run: TrainResult, out: Path, learner: Any, *, title: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.json``, ``curves.npz`` (with ``final_return``), ``sweep.png`` and the policies."""
    policy.save_policies(out, run.sweep, learner)
    return outputs.write_sweep(run.sweep, out, title=title, rows=training_rows(run),
                               arrays={"final_return": run.final_return}, extra={
                                   **(extra or {}), "threshold": run.threshold, "final_episodes": run.final_episodes,
                                   "policies": [policy.POLICY_ARRAYS, policy.POLICY_INFO]})
