"""Tabular TD control on a finite environment, one table per lane.

Each step: act with the carried action, observe ``(s, a, r, s')``, build the successor summary
(:class:`jaxq.td.Bootstrap`), compute ``y = target(r, gamma (1 - terminated), successor)`` --
or its n-step form -- and move one entry: ``Q(s, a) += alpha_t (y - Q(s, a))``.

Step sizes: ``constant`` (``alpha``), ``inverse_time`` (``1 / (t + 1)``), ``inverse_count``
(``1 / (1 + N(s, a))``, ``N`` the number of earlier updates of the pair in the updated table).
The next action is drawn epsilon-greedily from the table before the update (SARSA-style ordering,
so on-policy targets see the action that is actually taken next). Truncated episodes bootstrap from
their last state; terminated ones do not.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxq import exact, td
from jaxq.envs.core import FiniteEnv, env_step
from jaxq.hparams import HParams, gamma_hparam, positive_hparam, real_hparam
from jaxq.learners.base import OnlineLearner
from jaxq.learners.episodes import EpisodeStats
from jaxq.learners.exact_metrics import value_metrics
from jaxq.learners.exploration import (
    EXPLORATION_HPARAMS,
    SCHEDULES,
    coin_from_bits,
    epsilon_at,
    epsilon_greedy_action,
    successor,
)
from jaxq.validation import check_choice, check_count

STEP_SIZES = ("constant", "inverse_time", "inverse_count")


@struct.dataclass
class Window:
    """The last ``n`` transitions (oldest first) for n-step targets."""

    states: jax.Array
    actions: jax.Array
    rewards: jax.Array
    discounts: jax.Array
    filled: jax.Array


@struct.dataclass
class TabularCarry:
    q: jax.Array  # [E, S, A], E = 1 or 2 estimators
    counts: jax.Array  # [E, S, A] updates of each pair in each table (inverse_count only)
    q_star: jax.Array  # [S, A] exact solution for this lane's MDP and gamma; () without exact metrics
    env_state: Any
    action: jax.Array  # action to take in env_state
    window: Window
    key: jax.Array
    t: jax.Array
    episodes: EpisodeStats


class TabularLearner(OnlineLearner):
    """Tabular Q-learning and its variants (the TD target is a function argument).

    Args:
        env: a :class:`~jaxq.envs.FiniteEnv`.
        env_params: its params (fields may be swept).
        steps: environment steps per lane.
        log_every: steps between logged metrics.
        target: a TD target ``(reward, discount, Bootstrap) -> y`` from :mod:`jaxq.td` or your own.
        estimators: 1, or 2 for a double estimator (each step updates one table chosen by a fair
            coin, bootstrapping from the other).
        n_steps: length of the n-step return.
        step_size: "constant", "inverse_time" or "inverse_count".
        exploration: epsilon schedule, "constant" or "linear".
        log_bias, log_policy_value: with exact metrics, also log the per-state bias and the greedy
            policy's value.
        eval_every, eval_episodes, exact_metrics: see :class:`~jaxq.learners.base.OnlineLearner`.
    """

    hyperparameters = {
        "gamma": gamma_hparam(0.9),
        "alpha": positive_hparam("alpha", 0.1, "constant step size, in (0, 1]", high=1.0),
        "q_init": real_hparam("q_init", 0.0, "initial value of every table entry (optimism)"),
        **EXPLORATION_HPARAMS,
    }

    def __init__(self, env: FiniteEnv, env_params: Any, steps: int, log_every: int, *,
                 target: td.TDTarget = td.q_learning, estimators: int = 1, n_steps: int = 1,
                 step_size: str = "inverse_count", exploration: str = "constant",
                 log_bias: bool = True, log_policy_value: bool = True, **contract: Any):
        if not isinstance(env, FiniteEnv):
            raise ValueError(f"env={env.name!r} is not allowed; tabular learners need a finite environment "
                             "with a tabular model (Chain, Branching, GridWorld)")
        super().__init__(env, env_params, steps, log_every, **contract)
        if estimators not in (1, 2):
            raise ValueError(f"estimators={estimators!r} is not allowed; use 1 or 2")
        self.target, self.estimators = target, estimators
        self.n_steps = check_count(n_steps, "n_steps")
        self.step_size = check_choice("step_size", step_size, STEP_SIZES)
        self.exploration = check_choice("exploration", exploration, SCHEDULES)
        self.log_bias, self.log_policy_value = log_bias, log_policy_value

    def static_config(self) -> dict[str, Any]:
        return {
            "target": getattr(self.target, "__name__", repr(self.target)),
            "estimators": self.estimators,
            "n_steps": self.n_steps,
            "step_size": self.step_size,
            "exploration": self.exploration,
        }

    def init(self, key: jax.Array, hp: HParams) -> TabularCarry:
        params = self.params_for(hp)
        S, A, n = self.env.num_states, self.env.num_actions, self.n_steps
        key, reset_key, action_key = jax.random.split(key, 3)
        _, env_state = self.env.reset_env(reset_key, params)
        q = jnp.full((self.estimators, S, A), hp["q_init"], jnp.float32)
        bits = jax.random.bits(action_key, (2,), jnp.uint32)
        action = epsilon_greedy_action(
            q.sum(0)[self.env.state_index(env_state)], hp["epsilon"], bits
        )
        zeros = jnp.zeros(n, jnp.float32)
        return TabularCarry(
            q=q,
            counts=jnp.zeros((self.estimators, S, A), jnp.float32),
            q_star=exact.q_star(self.env.tabular(params), hp["gamma"]) if self.exact_metrics else (),
            env_state=env_state,
            action=action,
            window=Window(jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.int32), zeros, zeros, jnp.int32(0)),
            key=key,
            t=jnp.int32(0),
            episodes=EpisodeStats.zeros(),
        )

    def _alpha(self, hp: HParams, t: jax.Array, count: jax.Array) -> jax.Array:
        if self.step_size == "constant":
            return hp["alpha"]
        if self.step_size == "inverse_time":
            return 1.0 / (t + 1.0)
        return 1.0 / (1.0 + count)

    def step(self, carry: TabularCarry, hp: HParams, bits: jax.Array, env_key: jax.Array) -> TabularCarry:
        params = self.params_for(hp)
        gamma, epsilon = hp["gamma"], epsilon_at(carry.t, hp, self.exploration)
        s, a = self.env.state_index(carry.env_state), carry.action
        out = env_step(self.env, env_key, carry.env_state, a, params)
        s_next, s_restart = self.env.state_index(out.next_state), self.env.state_index(out.state)
        e = coin_from_bits(bits[1]) if self.estimators == 2 else 0
        w = carry.window
        if self.n_steps == 1:
            s_upd, a_upd = s, a
        else:  # the oldest transition of the window once this one is pushed
            s_upd, a_upd = w.states[1], w.actions[1]

        # Every value this step reads, in one gather: rows [s', restart state, updated state].
        rows = carry.q[:, jnp.stack([s_next, s_restart, s_upd])]  # [E, 3, A]
        behaviour = rows.sum(0)
        after = successor(rows[e, 0], rows[(1 - e) if self.estimators == 2 else 0, 0], epsilon, bits,
                          behaviour=behaviour[0])
        discount = gamma * (1.0 - out.terminated)
        if self.n_steps == 1:
            y, do_update, window = self.target(out.reward, discount, after), jnp.float32(1.0), w
        else:
            # A truncated step folds its bootstrap into the reward and cuts the return there.
            reward = jnp.where(out.truncated, self.target(out.reward, gamma, after), out.reward)
            push = lambda buf, x: jnp.concatenate([buf[1:], x[None].astype(buf.dtype)])  # noqa: E731
            window = Window(
                states=push(w.states, s), actions=push(w.actions, a), rewards=push(w.rewards, reward),
                discounts=push(w.discounts, jnp.where(out.done, 0.0, gamma)),
                filled=jnp.minimum(w.filled + 1, self.n_steps),
            )
            G, D = td.n_step_return(window.rewards, window.discounts)
            y = self.target(G, D, after)
            do_update = (window.filled == self.n_steps).astype(jnp.float32)

        counts = carry.counts
        alpha = self._alpha(hp, carry.t, counts[e, s_upd, a_upd])
        if self.step_size == "inverse_count":
            counts = counts.at[e, s_upd, a_upd].add(do_update)
        q = carry.q.at[e, s_upd, a_upd].add(do_update * alpha * (y - rows[e, 2, a_upd]))
        restart_action = epsilon_greedy_action(behaviour[1], epsilon, bits)
        return carry.replace(
            q=q,
            counts=counts,
            env_state=out.state,
            action=jnp.where(out.done, restart_action, after.action),
            window=window,
            t=carry.t + 1,
            episodes=carry.episodes.record(out.reward, out.terminated, out.truncated),
        )

    def metrics(self, carry: TabularCarry, hp: HParams) -> dict[str, jax.Array]:
        """With exact metrics: :func:`~jaxq.learners.exact_metrics.value_metrics` of the table (the
        mean of the estimators)."""
        if not self.exact_metrics:
            return {}
        mdp = self.env.tabular(self.params_for(hp))
        return value_metrics(mdp, carry.q.mean(0), carry.q_star, hp["gamma"], bias=self.log_bias,
                             policy_value=self.log_policy_value)

    def policy_values(self, carry: TabularCarry, hp: HParams, obs: Any, env_state: Any) -> jax.Array:
        """The row of the summed tables at the state's index."""
        return carry.q.sum(0)[self.env.state_index(env_state)]
