"""Chain(D): walk forward D times to reach the only reward.

States ``s_0 ... s_{D-1}`` and one absorbing terminal. Action 1 ("forward") moves ``s_i -> s_{i+1}``;
forward from ``s_{D-1}`` enters the terminal with reward +1 (every other reward is 0). Action 0 goes
back to ``s_0`` (variant "reset") or keeps ``s_i`` (variant "stay"). With variant "reset",

    Q*(s_i, forward) = gamma^(D-1-i),    Q*(s_i, back) = gamma^D.

The depth ``D`` is a traced parameter ``<= max_depth`` (static), so chains of several depths run in
one vmapped call: the arrays are padded to ``max_depth`` states plus the terminal, which always sits
at index ``max_depth``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxq.envs.core import FiniteEnv, replace_checked
from jaxq.types import TabularMDP
from jaxq.validation import check_choice, check_count, check_range

BACK, FORWARD = 0, 1
VARIANTS = ("reset", "stay")


@struct.dataclass
class ChainState(environment.EnvState):
    position: jax.Array  # int32 in [0, max_depth]; max_depth is the terminal
    time: jax.Array


@struct.dataclass
class ChainParams(environment.EnvParams):
    depth: jax.Array | int = 8
    variant: jax.Array | int = 0  # index into VARIANTS
    reward: jax.Array | float = 1.0
    max_steps_in_episode: jax.Array | int = 1000


class Chain(FiniteEnv):
    """Chain MDP padded to ``max_depth`` (see the module docstring)."""

    def __init__(self, max_depth: int = 8):
        super().__init__()
        self.max_depth = check_count(max_depth, "max_depth")
        self.num_states = self.max_depth + 1
        self.terminal_index = self.max_depth

    @property
    def name(self) -> str:
        return "Chain"

    @property
    def num_actions(self) -> int:
        return 2

    @property
    def default_params(self) -> ChainParams:
        return ChainParams(depth=self.max_depth)

    def make_params(self, **overrides: Any) -> ChainParams:
        checks = {
            "depth": lambda v: int(check_range("depth", v, 1, self.max_depth, integer=True)),
            "variant": lambda v: VARIANTS.index(check_choice("variant", v, VARIANTS))
            if isinstance(v, str) else int(check_range("variant", v, 0, 1, integer=True)),
            "reward": lambda v: float(check_range("reward", v)),
            "max_steps_in_episode": lambda v: check_count(v, "max_steps_in_episode"),
        }
        return replace_checked(self.name, self.default_params, checks, overrides)

    def _features(self, position: jax.Array, depth: jax.Array) -> jax.Array:
        """Normalised position ``i / D`` (the terminal reads 1)."""
        return (jnp.minimum(position, depth) / depth).astype(jnp.float32)[..., None]

    def get_obs(self, state: ChainState, params: ChainParams | None = None, key=None) -> jax.Array:
        params = self.default_params if params is None else params
        return self._features(state.position, params.depth)

    def step_env(self, key, state: ChainState, action, params: ChainParams):
        forward = action == FORWARD
        terminated = jnp.logical_and(forward, state.position == params.depth - 1)
        back_to = jnp.where(params.variant == 1, state.position, 0)
        position = jnp.where(forward, state.position + 1, back_to)
        position = jnp.where(terminated, self.terminal_index, position).astype(jnp.int32)
        reward = jnp.where(terminated, params.reward, 0.0).astype(jnp.float32)
        state = ChainState(position=position, time=state.time + 1)
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: ChainParams):
        state = self.state_at(0)
        return self.get_obs(state, params), state

    def is_terminated(self, state: ChainState, params: ChainParams) -> jax.Array:
        return state.position == self.terminal_index

    def state_index(self, state: ChainState) -> jax.Array:
        return state.position

    def state_at(self, index) -> ChainState:
        return ChainState(position=jnp.asarray(index, jnp.int32), time=jnp.int32(0))

    def tabular(self, params: ChainParams) -> TabularMDP:
        i = jnp.arange(self.num_states)
        D, T = params.depth, self.terminal_index
        real = i < D
        terminal = i == T
        forward_to = jnp.where(i == D - 1, T, i + 1)
        back_to = jnp.where(params.variant == 1, i, 0)
        next_state = jnp.stack(
            [jnp.where(real, back_to, i), jnp.where(real, forward_to, i)], axis=1
        )
        R = jnp.zeros((self.num_states, 2), jnp.float32).at[:, FORWARD].set(
            jnp.where(i == D - 1, params.reward, 0.0)
        )
        return TabularMDP(
            P=jax.nn.one_hot(next_state, self.num_states, dtype=jnp.float32),
            R=R,
            terminal=terminal,
            valid=jnp.logical_or(real, terminal),
            features=self._features(i, D),
            initial=jax.nn.one_hot(0, self.num_states, dtype=jnp.float32),
            deterministic=True,
        )

    def action_space(self, params: ChainParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params: ChainParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (1,), jnp.float32)


def q_star_closed_form(depth: int, gamma: float, variant: str = "reset") -> np.ndarray:
    """Exact ``Q*`` of Chain(depth) as ``[depth, 2]`` (back, forward), from the closed form."""
    i = np.arange(depth)
    forward = gamma ** (depth - 1 - i)
    back = np.full(depth, gamma**depth) if variant == "reset" else gamma ** (depth - i)
    return np.stack([back, forward], axis=1)


def make_chain(depth: int = 8, max_depth: int | None = None, **options: Any) -> tuple[Chain, ChainParams]:
    """``jaxq.make("Chain", depth=8, max_depth=32, variant="stay")``."""
    max_depth = check_count(depth, "depth") if max_depth is None else max_depth
    env = Chain(max_depth=max_depth)
    return env, env.make_params(depth=depth, **options)
