"""Episode bookkeeping and greedy evaluation: what every learner logs on every environment.

:class:`EpisodeStats` follows the training episodes of one agent (or of each of its parallel
environments: every field then has a leading ``[E]`` axis). Between two log points it accumulates
the episodes that ended, so the log shows

    train_return = (sum of returns of the episodes that ended in the interval) / (their number),
    train_length = likewise for their lengths,                  (NaN when no episode ended)

and ``episodes`` (their number). ``terminations`` counts, over the whole run, the episodes that
ended in a terminal state (not by a time limit).

:func:`evaluate` plays ``K`` fresh episodes with a greedy (or ``epsilon``-greedy) policy on
environment states of its own, all ``K`` in parallel, until every one has terminated or been
truncated; the training episodes are untouched.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxq.learners.exploration import epsilon_greedy_action

# (obs, env_state) -> [A] action values of the policy being evaluated
ValueFunction = Callable[[Any, Any], jax.Array]


@struct.dataclass
class EpisodeStats:
    """Running training-episode statistics (scalars, or ``[E]`` for ``E`` parallel envs).

    Attributes:
        current_return, current_length: the episode in progress.
        interval_return, interval_episodes: sum of returns and number of the episodes that ended
            since the last log point.
        interval_steps: steps taken since the last log point, so that the summed length of the
            ended episodes is ``interval_steps + length_at_interval_start - current_length``.
        length_at_interval_start: ``current_length`` at the last log point.
        terminations: episodes that ended in a terminal state since the start of the run.
    """

    current_return: jax.Array
    current_length: jax.Array
    interval_return: jax.Array
    interval_episodes: jax.Array
    interval_steps: jax.Array
    length_at_interval_start: jax.Array
    terminations: jax.Array

    @classmethod
    def zeros(cls, shape: tuple[int, ...] = ()) -> "EpisodeStats":
        f, i = jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.int32)
        return cls(f, i, f, i, i, i, i)

    def record(self, reward: jax.Array, terminated: jax.Array, truncated: jax.Array) -> "EpisodeStats":
        """Add one step's reward; close the episode when it terminated or was truncated."""
        done = jnp.logical_or(terminated, truncated)
        ret = self.current_return + reward
        return EpisodeStats(
            current_return=jnp.where(done, 0.0, ret),
            current_length=jnp.where(done, 0, self.current_length + 1),
            interval_return=self.interval_return + jnp.where(done, ret, 0.0),
            interval_episodes=self.interval_episodes + done.astype(jnp.int32),
            interval_steps=self.interval_steps + 1,
            length_at_interval_start=self.length_at_interval_start,
            terminations=self.terminations + terminated.astype(jnp.int32),
        )

    def logs(self) -> dict[str, jax.Array]:
        """``train_return``, ``train_length`` (means over the episodes that ended in the interval,
        NaN if none did), ``episodes`` (their number) and ``terminations`` (whole run)."""
        n = jnp.sum(self.interval_episodes)
        lengths = jnp.sum(self.interval_steps + self.length_at_interval_start - self.current_length)
        mean = lambda total: jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan)  # noqa: E731
        return {
            "train_return": mean(jnp.sum(self.interval_return)).astype(jnp.float32),
            "train_length": mean(lengths.astype(jnp.float32)).astype(jnp.float32),
            "episodes": n,
            "terminations": jnp.sum(self.terminations),
        }

    def next_interval(self) -> "EpisodeStats":
        """The statistics at the start of a new log interval."""
        zero_f, zero_i = jnp.zeros_like(self.interval_return), jnp.zeros_like(self.interval_episodes)
        return self.replace(interval_return=zero_f, interval_episodes=zero_i, interval_steps=zero_i,
                            length_at_interval_start=self.current_length)


def evaluate(env: Any, env_params: Any, q_values: ValueFunction, key: jax.Array, episodes: int,
             epsilon: jax.Array | float = 0.0) -> dict[str, jax.Array]:
    """Mean undiscounted return and length of ``episodes`` episodes of the ``epsilon``-greedy policy
    of ``q_values`` (``epsilon = 0``: greedy, ties broken at random), played in parallel from fresh
    resets until each has terminated or reached the environment's time limit.

    Returns ``{"eval_return": mean return, "eval_length": mean length}``.
    """
    reset_keys = jax.random.split(jax.random.fold_in(key, 0), episodes)
    obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(reset_keys, env_params)
    zeros = jnp.zeros(episodes, jnp.float32)

    def act_and_step(obs, state, done, step_key):
        policy_key, env_key = jax.random.split(step_key)
        bits = jax.random.bits(policy_key, (2,), jnp.uint32)
        action = epsilon_greedy_action(q_values(obs, state), epsilon, bits)
        next_obs, next_state, reward, terminated, _ = env.step_env(env_key, state, action, env_params)
        ended = jnp.logical_or(terminated, env.is_truncated(next_state, params=env_params))
        keep = lambda new, old: jax.lax.select(done, old, new)  # noqa: E731
        return (jax.tree.map(keep, next_obs, obs), jax.tree.map(keep, next_state, state),
                jnp.where(done, 0.0, reward), jnp.logical_or(done, ended))

    def body(loop):
        t, obs, state, done, ret, length = loop
        keys = jax.random.split(jax.random.fold_in(key, t + 1), episodes)
        obs, state, reward, now_done = jax.vmap(act_and_step)(obs, state, done, keys)
        return t + 1, obs, state, now_done, ret + reward, length + (~done).astype(jnp.float32)

    loop = (jnp.int32(0), obs, state, jnp.zeros(episodes, bool), zeros, zeros)
    _, _, _, _, ret, length = jax.lax.while_loop(lambda c: ~jnp.all(c[3]), body, loop)
    return {"eval_return": jnp.mean(ret), "eval_length": jnp.mean(length)}
