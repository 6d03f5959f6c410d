"""A small dense linear solver in plain JAX operations.

JAX's CPU ``solve`` calls a LAPACK kernel that parallelises batches over XLA's intra-op thread pool;
when several host devices (one per core, as jaxq's sweeps use them) run such a kernel at once, they
can wait on each other forever. The systems here are tiny (one per lane, ``S <= a few hundred``), so
Gauss-Jordan elimination written in ``jnp`` is fast, deterministic and safe under ``vmap`` and
``shard_map``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``x`` with ``a @ x = b`` for one square system ``a [n, n]``, ``b [n]`` or ``[n, k]``.

    Gauss-Jordan elimination with partial pivoting: column ``j`` is eliminated from every other row
    after swapping in the row (at or below ``j``) with the largest ``|a_ij|``.
    """
    n = a.shape[-1]
    vector = b.ndim == 1
    m = jnp.concatenate([a, b[:, None] if vector else b], axis=1)
    rows = jnp.arange(n)

    def eliminate(j, m):
        p = jnp.argmax(jnp.where(rows >= j, jnp.abs(m[:, j]), -1.0))
        row_j, row_p = m[j], m[p]
        m = m.at[p].set(row_j).at[j].set(row_p)
        pivot_row = row_p / row_p[j]
        m = m - m[:, j][:, None] * pivot_row[None, :]
        return m.at[j].set(pivot_row)

    x = jax.lax.fori_loop(0, n, eliminate, m)[:, n:]
    return x[:, 0] if vector else x
