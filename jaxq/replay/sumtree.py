"""An 8-ary sum tree in one flat float32 array: stratified sampling and exact (drift-free) writes.

Layout: level ``d`` (the root is level 0, the leaves level ``L``) holds ``8**d`` nodes starting at
``offset(d) = (8**d - 1) / 7``; the children of node ``i`` of level ``d`` are the 8 contiguous
nodes ``8 i ... 8 i + 7`` of level ``d + 1`` (one 32-byte read). Every internal node is the float32
sum of its children in a fixed order (:func:`_fold`), always recomputed from the children (never by
adding deltas), so however many writes came before, the tree equals the tree built from its
leaves bit for bit (no drift). ``8**L >= capacity``; leaves past the written slots are 0.

:func:`sample` never returns a zero leaf while the total is positive, wherever zeros sit and
however float32 rounds the query: at every node it takes the first child whose prefix sum exceeds
the query (a positive child, since prefix sums only grow), or the last positive child when
rounding left the query past them all.

XLA:CPU notes (measured on 256 lanes x 2^17 slots; they decide the shape of this code):

* 8 children per node: 6 levels of one contiguous read each instead of 17 dependent random reads
  of a binary tree; the prefix sums and the choice of child are unrolled elementwise operations
  on the 8 columns (``cumsum`` lowered to a slow reduce-window, ``argmax`` to reductions);
* the descent and the ancestor updates run in ``fori_loop``s: unrolled, XLA fused the chain of
  index arithmetic into every later gather and scatter;
* :func:`sample` returns the drawn leaves' values, the total (and the smallest leaf) from inside
  its loop: a read of the old tree that XLA may schedule after a later in-place write makes it
  copy the whole tree every step;
* the dense rewrite of the top levels is an index scatter promised in bounds: written as a slice
  update, ``vmap`` turned it into a scatter that XLA lowered to a select over the whole tree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ARITY = 8
_BITS = 3  # log2(ARITY)


def depth(capacity: int) -> int:
    """Number of levels below the root: the leaves are ``8**depth >= capacity`` slots."""
    return -(-max(0, (capacity - 1).bit_length()) // _BITS)


def offset(level: int | jax.Array) -> int | jax.Array:
    """Index of the first node of ``level`` in the flat array."""
    return ((1 << (_BITS * level)) - 1) // (ARITY - 1)


def empty(capacity: int) -> jax.Array:
    """An all-zero tree over ``capacity`` leaves."""
    return jnp.zeros(offset(depth(capacity) + 1), jnp.float32)


def _fold(children: jax.Array) -> jax.Array:
    """Sum over the last axis (``ARITY`` wide) in one fixed order, so every path computes the same bits."""
    total = children[..., 0]
    for k in range(1, ARITY):
        total = total + children[..., k]
    return total


def build(slot_priorities: jax.Array, capacity: int) -> jax.Array:
    """The tree over ``float32[capacity]`` leaves, built bottom-up in ``O(N)``."""
    levels = [jnp.pad(slot_priorities.astype(jnp.float32), (0, ARITY ** depth(capacity) - capacity))]
    while levels[-1].shape[0] > 1:
        levels.append(_fold(levels[-1].reshape(-1, ARITY)))
    return jnp.concatenate(levels[::-1])


def leaves(tree: jax.Array, capacity: int) -> jax.Array:
    """The ``capacity`` leaf values (slot order)."""
    start = offset(depth(capacity))
    return tree[start:start + capacity]


def total(tree: jax.Array) -> jax.Array:
    return tree[0]


def _children(tree: jax.Array, parent: jax.Array, level: int | jax.Array) -> jax.Array:
    """``[n, ARITY]``: the children of nodes ``parent`` of ``level``, one contiguous read each."""
    first = offset(level + 1) + ARITY * parent
    return jax.vmap(lambda i: jax.lax.dynamic_slice_in_dim(tree, i, ARITY))(first)


def _recompute_top(tree: jax.Array, level: int) -> jax.Array:
    """Recompute levels ``level - 1 ... 0`` densely from ``level``."""
    if level == 0:
        return tree
    above = [tree[offset(level):offset(level + 1)]]
    for _ in range(level):
        above.append(_fold(above[-1].reshape(-1, ARITY)))
    top = jnp.arange(offset(level))
    return tree.at[top].set(jnp.concatenate(above[:0:-1]), mode="promise_in_bounds", unique_indices=True,
                            indices_are_sorted=True)


def set_leaves(tree: jax.Array, capacity: int, slots: jax.Array, values: jax.Array) -> jax.Array:
    """Set the leaves at ``slots`` to ``values`` and recompute their ancestors from their children.

    A slot given several times gets the largest of its values (a scatter-max, so the result does
    not depend on the order in which the backend applies duplicate writes). Levels of at most
    ``64 len(slots)`` nodes are recomputed densely (cheaper there than scattered updates); below
    them each level is one batched read of the touched parents' children and one scatter of their
    sums.
    """
    levels = depth(capacity)
    node = offset(levels) + slots
    tree = tree.at[node].set(0.0).at[node].max(values.astype(jnp.float32))
    dense = min(levels, (slots.shape[0].bit_length() + 5) // _BITS)  # levels of <= 64 len(slots) nodes

    def up(i, carry):
        tree, idx = carry
        level = levels - 1 - i
        idx = idx // ARITY
        return tree.at[offset(level) + idx].set(_fold(_children(tree, idx, level))), idx

    if levels > dense:
        tree, _ = jax.lax.fori_loop(0, levels - dense, up, (tree, slots))
    return _recompute_top(tree, dense)


def sample(tree: jax.Array, capacity: int, key: jax.Array, n: int,
           smallest: bool = False) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Stratified proportional sampling of ``n`` slots.

    Query ``j`` is ``u_j * total`` with ``u_j = (j + U[0, 1)) / n``; at each node it moves to the
    first positive child whose prefix sum exceeds it, minus the sum of the children before. Returns
    ``(slots, leaf_values, total, smallest_leaf)``, the last the smallest positive leaf of the tree
    when ``smallest`` (an ``O(N)`` reduction), else ``inf``. An empty tree gives slot 0, leaf and
    total 0.
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
        children = _children(tree, idx, level)
        columns = [children[:, k] for k in range(ARITY)]
        prefix = [columns[0]]  # the same additions as _fold: prefix[-1] is the node's stored value
        for column in columns[1:]:
            prefix.append(prefix[-1] + column)
        below = sum((p <= query).astype(jnp.int32) for p in prefix)  # children entirely below the query
        last_positive = jnp.zeros_like(idx)
        for k in range(1, ARITY):
            last_positive = jnp.where(columns[k] > 0, k, last_positive)
        child = jnp.minimum(below, last_positive)  # past them all only by rounding: the last positive
        before, chosen = jnp.zeros_like(query), columns[0]
        for k in range(1, ARITY):
            before = jnp.where(child == k, prefix[k - 1], before)
            chosen = jnp.where(child == k, columns[k], chosen)
        root = jnp.where(level == 0, prefix[-1][0], root)  # == tree[0], read inside the loop
        if smallest:  # computed in the loop too, so no read of this tree is left for after it
            low = jax.lax.cond(level == 0, smallest_leaf, lambda: low)
        return ARITY * idx + child, jnp.maximum(query - before, 0.0), chosen, root, low

    init = (jnp.zeros(n, jnp.int32), query, jnp.zeros(n, jnp.float32), jnp.float32(0.0), low)
    idx, _, value, root, low = jax.lax.fori_loop(0, levels, down, init)
    return idx, value, root, low
