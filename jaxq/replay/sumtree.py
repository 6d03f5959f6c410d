"""A binary sum tree in one flat float32 array: stratified sampling and exact (drift-free) writes.

Layout: level ``d`` (the root is level 0, the leaves level ``L``) holds ``2**d`` nodes at
``tree[2**d - 1 : 2**(d + 1) - 1]``; every internal node is ``fl(left + right)`` of its two children,
computed from the children (never by adding deltas), so the root equals the float32 sum of the
leaves as the tree computes it, however many writes came before (no drift).

Invariants the buffers keep: every leaf is ``>= 0``; leaves past the written slots are 0.
Under them :func:`sample` never returns a zero leaf while the total is positive: at every node
it goes right only when the query is past the left child *and* the right child is positive.

XLA:CPU notes (measured, they decide the shape of this code):

* the descent and the ancestor updates run in ``fori_loop``s, not unrolled Python loops: unrolled,
  XLA fused the whole chain of index arithmetic into every later gather and scatter (``O(L^2)``
  work, 3-5x slower);
* :func:`sample` returns the drawn leaves' values and the total from inside its loop. A read of
  the old tree that XLA may schedule after a later in-place write (``tree[0]`` used by the
  importance weights, say) makes it copy the whole tree every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def depth(capacity: int) -> int:
    """Number of levels below the root: the leaves are ``2**depth >= capacity`` slots."""
    return max(0, (capacity - 1).bit_length())


def offset(level: int | jax.Array) -> int | jax.Array:
    """Index of the first node of ``level`` in the flat array."""
    return (1 << level) - 1


def empty(capacity: int) -> jax.Array:
    """An all-zero tree over ``capacity`` leaves."""
    return jnp.zeros(2 * (1 << depth(capacity)) - 1, jnp.float32)


def from_leaves(leaves: jax.Array) -> jax.Array:
    """The tree over ``leaves`` (length a power of two), built bottom-up in ``O(N)``."""
    levels = [leaves.astype(jnp.float32)]
    while levels[-1].shape[0] > 1:
        levels.append(levels[-1].reshape(-1, 2).sum(axis=1))
    return jnp.concatenate(levels[::-1])


def leaves(tree: jax.Array, capacity: int) -> jax.Array:
    """The ``capacity`` leaf values (slot order)."""
    start = offset(depth(capacity))
    return tree[start:start + capacity]


def total(tree: jax.Array) -> jax.Array:
    return tree[0]


def _recompute_top(tree: jax.Array, level: int) -> jax.Array:
    """Recompute levels ``level - 1 ... 0`` densely from ``level`` (cheap when ``2**level`` is small)."""
    if level == 0:
        return tree
    above = [tree[offset(level):offset(level + 1)]]
    for _ in range(level):
        above.append(above[-1].reshape(-1, 2).sum(axis=1))
    top = jnp.arange(offset(level))
    return tree.at[top].set(jnp.concatenate(above[:0:-1]), mode="promise_in_bounds", unique_indices=True,
                            indices_are_sorted=True)


def set_leaves(tree: jax.Array, capacity: int, slots: jax.Array, values: jax.Array) -> jax.Array:
    """Set the leaves at ``slots`` to ``values`` and recompute their ancestors from their children.

    A slot given several times gets the largest of its values (a scatter-max, so the result does
    not depend on the order in which the backend applies duplicate writes). Levels with at most
    ``2 * len(slots)`` nodes are recomputed densely; below them each level is one batched gather of
    the touched nodes' children and one batched scatter of their sums.
    """
    levels = depth(capacity)
    node = offset(levels) + slots
    tree = tree.at[node].set(0.0).at[node].max(values.astype(jnp.float32))
    dense = min(levels, max(0, (2 * slots.shape[0] - 1).bit_length()))

    def up(i, carry):
        tree, idx = carry
        level = levels - 1 - i
        idx = idx // 2
        child = offset(level + 1) + 2 * idx
        return tree.at[offset(level) + idx].set(tree[child] + tree[child + 1]), idx

    tree, _ = jax.lax.fori_loop(0, levels - dense, up, (tree, slots))
    return _recompute_top(tree, dense)


def sample(tree: jax.Array, capacity: int, key: jax.Array, n: int,
           smallest: bool = False) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Stratified proportional sampling of ``n`` slots.

    Query ``j`` is ``u_j * total`` with ``u_j = (j + U[0, 1)) / n``; it descends from the root,
    going right when it is ``>=`` the left child's sum (and the right child is positive),
    subtracting the left sum. Returns ``(slots, leaf_values, total, smallest_leaf)``, the last the
    smallest positive leaf of the whole tree when ``smallest`` (an ``O(N)`` reduction), else ``inf``.
    An empty tree gives slot 0 with leaf and total 0.
    """
    levels = depth(capacity)
    low = jnp.float32(jnp.inf)
    if levels == 0:
        low = jnp.where(tree[0] > 0, tree[0], low) if smallest else low
        return jnp.zeros(n, jnp.int32), jnp.broadcast_to(tree[0], (n,)), tree[0], low
    u = (jnp.arange(n, dtype=jnp.float32) + jax.random.uniform(key, (n,))) / n
    query = u * tree[0]

    def smallest_leaf():
        bottom = tree[offset(levels):]
        return jnp.min(jnp.where(bottom > 0, bottom, jnp.inf))

    def down(level, carry):
        idx, query, value, root, low = carry
        child = offset(level) + 2 * idx
        left, right = tree[child], tree[child + 1]
        right_way = (query >= left) & (right > 0)
        root = jnp.where(level == 1, left[0] + right[0], root)  # == tree[0], read inside the loop
        if smallest:  # computed in the loop too, so no read of this tree is left for after it
            low = jax.lax.cond(level == 1, smallest_leaf, lambda: low)
        return (2 * idx + right_way.astype(jnp.int32), jnp.where(right_way, query - left, query),
                jnp.where(right_way, right, left), root, low)

    init = (jnp.zeros(n, jnp.int32), query, jnp.zeros(n, jnp.float32), jnp.float32(0.0), low)
    idx, _, value, root, low = jax.lax.fori_loop(1, levels + 1, down, init)
    return idx, value, root, low
