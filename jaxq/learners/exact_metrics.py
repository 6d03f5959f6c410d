"""Exact metrics of a learner's values on a finite environment (the opt-in of the learner contract).

On an environment with a tabular model (:class:`~jaxq.envs.FiniteEnv`) a learner can compare its
``Q`` with the exact ``Q*`` of its own lane (its MDP and its discount) at every log point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq import exact
from jaxq.types import TabularMDP


def value_metrics(mdp: TabularMDP, q: jax.Array, q_star: jax.Array, gamma: jax.Array, *,
                  bias: bool = True, policy_value: bool = True) -> dict[str, jax.Array]:
    """What a learner on a finite environment logs about its current ``Q`` (``[S, A]``).

    * ``error = max_{(s, a) scored} |Q(s, a) - Q*(s, a)|`` over valid non-terminal pairs;
    * ``bias[s] = Q(s, a*) - Q*(s, a*)`` at the optimal action ``a* = argmax Q*(s, .)`` (0 elsewhere);
    * ``policy_value = sum_s mu0(s) V^pi(s)`` of the greedy policy ``pi = argmax Q``.
    """
    scored = mdp.scored[:, None]
    logs = {"error": jnp.max(jnp.where(scored, jnp.abs(q - q_star), 0.0))}
    if bias:
        best = exact.greedy_policy(q_star)[:, None]
        gap = jnp.take_along_axis(q - q_star, best, axis=1)[:, 0]
        logs["bias"] = jnp.where(mdp.scored, gap, 0.0)
    if policy_value:
        v = exact.policy_value(mdp, exact.greedy_policy(q), gamma)
        logs["policy_value"] = jnp.dot(mdp.initial, v)
    return logs
