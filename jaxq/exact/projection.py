"""Least-squares projection of an action-value function onto a linear feature space.

The projection floor ``||Pi Q* - Q*||_inf`` is the best any linear approximator with these
features can do, whatever the learning rule; learned errors sit above it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq.exact.linalg import solve


@jax.jit
def project(q: jax.Array, features: jax.Array, weights: jax.Array | None = None,
            mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Weighted least-squares projection ``Pi Q = Phi theta``.

    ``theta = argmin_theta sum_{s,a} w(s,a) (Phi(s,a) . theta - Q(s,a))^2`` over the pairs in
    ``mask``, from the normal equations ``(Phi^T W Phi + lambda I) theta = Phi^T W Q`` with a ridge
    ``lambda = 1e-6 * mean diag(Phi^T W Phi)`` that only matters when the features are rank
    deficient (the projection ``Phi theta`` is then still the least-squares one, to ~1e-6).

    Args:
        q: ``[S, A]`` values to project.
        features: ``[S, A, K]`` feature vector of every state-action pair.
        weights: ``[S, A]`` non-negative weights (e.g. an on-policy visitation distribution);
            uniform when omitted.
        mask: ``[S, A]`` pairs that take part (e.g. valid non-terminal ones); all when omitted.

    Returns:
        ``(projected [S, A], theta [K])``.
    """
    w = jnp.ones_like(q) if weights is None else weights
    if mask is not None:
        w = jnp.where(mask, w, 0.0)
    phi = features.reshape(-1, features.shape[-1])
    gram = phi.T @ (w.reshape(-1, 1) * phi)
    ridge = 1e-6 * jnp.mean(jnp.diag(gram)) * jnp.eye(gram.shape[0], dtype=gram.dtype)
    theta = solve(gram + ridge, phi.T @ (w.reshape(-1) * q.reshape(-1)))
    return features @ theta, theta


@jax.jit
def projection_floor(q: jax.Array, features: jax.Array, weights: jax.Array | None = None,
                     mask: jax.Array | None = None) -> jax.Array:
    """``||Pi Q - Q||_inf`` over the masked pairs: the error floor of these features."""
    projected, _ = project(q, features, weights, mask)
    gap = jnp.abs(projected - q)
    return jnp.max(gap if mask is None else jnp.where(mask, gap, 0.0))
