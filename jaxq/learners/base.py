"""What every online learner shares: hyper-parameters as pytree leaves and the logged scan loop.

A learner is bound to one environment and a static configuration (shapes, step counts, the TD
target) and exposes pure functions over a per-lane ``carry``:

* ``init(key, hp) -> carry`` and ``run(carry, hp, num_logs) -> (carry, logs)``,
* ``log(carry, hp) -> logs`` for the metrics at the current step.

``hp`` is a flat dict of scalar hyper-parameters -- the learner's own (gamma, alpha, epsilon, ...)
and every scalar field of the environment's params (depth, slip, ...) -- so ``jaxq.sweep`` can
``vmap`` over any of them in one call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxq import exact
from jaxq.rng import counter_bits
from jaxq.types import TabularMDP
from jaxq.hparams import HParam, HParams, gamma_hparam, positive_hparam, probability_hparam, real_hparam
from jaxq.validation import check_count

Carry = Any


EXPLORATION_HPARAMS = {
    "epsilon": probability_hparam("epsilon", 0.1, "exploration rate (the start value when decayed)"),
    "epsilon_final": probability_hparam("epsilon_final", 0.01, "final exploration rate (linear decay)"),
    "epsilon_decay_steps": positive_hparam("epsilon_decay_steps", 1000.0, "steps of the linear decay"),
}


def epsilon_at(t: jax.Array, hp: HParams, schedule: str) -> jax.Array:
    """Exploration rate at step ``t``: constant ``epsilon``, or linear
    ``epsilon + (epsilon_final - epsilon) * min(1, t / epsilon_decay_steps)``."""
    if schedule == "constant":
        return hp["epsilon"]
    fraction = jnp.minimum(1.0, t / hp["epsilon_decay_steps"])
    return hp["epsilon"] + (hp["epsilon_final"] - hp["epsilon"]) * fraction


def env_scalar_fields(env_params: Any) -> dict[str, Any]:
    """The scalar fields of an environment's params: those ``jaxq.sweep`` can vary."""
    return {
        f.name: getattr(env_params, f.name)
        for f in dataclasses.fields(env_params)
        if np.ndim(getattr(env_params, f.name)) == 0
    }


class OnlineLearner:
    """Base of learners that interact online with one environment per lane.

    Subclasses set ``hyperparameters`` (name -> :class:`HParam`) and implement ``init``, ``step``
    (one environment step and update, given per-step randomness) and ``log``.
    ``steps_per_log`` steps run between two log points; a full run has ``num_logs`` of them.
    """

    hyperparameters: dict[str, HParam] = {}
    random_words: int = 2  # uint32 words of per-step randomness given to ``step``

    def __init__(self, env: Any, env_params: Any, steps: int, log_every: int):
        self.env, self.env_params = env, env_params
        self.steps = check_count(steps, "steps")
        self.steps_per_log = check_count(log_every, "log_every")
        if self.steps % self.steps_per_log:
            raise ValueError(
                f"steps={steps} is not a multiple of log_every={log_every}; choose a log interval that divides it"
            )
        self.num_logs = self.steps // self.steps_per_log

    # -- hyper-parameters -------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """Every sweepable name with its default: the learner's, then the environment's."""
        learner = {name: h.default for name, h in self.hyperparameters.items()}
        return {**learner, **env_scalar_fields(self.env_params)}

    def encode(self, name: str, value: Any) -> Any:
        """Validate one value of hyper-parameter ``name`` and return it as a pytree leaf."""
        if name in self.hyperparameters:
            return float(self.hyperparameters[name].check(value))
        if name in env_scalar_fields(self.env_params):
            if hasattr(self.env, "make_params"):
                return getattr(self.env.make_params(**{name: value}), name)
            return value
        allowed = ", ".join(self.defaults())
        raise ValueError(f"{name!r} is not a hyper-parameter of this learner/env; allowed: {allowed}")

    def params_for(self, hp: HParams) -> Any:
        """The environment params of one lane: the bound params with swept fields replaced."""
        fields = env_scalar_fields(self.env_params)
        return self.env_params.replace(**{k: hp[k] for k in fields if k in hp})

    def static_config(self) -> dict[str, Any]:
        """The learner's static (non-swept) configuration, for reports and checkpoint identity."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the learner, its environment and their static settings."""
        env_static = {
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in vars(self.env).items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, np.ndarray))
        }
        env_arrays = {
            f.name: np.asarray(getattr(self.env_params, f.name)).tolist()
            for f in dataclasses.fields(self.env_params)
            if np.ndim(getattr(self.env_params, f.name)) > 0
        }
        return {
            "learner": type(self).__name__,
            "env": self.env.name,
            "env_static": env_static,
            "env_arrays": env_arrays,
            "steps": self.steps,
            "log_every": self.steps_per_log,
            **self.static_config(),
        }

    # -- the loop ---------------------------------------------------------------------------------
    def init(self, key: jax.Array, hp: HParams) -> Carry:
        raise NotImplementedError

    def step(self, carry: Carry, hp: HParams, bits: jax.Array, env_key: jax.Array) -> Carry:
        raise NotImplementedError

    def log(self, carry: Carry, hp: HParams) -> dict[str, jax.Array]:
        raise NotImplementedError

    def run(self, carry: Carry, hp: HParams, num_logs: int) -> tuple[Carry, dict[str, jax.Array]]:
        """``num_logs`` intervals of ``steps_per_log`` steps, logging after each: logs are ``[num_logs, ...]``."""
        def one_step(c, _):
            bits, env_key = step_randomness(c.key, c.t, self.random_words)
            return self.step(c, hp, bits, env_key), None

        def interval(c, _):
            c, _ = jax.lax.scan(one_step, c, None, length=self.steps_per_log)
            return c, self.log(c, hp)

        return jax.lax.scan(interval, carry, None, length=num_logs)


def step_randomness(key: jax.Array, t: jax.Array, words: int) -> tuple[jax.Array, jax.Array]:
    """Counter-based randomness of step ``t``: ``words`` uint32 for the learner and a key for the env.

    Each is one Threefry-2x32 block of the lane's key at counter ``(t, stream)``, so no key is split
    per step, nothing is stored, and a run resumed at step ``t`` draws exactly what it would have.
    """
    blocks = [counter_bits(key, t, stream) for stream in range(1, (words + 1) // 2 + 1)]
    return jnp.concatenate(blocks)[:words], counter_bits(key, t, 0)


def value_metrics(mdp: TabularMDP, q: jax.Array, q_star: jax.Array, gamma: jax.Array, *,
                  bias: bool = True, policy_value: bool = True) -> dict[str, jax.Array]:
    """What every learner on a finite environment logs about its current ``Q`` (``[S, A]``).

    * ``error = max_{(s, a) scored} |Q(s, a) - Q*(s, a)|`` over valid non-terminal pairs;
    * ``bias[s] = Q(s, a*) - Q*(s, a*)`` at the optimal action ``a* = argmax Q*(s, .)`` (0 elsewhere);
    * ``policy_value = sum_s mu0(s) V^pi(s)`` of the greedy policy ``pi = argmax Q``.
    """
    scored = mdp.scored[:, None]
    logs = {"error": jnp.max(jnp.where(scored, jnp.abs(q - q_star), 0.0))}
    if bias:
        best = exact.greedy_policy(q_star)[:, None]
        gap = jnp.take_along_axis(q - q_star, best, axis=1)[:, 0]
        logs["bias"] = jnp.where(mdp.scored, gap, 0.0)
    if policy_value:
        v = exact.policy_value(mdp, exact.greedy_policy(q), gamma)
        logs["policy_value"] = jnp.dot(mdp.initial, v)
    return logs
