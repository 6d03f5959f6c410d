"""Prioritised replay over a sum tree, and its proportional rule (Schaul et al., 2016).

Every prioritised buffer samples slot ``i`` with ``P(i) = leaf_i / sum_k leaf_k`` (stratified, one
query per ``1 / batch_size`` of the total) and returns the importance-sampling weights

    w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (P_ref / P(i))^beta,

with ``beta`` annealed linearly from ``beta`` to ``beta_final`` over ``progress``, and ``P_ref`` the
smallest probability in the batch (``weights="batch"``, the default, as Dopamine and most JAX code
do) or in the whole memory (``weights="memory"``, the paper's and the ReaPER code's ``max_i w_i``;
an ``O(N)`` reduction per sample). New items enter with the running maximum priority, so each is
seen at least once. The rules differ in how TD errors become leaves.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParam, HParams, positive_hparam, range_hparam
from jaxq.replay import sumtree
from jaxq.replay.base import ReplayBuffer, ReplayState, anneal
from jaxq.validation import check_choice

WEIGHT_NORMALISATIONS = ("batch", "memory")


def alpha_hparam(default: float, name: str = "alpha", doc: str = "priority exponent (0 = uniform)") -> HParam:
    return range_hparam(name, default, f"{doc}, in [0, 1]", 0.0, 1.0)


def beta_hparams(start: float = 0.4, final: float = 1.0) -> dict[str, HParam]:
    return {
        "beta": range_hparam("beta", start, "importance-sampling exponent at progress 0, in [0, 1]", 0.0, 1.0),
        "beta_final": range_hparam("beta_final", final, "importance-sampling exponent at progress 1 "
                                   "(annealed linearly), in [0, 1]", 0.0, 1.0),
    }


PRIORITY_EPS = positive_hparam("priority_eps", 1e-6, "added to |TD error| so no item's priority is 0, in (0, 1]",
                               high=1.0)


def store_max(values: jax.Array, indices: jax.Array, new: jax.Array) -> jax.Array:
    """``values`` with ``new`` (>= 0) written at ``indices``; a repeated index keeps its largest value."""
    return values.at[indices].set(0.0).at[indices].max(new)


@dataclasses.dataclass(frozen=True)
class PrioritisedBuffer(ReplayBuffer):
    """The sum-tree machinery shared by every prioritised rule.

    A sample from a traced empty state (emptiness known only at run time) returns slot 0 with
    probability and weight 0, so a weighted loss ignores it.
    """

    weights: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("weights", self.weights, WEIGHT_NORMALISATIONS)

    def _init_tree(self) -> jax.Array:
        return sumtree.empty(self.capacity)

    def _init_priority(self) -> dict[str, jax.Array]:
        return {"max_priority": jnp.float32(1.0), **self._init_rule()}

    def _init_rule(self) -> dict[str, jax.Array]:
        return {}

    def _after_add(self, state: ReplayState, slots: jax.Array, episode: jax.Array | None,
                   last: jax.Array | None, hp: HParams | None) -> ReplayState:
        self.check_hparams(hp)
        priority = self._on_add(state.priority, slots, episode, last)
        leaf = jnp.broadcast_to(self._new_leaf(priority, hp), slots.shape)
        return state.replace(tree=sumtree.set_leaves(state.tree, self.capacity, slots, leaf), priority=priority)

    def _on_add(self, priority: dict[str, jax.Array], slots: jax.Array, episode: jax.Array | None,
                last: jax.Array | None) -> dict[str, jax.Array]:
        return priority

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        raise NotImplementedError

    def _draw(self, state: ReplayState, key: jax.Array, batch_size: int, hp: HParams | None,
              progress: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        self.check_hparams(hp)
        memory = self.weights == "memory"
        indices, leaf, total, smallest = sumtree.sample(state.tree, self.capacity, key, batch_size, memory)
        probabilities = jnp.where(total > 0, leaf / jnp.where(total > 0, total, 1.0), 0.0)
        if memory:
            reference = smallest / total
        else:
            reference = jnp.min(jnp.where(probabilities > 0, probabilities, jnp.inf))
        beta = anneal(hp["beta"], hp["beta_final"], progress)
        safe = jnp.where(probabilities > 0, probabilities, 1.0)
        weights = jnp.where(probabilities > 0, jnp.minimum(reference / safe, 1.0) ** beta, 0.0)
        return indices, probabilities, weights

    def probabilities(self, state: ReplayState) -> jax.Array:
        leaves, total = sumtree.leaves(state.tree, self.capacity), sumtree.total(state.tree)
        return jnp.where(total > 0, leaves / jnp.where(total > 0, total, 1.0), 0.0)

    def _update(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams | None,
                progress: jax.Array) -> ReplayState:
        self.check_hparams(hp)
        return self._reprioritise(state, indices, td_errors, hp, progress)

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        raise NotImplementedError

    def _rebuild(self, slot_priorities: jax.Array) -> jax.Array:
        """The tree over ``float32[capacity]`` priorities (0 for unwritten slots), in ``O(N)``."""
        return sumtree.build(slot_priorities, self.capacity)


@dataclasses.dataclass(frozen=True)
class ProportionalBuffer(PrioritisedBuffer):
    """Proportional PER: ``p_i = |delta_i| + eps``, ``P(i) = p_i^alpha / sum_k p_k^alpha``.

    Defaults are the paper's (alpha 0.6, beta 0.4 -> 1). ``set_priorities`` is ``O(B log N)``: it sets
    the ``B`` leaves and recomputes their ancestors; a new item gets ``max_priority^alpha``, where
    ``max_priority`` is the largest ``p`` given so far (1 at the start).
    """

    name = "per"
    hyperparameters = {"alpha": alpha_hparam(0.6), **beta_hparams(0.4, 1.0), "priority_eps": PRIORITY_EPS}

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        return priority["max_priority"] ** hp["alpha"]

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        p = jnp.abs(td_errors) + hp["priority_eps"]
        tree = sumtree.set_leaves(state.tree, self.capacity, indices, p ** hp["alpha"])
        priority = {**state.priority, "max_priority": jnp.maximum(state.priority["max_priority"], jnp.max(p))}
        return state.replace(tree=tree, priority=priority)
