"""Rank-based prioritised replay (Schaul et al., 2016): ``p_i = 1 / rank(i)``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParams
from jaxq.replay.base import ReplayState, written
from jaxq.replay.prioritised import PrioritisedBuffer, alpha_hparam, beta_hparams, store_max


@dataclasses.dataclass(frozen=True)
class RankBuffer(PrioritisedBuffer):
    """Rank-based PER: ``P(i) = rank(i)^-alpha / sum_k rank(k)^-alpha``.

    ``rank`` orders the written slots by their last ``|delta|``, largest first (rank 1); equal
    ``|delta|`` are ordered by slot index. A new item stores the largest ``|delta|`` seen so far (1 at
    the start), so it ties for rank 1, and enters with leaf ``1`` until the next update re-ranks.
    Every ``set_priorities`` sorts the whole buffer exactly (``O(N log N)``, where the paper re-sorted
    a heap only now and then) and rebuilds the tree. Defaults are the paper's (alpha 0.7,
    beta 0.5 -> 1).
    """

    name = "per-rank"
    hyperparameters = {"alpha": alpha_hparam(0.7), **beta_hparams(0.5, 1.0)}

    def _init_rule(self) -> dict[str, jax.Array]:
        return {"td": jnp.zeros(self.capacity, jnp.float32)}

    def _on_add(self, priority, slots, episode, last):
        return {**priority, "td": priority["td"].at[slots].set(priority["max_priority"])}

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        return jnp.float32(1.0)

    def ranks(self, state: ReplayState) -> jax.Array:
        """``int32[capacity]``: each written slot's rank (1 = largest ``|delta|``), 0 for unwritten."""
        filled = written(state, self.capacity)
        order = jnp.argsort(jnp.where(filled, -state.priority["td"], jnp.inf), stable=True)
        ranks = jnp.zeros(self.capacity, jnp.int32).at[order].set(jnp.arange(1, self.capacity + 1, dtype=jnp.int32))
        return jnp.where(filled, ranks, 0)

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        magnitude = jnp.abs(td_errors)
        priority = {**state.priority, "td": store_max(state.priority["td"], indices, magnitude),
                    "max_priority": jnp.maximum(state.priority["max_priority"], jnp.max(magnitude))}
        state = state.replace(priority=priority)
        ranks = self.ranks(state)
        leaves = jnp.where(ranks > 0, jnp.maximum(ranks, 1).astype(jnp.float32) ** -hp["alpha"], 0.0)
        return state.replace(tree=self._rebuild(leaves))
