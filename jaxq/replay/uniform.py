"""Uniform replay: a ring of the last ``capacity`` items, each written slot drawn with ``1 / size``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParams
from jaxq.replay.base import ReplayBuffer, ReplayState, written


@dataclasses.dataclass(frozen=True)
class UniformBuffer(ReplayBuffer):
    """Uniform replay (DQN's): ``P(i) = 1 / size`` over the written slots, weights all 1.

    ``episode``, ``last``, ``hp`` and ``progress`` are accepted and ignored; ``set_priorities``
    returns the state unchanged, so a learner can treat every buffer alike. Sampling a traced
    empty state (whose emptiness is only known at run time) returns slot 0 with probability and
    weight 0, so a weighted loss ignores it.
    """

    name = "uniform"

    def _draw(self, state: ReplayState, key: jax.Array, batch_size: int, hp: HParams | None,
              progress: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1), dtype=jnp.int32)
        filled = jnp.broadcast_to(state.size > 0, (batch_size,))
        probabilities = jnp.where(filled, 1.0 / jnp.maximum(state.size, 1), 0.0).astype(jnp.float32)
        return indices, probabilities, filled.astype(jnp.float32)

    def probabilities(self, state: ReplayState) -> jax.Array:
        return jnp.where(written(state, self.capacity), 1.0 / jnp.maximum(state.size, 1), 0.0).astype(jnp.float32)
