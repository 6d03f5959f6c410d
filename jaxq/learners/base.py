"""The learner contract: what every learner shares, on finite and non-finite environments alike.

A learner is bound to one environment and a static configuration (shapes, step counts, the TD
target) and exposes pure functions over a per-lane ``carry``:

* ``init(key, hp) -> carry``;
* ``run(carry, hp, first, num_logs) -> (carry, logs)``: ``num_logs`` intervals of ``steps_per_log``
  environment steps, producing log points ``first, ..., first + num_logs - 1``;
* ``log(carry, hp, index) -> logs``: the metrics at log point ``index`` (0 is the start).

``index``/``first`` are the same for every lane (``jaxq.sweep`` passes them un-batched), so work
that happens only at some log points -- the greedy evaluation -- is a real branch under ``vmap``,
not a select that computes both sides.

``hp`` is a flat dict of scalar hyper-parameters -- the learner's own (gamma, alpha, epsilon, ...)
and every sweepable field of the environment's params (depth, gravity, ...) -- so ``jaxq.sweep``
can ``vmap`` over any of them in one call. Static env fields (those that set shapes or loop
lengths) are never hyper-parameters.

Every learner logs, on every environment, the training episodes
(:class:`~jaxq.learners.episodes.EpisodeStats`: ``train_return``, ``train_length``, ``episodes``,
``terminations``) and, at chosen log points, the return of ``eval_episodes`` greedy episodes played
on evaluation env states of their own (``eval_return``, ``eval_length``; NaN between evaluations).
On finite environments learners may add exact metrics (``error``, ``bias``, ``policy_value``, see
:mod:`jaxq.learners.exact_metrics`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from jaxq.envs.core import FiniteEnv, make_params, static_fields, sweepable_fields
from jaxq.hparams import HParam, HParams, probability_hparam
from jaxq.learners import episodes
from jaxq.rng import counter_bits
from jaxq.validation import check_count

Carry = Any
EVAL_STREAM = 0x4556  # fold-in tag that separates evaluation randomness from training randomness
EVAL_HPARAMS = {"eval_epsilon": probability_hparam("eval_epsilon", 0.0, "exploration rate of the greedy evaluation")}


class OnlineLearner:
    """Base of learners that interact online with their environment(s), one agent per lane.

    Subclasses set ``hyperparameters`` (name -> :class:`HParam`) and implement ``init``,
    ``metrics`` (their own log entries), ``policy_values`` (the values the greedy evaluation acts
    on) and either ``step`` (one environment step and update, given per-step randomness; the base
    ``advance`` scans it) or ``advance`` itself. Every carry has ``key``, ``t`` and ``episodes``.

    Args:
        env, env_params: a gymnax environment with discrete actions and its params.
        steps: environment steps per lane; ``log_every`` divides it.
        eval_every: environment steps between greedy evaluations, a multiple of ``log_every``
            (the last log point is always evaluated); 0 switches evaluation off. Default: about 10
            evaluations per run, or none on a finite environment with exact metrics (which compute
            the greedy policy's value exactly).
        eval_episodes: episodes per evaluation and lane (run in parallel).
        exact_metrics: log ``||Q - Q*||``-type metrics; needs a finite environment (default there).
    """

    hyperparameters: dict[str, HParam] = {}
    random_words: int = 2  # uint32 words of per-step randomness given to ``step``

    def __init__(self, env: Any, env_params: Any, steps: int, log_every: int, *,
                 eval_every: int | None = None, eval_episodes: int = 10, exact_metrics: bool | None = None):
        self.env, self.env_params = env, env_params
        self.num_actions = discrete_actions(env, env_params)
        self.steps = check_count(steps, "steps")
        self.steps_per_log = check_count(log_every, "log_every")
        if self.steps % self.steps_per_log:
            raise ValueError(f"steps={steps} is not a multiple of log_every={log_every}; choose a log "
                             "interval that divides it")
        self.num_logs = self.steps // self.steps_per_log
        finite = isinstance(env, FiniteEnv)
        if exact_metrics and not finite:
            raise ValueError(f"exact_metrics=True is not allowed on {env.name}: exact metrics need a finite "
                             "environment with a tabular model (Chain, Branching, GridWorld)")
        self.exact_metrics = finite if exact_metrics is None else bool(exact_metrics)
        self.eval_episodes = check_count(eval_episodes, "eval_episodes")
        self.eval_every = self._eval_interval(eval_every)
        self.hyperparameters = {**type(self).hyperparameters, **(EVAL_HPARAMS if self.eval_every else {})}
        self._env_names = self._env_hparam_names()

    def _eval_interval(self, eval_every: int | None) -> int:
        if eval_every is None:
            if self.exact_metrics:
                return 0
            return self.steps_per_log * max(1, round(self.num_logs / 10))
        every = check_count(eval_every, "eval_every", minimum=0)
        if every % self.steps_per_log:
            raise ValueError(f"eval_every={every} is not a multiple of log_every={self.steps_per_log}; "
                             "evaluations happen at log points")
        return every

    def _env_hparam_names(self) -> dict[str, str]:
        """Sweepable name -> env params field: the field's own name, or ``env_<field>`` when the
        learner has a hyper-parameter of that name (CartPole's ``tau`` vs a Polyak ``tau``)."""
        return {(f"env_{name}" if name in self.hyperparameters else name): name
                for name in sweepable_fields(self.env_params)}

    # -- hyper-parameters -------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """Every sweepable name with its default: the learner's, then the environment's."""
        learner = {name: h.default for name, h in self.hyperparameters.items()}
        env = {public: getattr(self.env_params, field) for public, field in self._env_names.items()}
        return {**learner, **env}

    def encode(self, name: str, value: Any) -> Any:
        """Validate one value of hyper-parameter ``name`` and return it as a pytree leaf.

        Raises:
            ValueError: for a value outside the allowed range, a static env field (it sets a shape or
                a loop length, so it is fixed when the environment is made), or an unknown name.
        """
        if name in self.hyperparameters:
            return float(self.hyperparameters[name].check(value))
        if name in self._env_names:
            field = self._env_names[name]
            return getattr(make_params(self.env, **{field: value}), field)
        if name in static_fields(self.env_params):
            raise ValueError(f"{name!r} is a static parameter of {self.env.name} (it sets a shape or a loop length) "
                             f"and cannot be swept; set it when making the environment, e.g. "
                             f"jaxq.make({self.env.name!r}, {name}=...) or --env-option {name}=...")
        allowed = ", ".join(self.defaults())
        raise ValueError(f"{name!r} is not a hyper-parameter of this learner or of {self.env.name}; "
                         f"allowed: {allowed}")

    def params_for(self, hp: HParams) -> Any:
        """The environment params of one lane: the bound params with swept fields replaced."""
        return self.env_params.replace(**{field: hp[public] for public, field in self._env_names.items()
                                          if public in hp})

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
        env_static.update({name: getattr(self.env_params, name) for name in static_fields(self.env_params)})
        leaves = set(sweepable_fields(self.env_params))
        env_arrays = {name: np.asarray(value).tolist() for name, value in vars(self.env_params).items()
                      if name not in leaves and np.ndim(value) > 0}
        return {
            "learner": type(self).__name__,
            "env": self.env.name,
            "env_static": env_static,
            "env_arrays": env_arrays,
            "steps": self.steps,
            "log_every": self.steps_per_log,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes if self.eval_every else 0,
            "exact_metrics": self.exact_metrics,
            **self.static_config(),
        }

    # -- what subclasses provide ------------------------------------------------------------------
    def init(self, key: jax.Array, hp: HParams) -> Carry:
        raise NotImplementedError

    def step(self, carry: Carry, hp: HParams, bits: jax.Array, env_key: jax.Array) -> Carry:
        raise NotImplementedError

    def metrics(self, carry: Carry, hp: HParams) -> dict[str, jax.Array]:
        """The learner's own log entries at the current step (exact metrics, losses, ...)."""
        return {}

    def policy_values(self, carry: Carry, hp: HParams, obs: Any, env_state: Any) -> jax.Array:
        """``[A]`` action values the greedy policy acts on in ``(obs, env_state)``."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------------
    def advance(self, carry: Carry, hp: HParams, index: jax.Array) -> Carry:
        """``steps_per_log`` environment steps up to log point ``index``: a scan of :meth:`step` with
        counter-based randomness."""
        def one_step(c, _):
            bits, env_key = step_randomness(c.key, c.t, self.random_words)
            return self.step(c, hp, bits, env_key), None

        return jax.lax.scan(one_step, carry, None, length=self.steps_per_log)[0]

    def next_interval(self, carry: Carry) -> Carry:
        """The carry at the start of a new log interval: per-interval statistics start again."""
        return carry.replace(episodes=carry.episodes.next_interval())

    def evaluates_at(self, index: jax.Array) -> jax.Array:
        """Whether log point ``index`` holds a greedy evaluation (every ``eval_every`` steps and at the end)."""
        every = max(self.eval_every // self.steps_per_log, 1)
        return jnp.logical_or(index % every == 0, index == self.num_logs)

    def evaluate(self, carry: Carry, hp: HParams, index: jax.Array) -> dict[str, jax.Array]:
        """``eval_return``, ``eval_length``: means over ``eval_episodes`` greedy episodes on fresh
        evaluation env states (randomness from the lane key and ``index``, apart from training)."""
        key = jax.random.fold_in(jax.random.fold_in(carry.key, EVAL_STREAM), index)
        return self.evaluate_policy(lambda obs, state: self.policy_values(carry, hp, obs, state), hp, key,
                                    self.eval_episodes)

    def evaluate_policy(self, values: episodes.ValueFunction, hp: HParams, key: jax.Array,
                        num_episodes: int) -> dict[str, jax.Array]:
        """:func:`~jaxq.learners.episodes.evaluate` of the ``eval_epsilon``-greedy policy of
        ``values(obs, env_state) -> [A]`` on this lane's environment."""
        return episodes.evaluate(self.env, self.params_for(hp), values, key, num_episodes, hp["eval_epsilon"])

    def log(self, carry: Carry, hp: HParams, index: jax.Array) -> dict[str, jax.Array]:
        """Every metric at log point ``index``: the learner's own, the training episodes and, where
        due, the greedy evaluation (NaN elsewhere)."""
        logs = {**self.metrics(carry, hp), **carry.episodes.logs()}
        if self.eval_every:
            nan = {"eval_return": jnp.float32(jnp.nan), "eval_length": jnp.float32(jnp.nan)}
            logs.update(jax.lax.cond(self.evaluates_at(index), lambda: self.evaluate(carry, hp, index),
                                     lambda: nan))
        return logs

    def run(self, carry: Carry, hp: HParams, first: jax.Array, num_logs: int) -> tuple[Carry, dict[str, jax.Array]]:
        """Log points ``first, ..., first + num_logs - 1``, each after ``steps_per_log`` steps:
        logs are ``[num_logs, ...]``."""
        def interval(c, index):
            c = self.advance(c, hp, index)
            logs = self.log(c, hp, index)
            return self.next_interval(c), logs

        indices = jnp.asarray(first, jnp.int32) + jnp.arange(num_logs, dtype=jnp.int32)
        return jax.lax.scan(interval, carry, indices)


def discrete_actions(env: Any, env_params: Any) -> int:
    """The number of actions of ``env``'s discrete action space.

    Raises:
        ValueError: if the action space is not discrete.
    """
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        raise ValueError(f"env={env.name!r} has a {type(space).__name__} action space; jaxq's learners act in "
                         "discrete action spaces (e.g. LunarLander-v3, not LunarLanderContinuous-v3)")
    return int(space.n)


def step_randomness(key: jax.Array, t: jax.Array, words: int) -> tuple[jax.Array, jax.Array]:
    """Counter-based randomness of step ``t``: ``words`` uint32 for the learner and a key for the env.

    Each is one Threefry-2x32 block of the lane's key at counter ``(t, stream)``, so no key is split
    per step, nothing is stored, and a run resumed at step ``t`` draws exactly what it would have.
    """
    blocks = [counter_bits(key, t, stream) for stream in range(1, (words + 1) // 2 + 1)]
    return jnp.concatenate(blocks)[:words], counter_bits(key, t, 0)
