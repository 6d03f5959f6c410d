"""Small types shared across jaxq's layers (environments, exact solvers, learners)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TabularMDP:
    """The full model of a finite MDP with S states and A actions.

    Attributes:
        P: ``[S, A, S]`` transition probabilities ``P[s, a, s']``; every row sums to one.
        R: ``[S, A]`` expected immediate reward of taking ``a`` in ``s``.
        terminal: ``[S]`` absorbing states whose value is zero by definition (episode ends there).
        valid: ``[S]`` states that exist in this instance. Padding states (a chain shorter than
            its static maximum depth, walls of a grid) are ``False``; they are absorbing with zero
            reward, so every exact solver may treat them uniformly, and metrics ignore them.
        features: ``[S, F]`` the observation an environment emits in each state.
        initial: ``[S]`` start-state distribution.
        deterministic: static promise that every row of ``P`` is one-hot (lets exact solvers take
            O(S log H) paths instead of O(S^3) linear solves).
    """

    P: jax.Array
    R: jax.Array
    terminal: jax.Array
    valid: jax.Array
    features: jax.Array
    initial: jax.Array
    deterministic: bool = struct.field(pytree_node=False, default=False)

    @property
    def num_states(self) -> int:
        return self.R.shape[-2]

    @property
    def num_actions(self) -> int:
        return self.R.shape[-1]

    @property
    def scored(self) -> jax.Array:
        """``[S]`` states whose Q-values count in error metrics: valid and non-terminal."""
        return jnp.logical_and(self.valid, jnp.logical_not(self.terminal))

    def check(self) -> None:
        """chex invariants: shapes agree and every transition row is a distribution."""
        S, A = self.R.shape[-2:]
        chex.assert_shape(self.P, (*self.R.shape[:-2], S, A, S))
        chex.assert_shape([self.terminal, self.valid, self.initial], (*self.R.shape[:-2], S))
        chex.assert_tree_all_finite((self.P, self.R, self.features))
        chex.assert_trees_all_close(self.P.sum(-1), jnp.ones_like(self.R), atol=1e-5)
        chex.assert_trees_all_close(self.initial.sum(-1), jnp.ones(self.initial.shape[:-1]), atol=1e-5)
