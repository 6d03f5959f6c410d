"""Replay buffers as pure functions over one lane's state, made by name.

::

    import jaxq.replay
    buffer = jaxq.replay.make("per", capacity=2**17)
    hp = buffer.hparams(alpha=0.6)                       # {name: float32 scalar}
    state = buffer.init(example_transition)              # one lane; vmap init for many
    state = buffer.add(state, transitions, episode, last, hp)   # k items, one batched write
    sample = buffer.sample(state, key, 256, hp, progress)       # experience, indices, probabilities, weights
    state = buffer.set_priorities(state, sample.indices, td_errors, hp, progress)

``buffer`` is a frozen, hashable object of static settings (capacity, ...); its methods are pure,
jit- and vmap-able, and work inside ``lax.scan`` with the state donated. ``hp`` holds the buffer's
sweepable hyper-parameters (``buffer.hyperparameters``: name -> :class:`jaxq.hparams.HParam`),
each a per-lane scalar under ``vmap``; ``progress`` in [0, 1] is the fraction of training done,
which drives the schedules. Names: see :data:`BUFFERS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxq.replay.annealed import AnnealedBuffer
from jaxq.replay.base import ReplayBuffer, ReplayState, Sample
from jaxq.replay.prioritised import PrioritisedBuffer, ProportionalBuffer
from jaxq.replay.rank import RankBuffer
from jaxq.replay.reaper import ReaperBuffer
from jaxq.replay.uniform import UniformBuffer
from jaxq.validation import check_choice

_CLASSES: dict[str, type[ReplayBuffer]] = {
    cls.name: cls for cls in (UniformBuffer, ProportionalBuffer, RankBuffer, ReaperBuffer, AnnealedBuffer)
}

BUFFERS: dict[str, str] = {
    "uniform": "uniform replay: every stored transition equally likely",
    "per": "proportional prioritised replay (Schaul et al. 2016): P ~ (|TD error| + eps)^alpha",
    "per-rank": "rank-based prioritised replay (Schaul et al. 2016): P ~ rank(|TD error|)^-alpha",
    "reaper": "reliability-adjusted PER (Pleiss et al. 2025): P ~ R^omega (|TD error| + eps)^alpha, "
              "R from the TD errors of the rest of the episode",
    "annealed": "the seed article's annealed rule: P ~ (|TD error| + eps)^alpha (1 - rho)^omega, alpha 0.7 -> 0.1, "
                "omega 0 -> 0.5, rho the normalised spread of a transition's TD errors",
}

__all__ = ["BUFFERS", "make", "ReplayBuffer", "ReplayState", "Sample", "PrioritisedBuffer", "UniformBuffer",
           "ProportionalBuffer", "RankBuffer", "ReaperBuffer", "AnnealedBuffer"]


def make(name: str, capacity: int = 2**17, **static: Any) -> ReplayBuffer:
    """The replay buffer ``name`` (one of :data:`BUFFERS`) with ``capacity`` slots.

    ``static`` options: ``weights="batch"|"memory"`` (importance-weight normalisation) for every
    prioritised buffer; ``streams`` (parallel environments interleaved by ``add``) for ``reaper``;
    ``rerank_every`` (a full sort every that many updates, look-ups in between) for ``per-rank``.

    Raises:
        ValueError: an unknown name, ``capacity < 1``, or an unknown or bad static option.
    """
    check_choice("replay", name, BUFFERS)
    cls = _CLASSES[name]
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "capacity"]
    unknown = sorted(set(static) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an option of replay {name!r}; "
                         f"allowed: {', '.join(allowed) or 'none besides capacity'}")
    return cls(capacity=capacity, **static)
