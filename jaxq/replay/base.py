"""What every replay buffer shares: the state and sample types, the ring write, the argument checks.

A buffer is a frozen, hashable object of static settings whose methods are pure functions of one
lane's :class:`ReplayState`; ``jax.vmap`` over states (and hyper-parameters) runs one independent
buffer per lane. Every method checks its arguments in Python first, so shapes, names and any
concrete values are validated before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.hparams import HParam, HParams
from jaxq.validation import check_count, check_range


@struct.dataclass
class Sample:
    """A sampled batch.

    Attributes:
        experience: the stored items, each leaf ``[batch_size, ...]``.
        indices: ``int32[batch_size]`` their slots (give them back to ``set_priorities``).
        probabilities: ``P(i)`` with which each slot is drawn (0 only from an empty buffer).
        weights: importance-sampling weights ``(N P(i))^-beta / max_j (N P(j))^-beta``, in (0, 1].
    """

    experience: Any
    indices: jax.Array
    probabilities: jax.Array
    weights: jax.Array


@struct.dataclass
class ReplayState:
    """One lane's buffer.

    Attributes:
        storage: the items, each leaf ``[capacity, ...]``.
        ptr: ``int32`` the next slot written (the oldest item once the ring is full).
        size: ``int32`` how many slots hold an item (slots ``0 .. size - 1``).
        tree: the sum tree of the sampling priorities (:mod:`jaxq.replay.sumtree`); empty for
            uniform replay.
        priority: the priority rule's bookkeeping: per-slot arrays (``[capacity]``: TD errors,
            episode ids, ...) and scalars (the running max priority, ...).
    """

    storage: Any
    ptr: jax.Array
    size: jax.Array
    tree: jax.Array
    priority: dict[str, jax.Array]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a value now (not a tracer inside ``jit`` / ``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def anneal(start: jax.Array, final: jax.Array, progress: jax.Array) -> jax.Array:
    """Linear schedule ``start + (final - start) * clip(progress, 0, 1)``."""
    return start + (final - start) * jnp.clip(progress, 0.0, 1.0)


def when(due: jax.Array, work: Callable[[Any], Any], operand: Any) -> Any:
    """``work(operand)`` if ``due``, else ``operand``, paying for ``work`` only when it is due.

    Written as a while loop of at most one trip rather than ``lax.cond``: under ``vmap`` a ``cond``
    with a per-lane ``due`` becomes a select that runs ``work`` in every lane on every call, while a
    batched while loop runs its body only while some lane is due (and keeps the other lanes as they
    were). Lanes that share a schedule (every lane of a sweep) thus do the work only when it is due.
    The body reads ``operand`` through an optimisation barrier tied to ``due``: parts of it that
    the work leaves unchanged are loop-invariant, and XLA would otherwise hoist the work done on
    them (a sort, say) out of the loop, running it on every call.
    """
    def body(carry):
        operand, _ = jax.lax.optimization_barrier((carry[1], carry[0]))
        return jnp.bool_(False), work(operand)

    return jax.lax.while_loop(lambda carry: carry[0], body, (jnp.asarray(due, bool), operand))[1]


def written(state: ReplayState, capacity: int) -> jax.Array:
    """``bool[capacity]``: slots that hold an item (the ring fills ``0, 1, ...`` before it wraps)."""
    return jnp.arange(capacity) < state.size


@dataclasses.dataclass(frozen=True)
class ReplayBuffer:
    """Static settings and the pure functions of a replay buffer (see :mod:`jaxq.replay`)."""

    capacity: int = 2**17

    name: ClassVar[str] = ""
    hyperparameters: ClassVar[dict[str, HParam]] = {}

    def __post_init__(self) -> None:
        check_count(self.capacity, "capacity")

    # -- hyper-parameters -------------------------------------------------------------------------
    def hparams(self, **values: Any) -> HParams:
        """The buffer's hyper-parameters as float32 scalars: defaults, overridden by ``values``.

        Raises:
            ValueError: an unknown name, or a value its check rejects.
        """
        unknown = sorted(set(values) - set(self.hyperparameters))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a hyper-parameter of replay {self.name!r}; "
                             f"allowed: {', '.join(self.hyperparameters) or 'none'}")
        merged = {name: values.get(name, h.default) for name, h in self.hyperparameters.items()}
        return {name: jnp.asarray(self.hyperparameters[name].check(v), jnp.float32) for name, v in merged.items()}

    def check_hparams(self, hp: HParams | None) -> None:
        """Every hyper-parameter is present; those with concrete values pass their checks."""
        hp = {} if hp is None else hp
        missing = [name for name in self.hyperparameters if name not in hp]
        if missing:
            raise ValueError(f"hp lacks {', '.join(map(repr, missing))}, needed by replay {self.name!r}; "
                             f"start from buffer.hparams()")
        for name, h in self.hyperparameters.items():
            if jnp.ndim(hp[name]) != 0:
                raise ValueError(f"{name} has shape {jnp.shape(hp[name])}; a buffer's hyper-parameters are "
                                 "scalars (one value per buffer: vmap over buffers to sweep them)")
            if is_concrete(hp[name]):
                h.check(np.asarray(hp[name]))

    # -- the interface ----------------------------------------------------------------------------
    def init(self, example_item: Any) -> ReplayState:
        """An empty buffer for items shaped like ``example_item`` (one transition, no batch axis)."""
        storage = jax.tree.map(lambda x: jnp.zeros((self.capacity, *jnp.shape(x)), jnp.asarray(x).dtype),
                               example_item)
        return ReplayState(storage=storage, ptr=jnp.int32(0), size=jnp.int32(0),
                           tree=self._init_tree(), priority=self._init_priority())

    def add(self, state: ReplayState, items: Any, episode: jax.Array | None = None,
            last: jax.Array | None = None, hp: HParams | None = None) -> ReplayState:
        """Write ``k`` items (each leaf ``[k, ...]``) at slots ``(ptr + arange(k)) % capacity``.

        ``episode`` (``int32[k]``) and ``last`` (``bool[k]``, the item ends its episode) are used by
        the rules that need episodes; ``hp`` by those whose new-item priority depends on it.
        """
        k = self._check_items(state, items)
        episode, last = self._check_episode_args(k, episode, last)
        slots = (state.ptr + jnp.arange(k, dtype=jnp.int32)) % self.capacity
        storage = jax.tree.map(lambda s, x: s.at[slots].set(jnp.asarray(x, s.dtype)), state.storage, items)
        new = state.replace(storage=storage, ptr=(state.ptr + k) % self.capacity,
                            size=jnp.minimum(state.size + k, self.capacity))
        return self._after_add(new, slots, episode, last, hp)

    def sample(self, state: ReplayState, key: jax.Array, batch_size: int, hp: HParams | None = None,
               progress: Any = 0.0) -> Sample:
        """Draw ``batch_size`` items (with replacement); see the subclass for ``P(i)`` and weights."""
        batch_size = self._check_sample(state, batch_size, progress)
        indices, probabilities, weights = self._draw(state, key, batch_size, hp, jnp.asarray(progress, jnp.float32))
        return Sample(experience=self.read(state, indices), indices=indices, probabilities=probabilities, weights=weights)

    def set_priorities(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array,
                       hp: HParams | None = None, progress: Any = 0.0) -> ReplayState:
        """Give the sampled slots their new TD errors (signed or absolute, ``float32[batch]``)."""
        indices, td_errors = jnp.asarray(indices), jnp.asarray(td_errors, jnp.float32)
        if indices.ndim != 1 or td_errors.shape != indices.shape:
            raise ValueError(f"indices {indices.shape} and td_errors {td_errors.shape} must be two vectors of "
                             "the same length (one TD error per sampled slot)")
        if is_concrete(indices) and np.any((np.asarray(indices) < 0) | (np.asarray(indices) >= self.capacity)):
            raise ValueError(f"indices must be slots in [0, {self.capacity}); got {np.asarray(indices).tolist()[:8]}")
        if is_concrete(td_errors) and not np.all(np.isfinite(np.asarray(td_errors))):
            raise ValueError("td_errors must be finite; a NaN or infinite TD error would poison every priority")
        self._check_progress(progress)
        return self._update(state, indices.astype(jnp.int32), td_errors, hp, jnp.asarray(progress, jnp.float32))

    def read(self, state: ReplayState, indices: jax.Array) -> Any:
        """The items at slots ``indices`` (each leaf ``[*indices.shape, ...]``), e.g. an n-step window."""
        return jax.tree.map(lambda s: s[indices], state.storage)

    def newer(self, state: ReplayState, indices: jax.Array) -> jax.Array:
        """How many items were written after the item at each slot (0 for the newest)."""
        return (state.ptr - 1 - indices) % self.capacity

    def probabilities(self, state: ReplayState) -> jax.Array:
        """``float32[capacity]``: the probability with which ``sample`` draws each slot now."""
        raise NotImplementedError

    # -- what the rules implement -----------------------------------------------------------------
    def _init_tree(self) -> jax.Array:
        return jnp.zeros(0, jnp.float32)

    def _init_priority(self) -> dict[str, jax.Array]:
        return {}

    def _after_add(self, state: ReplayState, slots: jax.Array, episode: jax.Array | None,
                   last: jax.Array | None, hp: HParams | None) -> ReplayState:
        return state

    def _draw(self, state: ReplayState, key: jax.Array, batch_size: int, hp: HParams | None,
              progress: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        raise NotImplementedError

    def _update(self, state: ReplayState, indices: jax.Array, td_errors: jax.Array, hp: HParams | None,
                progress: jax.Array) -> ReplayState:
        return state

    # -- checks -----------------------------------------------------------------------------------
    def _check_items(self, state: ReplayState, items: Any) -> int:
        want = jax.tree.structure(state.storage)
        if jax.tree.structure(items) != want:
            raise ValueError(f"items have structure {jax.tree.structure(items)}, the buffer stores {want}")
        ks = set()
        for stored, x in zip(jax.tree.leaves(state.storage), jax.tree.leaves(items)):
            shape = jnp.shape(x)
            if len(shape) != stored.ndim or tuple(shape[1:]) != stored.shape[1:]:
                raise ValueError(f"an item leaf has shape {tuple(shape)}; expected (k, *{stored.shape[1:]}) "
                                 "with k items along the leading axis")
            ks.add(shape[0])
        if len(ks) != 1:
            raise ValueError(f"item leaves disagree on the number of items k: {sorted(ks)}")
        k = ks.pop()
        if not 1 <= k <= self.capacity:
            raise ValueError(f"add got k={k} items; 1 <= k <= capacity={self.capacity} items per call")
        return k

    def _check_episode_args(self, k: int, episode: Any, last: Any) -> tuple[jax.Array | None, jax.Array | None]:
        checked = []
        for name, value, dtype in (("episode", episode, jnp.int32), ("last", last, jnp.bool_)):
            if value is not None:
                if jnp.shape(value) != (k,):
                    raise ValueError(f"{name} has shape {jnp.shape(value)}; expected ({k},), one per item")
                value = jnp.asarray(value, dtype)
            checked.append(value)
        return checked[0], checked[1]

    def _check_progress(self, progress: Any) -> None:
        if jnp.ndim(progress) != 0:
            raise ValueError(f"progress has shape {jnp.shape(progress)}; expected a scalar in [0, 1]")
        if is_concrete(progress):
            check_range("progress", progress, 0.0, 1.0)

    def _check_sample(self, state: ReplayState, batch_size: Any, progress: Any) -> int:
        """``batch_size`` as an int, once it and the buffer can give a sample."""
        batch_size = check_count(batch_size, "batch_size")
        if batch_size > self.capacity:
            raise ValueError(f"batch_size={batch_size} is larger than the capacity={self.capacity}; "
                             "a batch may not exceed the buffer")
        if is_concrete(state.size) and np.ndim(state.size) == 0 and int(state.size) == 0:
            raise ValueError("cannot sample from an empty buffer (size=0); add items first")
        self._check_progress(progress)
        return batch_size
