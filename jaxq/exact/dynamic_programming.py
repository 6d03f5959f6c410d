"""Exact dynamic programming on a :class:`~jaxq.types.TabularMDP`.

Conventions: ``Q`` is ``[S, A]``; terminal states have value zero by definition; a discount
``gamma`` lies in ``[0, 1)``. Every function is pure, jitted (so calls from Python compile once per
shape), and ``vmap``s over a leading batch of MDPs and/or discounts.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxq.exact.linalg import solve
from jaxq.types import TabularMDP


def state_values(mdp: TabularMDP, q: jax.Array) -> jax.Array:
    """``V(s) = max_a Q(s, a)``, with ``V = 0`` on terminal states."""
    return jnp.where(mdp.terminal, 0.0, q.max(-1))


@jax.jit
def bellman_backup(mdp: TabularMDP, q: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """One synchronous Bellman optimality backup.

    ``(T Q)(s, a) = R(s, a) + gamma * sum_s' P(s' | s, a) max_a' Q(s', a')``, and 0 on terminal rows.
    """
    backed_up = mdp.R + gamma * mdp.P @ state_values(mdp, q)
    return jnp.where(mdp.terminal[:, None], 0.0, backed_up)


@partial(jax.jit, static_argnames="num_iterations")
def value_iteration(mdp: TabularMDP, gamma: jax.Array | float, num_iterations: int,
                    q0: jax.Array | None = None) -> jax.Array:
    """The whole value-iteration path ``[Q_0, T Q_0, ..., T^n Q_0]`` as ``[n + 1, S, A]``.

    ``Q_0`` defaults to zeros. ``T`` is a ``gamma``-contraction in the sup norm, so
    ``||Q_k - Q*||_inf <= gamma^k ||Q_0 - Q*||_inf`` for every ``k``.
    """
    q0 = jnp.zeros_like(mdp.R) if q0 is None else jnp.asarray(q0, mdp.R.dtype)

    def backup(q, _):
        q_next = bellman_backup(mdp, q, gamma)
        return q_next, q_next

    _, path = jax.lax.scan(backup, q0, None, length=num_iterations)
    return jnp.concatenate([q0[None], path], axis=0)


def _policy_matrix(mdp: TabularMDP, policy: jax.Array) -> jax.Array:
    """``[S, A]`` action probabilities from deterministic actions ``[S]`` or probabilities ``[S, A]``."""
    if policy.ndim == mdp.R.ndim - 1:
        return jax.nn.one_hot(policy, mdp.num_actions, dtype=mdp.R.dtype)
    return policy.astype(mdp.R.dtype)


@jax.jit
def policy_evaluation(mdp: TabularMDP, policy: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """``Q^pi`` by solving the linear Bellman equation exactly.

    ``V^pi = (I - gamma P_pi)^{-1} r_pi`` with ``P_pi(s, s') = sum_a pi(a|s) P(s'|s, a)`` and
    ``r_pi(s) = sum_a pi(a|s) R(s, a)`` (terminal rows zeroed), then
    ``Q^pi(s, a) = R(s, a) + gamma sum_s' P(s'|s, a) V^pi(s')``.

    Args:
        policy: deterministic actions ``[S]`` (ints) or action probabilities ``[S, A]``.
    """
    pi = _policy_matrix(mdp, policy)
    live = jnp.logical_not(mdp.terminal)
    P_pi = jnp.einsum("sa,sat->st", pi, mdp.P) * live[:, None]
    r_pi = jnp.sum(pi * mdp.R, -1) * live
    v = solve(jnp.eye(mdp.num_states, dtype=mdp.R.dtype) - gamma * P_pi, r_pi)
    q = mdp.R + gamma * mdp.P @ v
    return jnp.where(mdp.terminal[:, None], 0.0, q)


@jax.jit
def policy_value(mdp: TabularMDP, policy: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """``V^pi(s)`` for every state (see :func:`policy_evaluation`).

    For a deterministic policy on an MDP marked ``deterministic`` the path from each state is unique,
    and ``V`` comes from path doubling instead of a linear solve: with ``G_m(s)`` the discounted
    reward of the first ``m`` steps from ``s`` and ``n_m(s)`` the state reached,
    ``G_2m(s) = G_m(s) + gamma^m G_m(n_m(s))`` and ``n_2m = n_m o n_m``; 32 doublings cover
    ``2^32`` steps, beyond which ``gamma^(2^32)`` vanishes for every float32 ``gamma < 1``.
    """
    if mdp.deterministic and policy.ndim == mdp.R.ndim - 1:
        live = jnp.logical_not(mdp.terminal)
        reward = jnp.where(live, jnp.take_along_axis(mdp.R, policy[:, None], 1)[:, 0], 0.0)
        successor = jnp.where(live, jnp.argmax(mdp.P[jnp.arange(mdp.num_states), policy], -1),
                              jnp.arange(mdp.num_states))

        def double(carry, _):
            g, nxt, discount = carry
            return (g + discount * g[nxt], nxt[nxt], discount * discount), None

        start = (reward, successor, jnp.asarray(gamma, mdp.R.dtype))
        return jax.lax.scan(double, start, None, length=32)[0][0]
    q = policy_evaluation(mdp, policy, gamma)
    return jnp.sum(_policy_matrix(mdp, policy) * q, -1)


def greedy_policy(q: jax.Array) -> jax.Array:
    """``argmax_a Q(s, a)`` (lowest index on ties)."""
    return jnp.argmax(q, axis=-1)


@partial(jax.jit, static_argnames="max_iterations")
def q_star(mdp: TabularMDP, gamma: jax.Array | float, max_iterations: int = 100) -> jax.Array:
    """The optimal action values ``Q*`` by policy iteration.

    Each round evaluates the current policy exactly and switches a state's action only where another
    action is better by more than a relative 1e-5 (so float noise cannot make it cycle; being
    relative, it still resolves values as small as float32 allows, e.g. ``0.5^60``). Policy
    iteration stops after finitely many rounds, in practice a handful; ``max_iterations`` is a
    safety cap.
    """
    def improve(policy, q):
        best = greedy_policy(q)
        current = jnp.take_along_axis(q, policy[:, None], axis=1)[:, 0]
        gain = q.max(-1) - current
        return jnp.where(gain > 1e-5 * jnp.abs(current), best, policy)

    def cond(carry):
        i, _, changed = carry
        return jnp.logical_and(i < max_iterations, changed)

    def body(carry):
        i, policy, _ = carry
        new_policy = improve(policy, policy_evaluation(mdp, policy, gamma))
        return i + 1, new_policy, jnp.any(new_policy != policy)

    # Start from the greedy policy of S value-iteration sweeps: on deterministic MDPs that is already
    # optimal (values have propagated along every path of length <= S), elsewhere it is close, and
    # policy iteration then needs a round or two instead of one round per state of a long chain.
    start = greedy_policy(value_iteration(mdp, gamma, mdp.num_states)[-1])
    _, policy, _ = jax.lax.while_loop(cond, body, (0, start, True))
    return policy_evaluation(mdp, policy, gamma)


@jax.jit
def v_star(mdp: TabularMDP, gamma: jax.Array | float) -> jax.Array:
    """``V*(s) = max_a Q*(s, a)`` (zero on terminal states)."""
    return state_values(mdp, q_star(mdp, gamma))


@jax.jit
def occupancy(mdp: TabularMDP, policy: jax.Array, gamma: jax.Array | float = 1.0) -> jax.Array:
    """Expected discounted number of visits to each ``(s, a)`` per episode, ``[S, A]``.

    ``d = mu0^T (I - gamma P_pi)^{-1}`` over non-terminal states, times ``pi(a|s)``. With
    ``gamma = 1`` the policy must end episodes with probability one. Normalise it to get the
    on-policy visitation distribution used to weight projections.
    """
    pi = _policy_matrix(mdp, policy)
    live = jnp.logical_not(mdp.terminal)
    P_pi = jnp.einsum("sa,sat->st", pi, mdp.P) * live[:, None] * live[None, :]
    eye = jnp.eye(mdp.num_states, dtype=mdp.R.dtype)
    d = solve((eye - gamma * P_pi).T, mdp.initial * live)
    return d[:, None] * pi
