"""Rank-based prioritised replay (Schaul et al., 2016): ``p_i = 1 / rank(i)``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParams
from jaxq.replay import sumtree
from jaxq.replay.base import ReplayState, when, written
from jaxq.replay.prioritised import PrioritisedBuffer, alpha_hparam, beta_hparams, store_max
from jaxq.validation import check_count


@dataclasses.dataclass(frozen=True)
class RankBuffer(PrioritisedBuffer):
    """Rank-based PER: ``P(i) = leaf_i / sum_k leaf_k`` with ``leaf_i = rank(i)^-alpha``.

    ``rank`` orders the written slots by their last ``|delta|``, largest first (rank 1); equal
    ``|delta|`` are ordered by slot index. A new item stores the largest ``|delta|`` seen so far (1 at
    the start), so it ties for rank 1, and enters with leaf ``1`` (rank 1). Defaults are the paper's
    (alpha 0.7, beta 0.5 -> 1).

    ``rerank_every`` (static) says how often the whole buffer is sorted:

    * ``1`` (default): every ``set_priorities`` sorts the buffer exactly (``O(N log N)``) and
      rebuilds the tree, so every leaf is ``rank^-alpha`` of the current ranks.
    * ``R > 1``, as the paper did (it re-sorted its heap only now and then): the first update and
      every ``R``-th one after it sort exactly as above and keep the sorted ``|delta|`` values. In
      between, an updated item's rank is looked up in that sorted snapshot by binary search,
      ``rank = 1 + #{items of the last sort with |delta| larger than its new |delta|}``, and only its
      leaf changes (``O(B log N)``); the other leaves keep their ranks from the last sort, and
      several items may then share a rank. ``P(i)`` is always ``leaf_i / sum_k leaf_k`` of the
      leaves actually stored, and the weights follow from it.

    Under ``vmap`` the full sort runs only on the updates where it is due (lanes of a sweep share
    the schedule; see :func:`jaxq.replay.base.when`).
    """

    rerank_every: int = 1

    name = "per-rank"
    hyperparameters = {"alpha": alpha_hparam(0.7), **beta_hparams(0.5, 1.0)}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_count(self.rerank_every, "rerank_every")

    def _init_rule(self) -> dict[str, jax.Array]:
        rule = {"td": jnp.zeros(self.capacity, jnp.float32)}
        if self.rerank_every > 1:
            rule.update(sorted=jnp.full(self.capacity, -jnp.inf, jnp.float32), updates=jnp.int32(0))
        return rule

    def _on_add(self, priority, slots, episode, last):
        return {**priority, "td": priority["td"].at[slots].set(priority["max_priority"])}

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        return jnp.float32(1.0)

    def _order(self, state: ReplayState) -> jax.Array:
        """Slots by ``|delta|``, largest first, ties by slot index, unwritten slots last."""
        filled = written(state, self.capacity)
        return jnp.argsort(jnp.where(filled, -state.priority["td"], jnp.inf), stable=True)

    def ranks(self, state: ReplayState) -> jax.Array:
        """``int32[capacity]``: each written slot's exact rank now (1 = largest ``|delta|``), 0 for unwritten."""
        ranks = jnp.zeros(self.capacity, jnp.int32).at[self._order(state)].set(
            jnp.arange(1, self.capacity + 1, dtype=jnp.int32))
        return jnp.where(written(state, self.capacity), ranks, 0)

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        magnitude = jnp.abs(td_errors)
        priority = {**state.priority, "td": store_max(state.priority["td"], indices, magnitude),
                    "max_priority": jnp.maximum(state.priority["max_priority"], jnp.max(magnitude))}
        if self.rerank_every == 1:
            return self._resort(state.replace(priority=priority), hp)
        larger = self.capacity - jnp.searchsorted(priority["sorted"], magnitude, side="right")
        leaves = (1 + larger).astype(jnp.float32) ** -hp["alpha"]  # a repeated slot keeps its largest |delta|'s
        state = state.replace(tree=sumtree.set_leaves(state.tree, self.capacity, indices, leaves),
                              priority={**priority, "updates": priority["updates"] + 1})
        return when(priority["updates"] % self.rerank_every == 0, lambda s: self._resort(s, hp), state)

    def _resort(self, state: ReplayState, hp: HParams) -> ReplayState:
        """Sort the whole buffer: every leaf ``rank^-alpha`` of the exact ranks (and keep the snapshot)."""
        filled = written(state, self.capacity)
        order = self._order(state)
        ranks = jnp.zeros(self.capacity, jnp.float32).at[order].set(jnp.arange(1, self.capacity + 1, dtype=jnp.float32))
        leaves = jnp.where(filled, jnp.exp(-hp["alpha"] * jnp.log(ranks)), 0.0)  # exp-log: XLA:CPU's pow is ~20x slower
        state = state.replace(tree=self._rebuild(leaves))
        if self.rerank_every == 1:
            return state
        descending = jnp.where(filled, state.priority["td"], -jnp.inf)[order]  # unwritten (-inf) last
        return state.replace(priority={**state.priority, "sorted": descending[::-1]})
