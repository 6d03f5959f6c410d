"""Branching: a small tree MDP whose values propagate up from rewarding leaves.

Every internal state has ``A`` actions; action ``a`` in state ``s`` leads either to another internal
state or to a leaf, which ends the episode with that leaf's reward (all other rewards are 0). With
probability ``noise`` the executed action is replaced by a uniformly random one.

The default instance has 5 internal states at depths 0..3 and 6 leaves::

    s0 (depth 0) -> s1 | s2
    s1 (depth 1) -> s3 | leaf 0
    s2 (depth 1) -> leaf 1 | leaf 2
    s3 (depth 2) -> s4 | leaf 3
    s4 (depth 3) -> leaf 4 | leaf 5

``make("Branching", depth=d, branching=b)`` builds instead a complete tree with ``b`` actions per
state and ``d`` levels of internal states. Leaves share one absorbing terminal state (the last index);
the leaf rewards are a traced parameter (one value per leaf, in order of appearance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxq.envs.core import FiniteEnv, replace_checked
from jaxq.types import TabularMDP
from jaxq.validation import check_count, check_probability, check_range

LEAF = -1
DEFAULT_TREE: tuple[tuple[int, ...], ...] = ((1, 2), (3, LEAF), (LEAF, LEAF), (4, LEAF), (LEAF, LEAF))
DEFAULT_LEAF_REWARDS = (0.5, 0.2, 0.1, 0.0, 1.0, -1.0)


@struct.dataclass
class BranchingState(environment.EnvState):
    node: jax.Array  # int32 internal state, or the terminal index
    time: jax.Array


@struct.dataclass
class BranchingParams(environment.EnvParams):
    leaf_rewards: jax.Array = struct.field(default_factory=lambda: jnp.asarray(DEFAULT_LEAF_REWARDS))
    noise: jax.Array | float = 0.0
    max_steps_in_episode: jax.Array | int = 100


def complete_tree(depth: int, branching: int) -> tuple[tuple[int, ...], ...]:
    """Children table of a complete tree: ``depth`` levels of internal states, ``branching`` each."""
    depth, branching = check_count(depth, "depth"), check_count(branching, "branching", minimum=2)
    internal = sum(branching**k for k in range(depth))
    return tuple(
        tuple(c if (c := s * branching + a + 1) < internal else LEAF for a in range(branching))
        for s in range(internal)
    )


class Branching(FiniteEnv):
    """Tree MDP given by ``children[s][a]`` = next internal state or ``LEAF``."""

    def __init__(self, children: Sequence[Sequence[int]] = DEFAULT_TREE):
        super().__init__()
        table = np.asarray(children, dtype=np.int64)
        if table.ndim != 2 or table.shape[1] < 2:
            raise ValueError(f"children={children!r} must be a table [states][actions] with >= 2 actions")
        internal, actions = table.shape
        if np.any((table != LEAF) & ((table <= np.arange(internal)[:, None]) | (table >= internal))):
            raise ValueError("children must point to later internal states (a tree) or to LEAF = -1")
        self.num_internal, self._num_actions = internal, actions
        self.num_states = internal + 1
        self.terminal_index = internal
        is_leaf = table == LEAF
        self.num_leaves = int(is_leaf.sum())
        leaf_id = np.full(table.shape, -1)
        leaf_id[is_leaf] = np.arange(self.num_leaves)
        self._next = np.where(is_leaf, self.terminal_index, table)
        self._leaf_id = leaf_id
        depths = np.zeros(self.num_states, np.int64)
        for s in range(internal):
            for c in table[s][table[s] != LEAF]:
                depths[c] = depths[s] + 1
        depths[self.terminal_index] = depths[:internal].max() + 1
        self.depths = depths  # depth of each state; the terminal is one below the deepest state

    @property
    def name(self) -> str:
        return "Branching"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    @property
    def default_params(self) -> BranchingParams:
        rewards = DEFAULT_LEAF_REWARDS if self.num_leaves == len(DEFAULT_LEAF_REWARDS) else (
            np.eye(self.num_leaves)[-1]
        )
        return BranchingParams(leaf_rewards=jnp.asarray(rewards, jnp.float32))

    def make_params(self, **overrides: Any) -> BranchingParams:
        def leaf_rewards(v):
            v = check_range("leaf_rewards", v)
            if v.shape != (self.num_leaves,):
                raise ValueError(f"leaf_rewards has shape {v.shape}; this tree has {self.num_leaves} leaves")
            return jnp.asarray(v, jnp.float32)

        checks = {
            "leaf_rewards": leaf_rewards,
            "noise": lambda v: float(check_probability(v, "noise")),
            "max_steps_in_episode": lambda v: check_count(v, "max_steps_in_episode"),
        }
        return replace_checked(self.name, self.default_params, checks, overrides)

    def get_obs(self, state: BranchingState, params=None, key=None) -> jax.Array:
        """One-hot state index (the tree is small; depth is in ``env.depths``)."""
        return jax.nn.one_hot(state.node, self.num_states, dtype=jnp.float32)

    def _reward_table(self, params: BranchingParams) -> jax.Array:
        """``[S, A]`` reward of each deterministic edge (leaf reward or 0)."""
        table = jnp.where(
            jnp.asarray(self._leaf_id) >= 0, params.leaf_rewards[jnp.asarray(self._leaf_id)], 0.0
        )
        return jnp.concatenate([table, jnp.zeros((1, self.num_actions))], axis=0).astype(jnp.float32)

    def _next_table(self) -> jax.Array:
        terminal_row = np.full((1, self.num_actions), self.terminal_index)
        return jnp.asarray(np.concatenate([self._next, terminal_row]), jnp.int32)

    def step_env(self, key, state: BranchingState, action, params: BranchingParams):
        key_slip, key_action = jax.random.split(key)
        slipped = jax.random.uniform(key_slip) < params.noise
        action = jnp.where(slipped, jax.random.randint(key_action, (), 0, self.num_actions), action)
        node = self._next_table()[state.node, action]
        reward = self._reward_table(params)[state.node, action]
        state = BranchingState(node=node, time=state.time + 1)
        return self.get_obs(state), state, reward, node == self.terminal_index, {}

    def reset_env(self, key, params: BranchingParams):
        state = self.state_at(0)
        return self.get_obs(state), state

    def is_terminated(self, state: BranchingState, params: BranchingParams) -> jax.Array:
        return state.node == self.terminal_index

    def state_index(self, state: BranchingState) -> jax.Array:
        return state.node

    def state_at(self, index) -> BranchingState:
        return BranchingState(node=jnp.asarray(index, jnp.int32), time=jnp.int32(0))

    def tabular(self, params: BranchingParams) -> TabularMDP:
        S, A = self.num_states, self.num_actions
        deterministic = jax.nn.one_hot(self._next_table(), S, dtype=jnp.float32)  # [S, A, S]
        rewards = self._reward_table(params)
        P = (1 - params.noise) * deterministic + params.noise * deterministic.mean(1, keepdims=True)
        R = (1 - params.noise) * rewards + params.noise * rewards.mean(1, keepdims=True)
        index = jnp.arange(S)
        return TabularMDP(
            P=P,
            R=R,
            terminal=index == self.terminal_index,
            valid=jnp.ones(S, bool),
            features=jax.nn.one_hot(index, S, dtype=jnp.float32),
            initial=jax.nn.one_hot(0, S, dtype=jnp.float32),
        )

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)


def make_branching(depth: int | None = None, branching: int | None = None,
                   **options: Any) -> tuple[Branching, BranchingParams]:
    """The default 5-state tree, or a complete tree when ``depth`` or ``branching`` is given."""
    if depth is None and branching is None:
        env = Branching()
    else:
        env = Branching(complete_tree(3 if depth is None else depth, 2 if branching is None else branching))
    return env, env.make_params(**options)
