"""The finite-environment base class, the one transition function every learner uses, and
validated environment params for any environment."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from jaxq.types import TabularMDP
from jaxq.validation import check_count, check_range


class FiniteEnv(environment.Environment):
    """A gymnax environment with finitely many states and a known model.

    Subclasses implement gymnax's ``step_env``/``reset_env``/``get_obs`` natively (fast, branch
    free) and, separately, :meth:`tabular` -- the exact model that jaxq's solvers use. A test
    checks that the two agree by sampling transitions.
    """

    num_states: int

    def tabular(self, params: Any) -> TabularMDP:
        """The exact model ``(P, R, terminal, valid, features, initial)`` for ``params``."""
        raise NotImplementedError

    def state_index(self, state: Any) -> jax.Array:
        """The integer index in ``[0, num_states)`` of an environment state."""
        raise NotImplementedError

    def state_at(self, index: jax.Array | int) -> Any:
        """The environment state with index ``index`` at the start of an episode (time 0)."""
        raise NotImplementedError

    def make_params(self, **overrides: Any) -> Any:
        """Default params with ``overrides`` applied, each validated (``ValueError`` if not allowed)."""
        raise NotImplementedError


@struct.dataclass
class EnvStep:
    """Everything one environment step produces, before and after gymnax's auto-reset.

    ``next_state``/``next_obs`` are the true successor (used to bootstrap, also when the episode was
    truncated); ``state``/``obs`` are where the agent continues (a fresh reset when ``done``).
    """

    next_obs: Any
    next_state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    obs: Any
    state: Any

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


def env_step(env: environment.Environment, key: jax.Array, state: Any, action: Any, params: Any) -> EnvStep:
    """One gymnax step that keeps the pre-reset successor.

    Identical to ``env.step`` (same key split, same auto-reset) for where the agent continues,
    but also returns the true successor state so learners can bootstrap through time limits:
    truncation is not termination.
    """
    key_step, key_reset = jax.random.split(key)
    next_obs, next_state, reward, terminated, _ = env.step_env(key_step, state, action, params)
    truncated = jnp.logical_and(env.is_truncated(next_state, params), jnp.logical_not(terminated))
    done = jnp.logical_or(terminated, truncated)
    reset_obs, reset_state = env.reset_env(key_reset, params)
    pick = lambda fresh, cont: jax.lax.select(done, fresh, cont)  # noqa: E731
    return EnvStep(
        next_obs=next_obs,
        next_state=next_state,
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated, bool),
        truncated=truncated,
        obs=jax.tree.map(pick, reset_obs, next_obs),
        state=jax.tree.map(pick, reset_state, next_state),
    )


def replace_checked(env_name: str, params: Any, checks: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """``params.replace(**overrides)`` after validating and encoding each override.

    ``checks`` maps every overridable field to a function ``value -> encoded value`` that raises
    ``ValueError`` (naming the argument, the value and what is allowed) for a bad value.
    """
    unknown = sorted(set(overrides) - set(checks))
    if unknown:
        raise ValueError(
            f"{env_name} has no option {unknown[0]!r}; allowed options: {', '.join(sorted(checks))}"
        )
    return params.replace(**{name: checks[name](value) for name, value in overrides.items()})


def static_fields(params: Any) -> list[str]:
    """Fields of ``params`` that are not pytree leaves (they set shapes or loop lengths, so they are
    fixed when the environment is made and can never be swept)."""
    return [f.name for f in dataclasses.fields(params) if f.metadata.get("pytree_node", True) is False]


def sweepable_fields(params: Any) -> dict[str, Any]:
    """The scalar pytree-leaf fields of ``params`` with their values: those ``jaxq.sweep`` can vary."""
    static = static_fields(params)
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
            if f.name not in static and np.ndim(getattr(params, f.name)) == 0}


def make_params(env: environment.Environment, **overrides: Any) -> Any:
    """Default params of ``env`` with ``overrides`` applied, each validated: one entry point for every
    environment.

    jaxq's environments check ranges in their own ``env.make_params``. For any other gymnax
    environment each override must name a field of its params and keep that field's kind: a bool
    stays a bool, an integer an integer (``max_steps_in_episode`` at least 1), a number a finite number.

    Raises:
        ValueError: naming the parameter, the value and what is allowed.
    """
    if hasattr(env, "make_params"):
        return env.make_params(**overrides)
    defaults = env.default_params

    def check(name: str, default: Any) -> Any:
        if isinstance(default, (bool, np.bool_)):
            def boolean(v):
                if not isinstance(v, (bool, np.bool_)):
                    raise ValueError(f"{name}={v!r} is not allowed; {name} must be True or False")
                return bool(v)
            return boolean
        if isinstance(default, (int, np.integer)) or np.asarray(default).dtype.kind in "iu":
            return lambda v: check_count(v, name, minimum=1 if name == "max_steps_in_episode" else -(2**31))
        return lambda v: float(check_range(name, v))

    checks = {name: check(name, value) for name, value in sweepable_fields(defaults).items()}
    checks.update({name: (lambda v, name=name: _same_static(name, getattr(defaults, name), v))
                   for name in static_fields(defaults)})
    return replace_checked(env.name, defaults, checks, overrides)


def _same_static(name: str, default: Any, value: Any) -> Any:
    if value != default:
        raise ValueError(f"{name}={value!r} is not allowed; {name} is a static field fixed by the environment "
                         f"({default!r})")
    return value
