"""The finite-environment base class and the one transition function every learner uses."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from jaxq.types import TabularMDP


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
