"""Acting: epsilon schedules, epsilon-greedy behaviour from raw random bits, and the successor
summary every TD target reads (shared by all learners).

One step uses two uint32 words: ``word0`` decides whether to explore (its top 24 bits as a uniform
in [0, 1)), ``word1`` gives the random action (low 16 bits) and the random tie-break among greedy
actions (bits 16..30). Bit 31 of ``word1`` is left for learners that need a fair coin. Raw bits are
cheap under ``vmap``: no key is split per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq import td
from jaxq.hparams import HParams, positive_hparam, probability_hparam

SCHEDULES = ("constant", "linear")
EXPLORATION_HPARAMS = {
    "epsilon": probability_hparam("epsilon", 0.1, "exploration rate (the start value when decayed)"),
    "epsilon_final": probability_hparam("epsilon_final", 0.01, "final exploration rate (linear decay)"),
    "epsilon_decay_steps": positive_hparam("epsilon_decay_steps", 1000.0, "steps of the linear decay"),
}


def epsilon_at(t: jax.Array, hp: HParams, schedule: str) -> jax.Array:
    """Exploration rate at step ``t``: constant ``epsilon``, or linear
    ``epsilon + (epsilon_final - epsilon) * min(1, t / epsilon_decay_steps)``."""
    if schedule == "constant":
        return hp["epsilon"]
    fraction = jnp.minimum(1.0, t / hp["epsilon_decay_steps"])
    return hp["epsilon"] + (hp["epsilon_final"] - hp["epsilon"]) * fraction


def uniform_from_bits(word: jax.Array) -> jax.Array:
    """A float32 uniform in [0, 1) from the top 24 bits of a uint32 word."""
    return (word >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def coin_from_bits(word: jax.Array) -> jax.Array:
    """A fair 0/1 integer from bit 31."""
    return (word >> 31).astype(jnp.int32)


def greedy_mask(q: jax.Array) -> jax.Array:
    """``[A]`` True for every action attaining ``max_a q``."""
    return q >= jnp.max(q, axis=-1, keepdims=True)


def greedy_action(q: jax.Array, word: jax.Array) -> jax.Array:
    """An argmax of ``q``; ties broken by a random cyclic offset (uniform among two tied actions)."""
    A = q.shape[-1]
    offset = ((word >> 16) & 0x7FFF) % A
    rank = (jnp.arange(A) - offset) % A  # 0 for the first action looked at
    return jnp.argmin(jnp.where(greedy_mask(q), rank, A), axis=-1).astype(jnp.int32)


def epsilon_greedy_action(q: jax.Array, epsilon: jax.Array, bits: jax.Array) -> jax.Array:
    """With probability ``epsilon`` a uniform action, otherwise a greedy one."""
    A = q.shape[-1]
    explore = uniform_from_bits(bits[0]) < epsilon
    random_action = ((bits[1] & 0xFFFF) % A).astype(jnp.int32)
    return jnp.where(explore, random_action, greedy_action(q, bits[1]))


def epsilon_greedy_probs(q: jax.Array, epsilon: jax.Array) -> jax.Array:
    """``pi(a) = epsilon / A + (1 - epsilon) [a greedy] / #greedy``: the exact behaviour distribution."""
    mask = greedy_mask(q).astype(q.dtype)
    A = q.shape[-1]
    return epsilon / A + (1.0 - epsilon) * mask / jnp.sum(mask, axis=-1, keepdims=True)


def successor(q_online: jax.Array, q_target: jax.Array, epsilon: jax.Array, bits: jax.Array,
              behaviour: jax.Array | None = None) -> td.Bootstrap:
    """What a TD target may use about ``s'``: both value estimates, the epsilon-greedy distribution
    of the behaviour values (``q_online`` unless given, e.g. the sum of a double estimator's tables)
    and the action it draws with ``bits``."""
    behaviour = q_online if behaviour is None else behaviour
    return td.Bootstrap(
        q_online=q_online,
        q_target=q_target,
        policy=epsilon_greedy_probs(behaviour, epsilon),
        action=epsilon_greedy_action(behaviour, epsilon, bits),
    )
