"""TD targets as small pure functions: the prototyping surface of jaxq.

Every target has the same signature::

    target(reward, discount, successor: Bootstrap) -> scalar

where ``discount = gamma * (1 - terminated)`` (0 when the transition ended the episode, ``gamma``
otherwise -- also when it was merely truncated by a time limit), and ``successor`` holds what the
learner knows about the next state ``s'``. Learners ``vmap`` these over lanes and batches. A new TD
variant is one more function with this signature; see :func:`soft_q_learning` for a worked example.
"""

from __future__ import annotations

from typing import Protocol

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Bootstrap:
    """What a TD target may use about the successor state ``s'``.

    Attributes:
        q_online: ``[A]`` values of the estimate being learned (selects actions).
        q_target: ``[A]`` values of the evaluating estimate: a target network, the other table of a
            double estimator, or ``q_online`` itself for a single estimator.
        policy: ``[A]`` behaviour-policy probabilities at ``s'`` (e.g. epsilon-greedy).
        action: the action the behaviour policy takes (or would take) at ``s'``.
    """

    q_online: jax.Array
    q_target: jax.Array
    policy: jax.Array
    action: jax.Array


class TDTarget(Protocol):
    def __call__(self, reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array: ...


def _check(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> None:
    chex.assert_rank([reward, discount, successor.action], 0)
    chex.assert_rank([successor.q_online, successor.q_target, successor.policy], 1)
    chex.assert_equal_shape([successor.q_online, successor.q_target, successor.policy])


def q_learning(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array:
    """Q-learning (Watkins 1989): ``y = r + discount * max_a Q_target(s', a)``."""
    _check(reward, discount, successor)
    return reward + discount * jnp.max(successor.q_target)


def double_q_learning(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array:
    """Double Q-learning (van Hasselt 2010; Double DQN 2016).

    ``y = r + discount * Q_target(s', argmax_a Q_online(s', a))``: one estimate picks the action,
    the other evaluates it, which removes the maximisation bias of :func:`q_learning`.
    """
    _check(reward, discount, successor)
    return reward + discount * successor.q_target[jnp.argmax(successor.q_online)]


def sarsa(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array:
    """SARSA (Rummery & Niranjan 1994): ``y = r + discount * Q_target(s', a')`` with ``a'`` taken by
    the behaviour policy (on-policy)."""
    _check(reward, discount, successor)
    return reward + discount * successor.q_target[successor.action]


def expected_sarsa(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array:
    """Expected SARSA (van Seijen et al. 2009):
    ``y = r + discount * sum_a pi(a|s') Q_target(s', a)``."""
    _check(reward, discount, successor)
    return reward + discount * jnp.dot(successor.policy, successor.q_target)


def soft_q_learning(temperature: float = 0.1) -> TDTarget:
    """Soft (entropy-regularised) Q-learning, as an example of bringing your own target:
    ``y = r + discount * tau * log sum_a exp(Q_target(s', a) / tau)``; ``tau -> 0`` is Q-learning."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is not allowed; it must be > 0")

    def target(reward: jax.Array, discount: jax.Array, successor: Bootstrap) -> jax.Array:
        _check(reward, discount, successor)
        soft_max = temperature * jax.nn.logsumexp(successor.q_target / temperature)
        return reward + discount * soft_max

    target.__name__ = f"soft_q_learning(temperature={temperature:g})"
    return target


def n_step_return(rewards: jax.Array, discounts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Fold ``n`` consecutive transitions into one: ``(G, D)`` with

    ``G = sum_{k<n} (prod_{j<k} d_j) r_k`` and ``D = prod_{k<n} d_k``.

    Any one-step target applied to ``(G, D, successor of the n-th transition)`` is then its n-step
    version, e.g. n-step Q-learning ``y = G + D max_a Q(s_{t+n}, a)``. A zero discount (episode end)
    cuts the sum and the bootstrap.
    """
    chex.assert_rank([rewards, discounts], 1)
    chex.assert_equal_shape([rewards, discounts])
    before = jnp.concatenate([jnp.ones((1,), discounts.dtype), jnp.cumprod(discounts)[:-1]])
    return jnp.sum(before * rewards), jnp.prod(discounts)
