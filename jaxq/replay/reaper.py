"""Reliability-adjusted prioritised replay, ReaPER (Pleiss, Sutter, Schiffer, 2025).

Priority ``Psi_t = R_t^omega * p_t^alpha`` with ``p_t = |delta_t| + eps`` and the reliability of
transition ``t`` of an episode

    R_t = 1 - sum_{i > t} p_i / sum_{i} p_i = sum_{i <= t} p_i / S_ep,

the share of the episode's absolute TD error at or before ``t`` (the last transition, whose target
is exact, has ``R = 1``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxq.hparams import HParams
from jaxq.replay.base import ReplayState, written
from jaxq.replay.prioritised import PRIORITY_EPS, PrioritisedBuffer, alpha_hparam, beta_hparams, store_max
from jaxq.validation import check_count


def _segment_cumsum(starts: jax.Array, values: jax.Array) -> jax.Array:
    """Inclusive cumulative sums along axis 0 that restart where ``starts`` is true.

    A parallel scan whose sums never cross a segment, so a short episode keeps full float32
    precision however much TD error came before it in the buffer.
    """
    def combine(a, b):
        return a[0] | b[0], jnp.where(b[0], b[1], a[1] + b[1])

    return jax.lax.associative_scan(combine, (starts, values), axis=0)[1]


def _at_segment_end(starts: jax.Array, *values: jax.Array) -> tuple[jax.Array, ...]:
    """Each of ``values`` (``[rows, columns]``) taken at the last row of its segment (a run of one
    column that ``starts`` opens): segment ids, the last row of each by a scatter-max, a gather.

    On XLA:CPU this is cheaper than a reverse ``cummin`` of the end row or a reverse parallel scan.
    """
    rows, columns = starts.shape
    flat = lambda x: x.T.reshape(-1)  # noqa: E731  (column-major: each column's segments contiguous)
    segment = jax.lax.associative_scan(jnp.add, flat(starts).astype(jnp.int32)) - 1
    position = jnp.arange(rows * columns, dtype=jnp.int32)
    end = jnp.zeros(rows * columns, jnp.int32).at[segment].max(position)[segment]
    return tuple(flat(v)[end].reshape(columns, rows).T for v in values)


def reliability(td: jax.Array, episode: jax.Array, last: jax.Array, filled: jax.Array,
                oldest: jax.Array, streams: int) -> jax.Array:
    """``R`` of every slot (0 for unwritten ones).

    Args:
        td: ``float32[capacity]`` the priority ``p = |delta| + eps`` of each slot.
        episode, last: ``[capacity]`` episode id of each slot, and whether it ends its episode.
        filled: ``bool[capacity]`` written slots.
        oldest: the row (``slot // streams``) holding the oldest items.
        streams: the buffer is ``[capacity // streams, streams]``: column ``e`` holds the items of
            parallel environment ``e`` in time order (a ring starting at row ``oldest``).

    An episode is the run of consecutive items of one column with the same id. Its sum ``S_ep`` is
    over the items still in the buffer. A finished episode (its newest item has ``last``) uses
    ``S_ep``; an unfinished one uses ``max(F, S_ep)`` with ``F`` the largest ``S_ep`` of the finished
    episodes in the buffer (0 if none), so ``R <= 1`` and a running episode counts as at least as
    long, in TD error, as the longest finished one. ``S_ep`` is the running sum at the episode's
    newest item, so that item's ``R`` is exactly 1 when its episode is finished.
    """
    rows = td.shape[0] // streams

    def grid(x):
        return jnp.roll(x.reshape(rows, streams), -oldest, axis=0)

    td, episode, last, filled = grid(td), grid(episode), grid(last), grid(filled)
    same = (episode[1:] == episode[:-1]) & filled[1:] & filled[:-1]
    starts = jnp.concatenate([jnp.ones((1, streams), bool), ~same])
    cum = _segment_cumsum(starts, jnp.where(filled, td, 0.0))
    episode_sum, finished = _at_segment_end(starts, cum, last)
    longest = jnp.max(jnp.where(finished & filled, episode_sum, 0.0))
    denominator = jnp.where(finished, episode_sum, jnp.maximum(longest, episode_sum))
    r = jnp.where(filled, jnp.minimum(cum / jnp.where(filled, denominator, 1.0), 1.0), 0.0)
    return jnp.roll(r, oldest, axis=0).reshape(-1)


@dataclasses.dataclass(frozen=True)
class ReaperBuffer(PrioritisedBuffer):
    """ReaPER: ``P(t) = R_t^omega p_t^alpha / sum_j R_j^omega p_j^alpha`` (see :func:`reliability`).

    ``streams`` (static) is the number of parallel environments whose items ``add`` interleaves:
    each ``add`` writes ``k = steps * streams`` items step-major (item ``j`` comes from environment
    ``j % streams``), so each environment's items form a column of the ring in time order.

    Choices where the paper and the official code (``leonardpleiss/ReaPER``) differ or are silent:

    * Unfinished episodes: the code divides by ``F`` frozen when the transition was stored (the
      running max of stored sums) and does not clip, so ``R`` may exceed 1; jaxq divides by
      ``max(F, S_ep)`` with ``F`` the largest finished-episode sum in the buffer *now*, so ``R`` is
      in (0, 1] and never depends on insertion history.
    * Every update recomputes every slot's ``R`` (``O(N)``, vectorised) and rebuilds the tree; the
      code updates only the episodes touched by the batch, but the result is the same formula.
    * Until the next update a new item has leaf ``max_priority^alpha`` without a reliability factor
      (as in the code), with ``max_priority`` the largest ``p`` given so far (1 at the start); its
      ``p`` then counts in its episode's sums until it is replayed (as in the code).
    * An episode whose first items were overwritten is the part still in the buffer (the code
      keeps the overwritten items' last ``p`` in its running sums).
    * Weights are normalised by the batch by default; ``weights="memory"`` gives the code's
      memory-wide normalisation.

    Defaults are the official example's (alpha 0.4, omega 0.2, beta 0.4 -> 1, eps 1e-6).
    """

    streams: int = 1

    name = "reaper"
    hyperparameters = {"alpha": alpha_hparam(0.4, doc="TD-error exponent"),
                       "omega": alpha_hparam(0.2, name="omega", doc="reliability exponent (0 = PER)"),
                       **beta_hparams(0.4, 1.0), "priority_eps": PRIORITY_EPS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_count(self.streams, "streams")
        if self.capacity % self.streams:
            raise ValueError(f"capacity={self.capacity} is not a multiple of streams={self.streams}; "
                             "each environment's column of the ring must have the same length")

    def _init_rule(self) -> dict[str, jax.Array]:
        return {"td": jnp.zeros(self.capacity, jnp.float32), "episode": jnp.zeros(self.capacity, jnp.int32),
                "last": jnp.zeros(self.capacity, bool)}

    def _check_episode_args(self, k, episode, last):
        if episode is None or last is None:
            raise ValueError("replay 'reaper' needs episode (int32[k]) and last (bool[k]) in add")
        if k % self.streams:
            raise ValueError(f"add got k={k} items, not a multiple of streams={self.streams}")
        return super()._check_episode_args(k, episode, last)

    def _on_add(self, priority, slots, episode, last):
        return {**priority, "td": priority["td"].at[slots].set(priority["max_priority"]),
                "episode": priority["episode"].at[slots].set(episode), "last": priority["last"].at[slots].set(last)}

    def _new_leaf(self, priority: dict[str, jax.Array], hp: HParams) -> jax.Array:
        return priority["max_priority"] ** hp["alpha"]

    def reliabilities(self, state: ReplayState) -> jax.Array:
        """``float32[capacity]``: ``R`` of every slot from the stored ``p`` (0 for unwritten slots)."""
        full = state.size == self.capacity
        oldest = jnp.where(full, state.ptr // self.streams, 0)
        p = state.priority
        return reliability(p["td"], p["episode"], p["last"], written(state, self.capacity), oldest, self.streams)

    def _reprioritise(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams,
                      progress: jax.Array) -> ReplayState:
        p = jnp.abs(td_errors) + hp["priority_eps"]
        priority = {**state.priority, "td": store_max(state.priority["td"], indices, p),
                    "max_priority": jnp.maximum(state.priority["max_priority"], jnp.max(p))}
        state = state.replace(priority=priority)
        r = self.reliabilities(state)
        held = r > 0
        log_r, log_p = jnp.log(jnp.where(held, r, 1.0)), jnp.log(jnp.where(held, priority["td"], 1.0))
        leaves = jnp.where(held, jnp.exp(hp["omega"] * log_r + hp["alpha"] * log_p), 0.0)  # XLA:CPU's pow: ~20x slower
        return state.replace(tree=self._rebuild(leaves))
