"""Counter-based random bits for hot loops: Threefry-2x32 (20 rounds), unrolled.

``jax.random`` lowers Threefry on CPU as a rolled loop, which puts a nested loop into every step of
a scanned learner. This straight-line version computes the same function (a test checks it against
``jax.extend.random.threefry_2x32`` bit for bit) and lets XLA fuse it into the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 block function: two uint32 words of ``key`` encrypt the counter ``(x0, x1)``."""
    k0, k1 = key[0].astype(jnp.uint32), key[1].astype(jnp.uint32)
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0.astype(jnp.uint32) + ks[0], x1.astype(jnp.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def counter_bits(key: jax.Array, t: jax.Array, stream: int) -> jax.Array:
    """Two uint32 words for step ``t`` of ``stream``: ``threefry2x32(key, (t, stream))``."""
    return jnp.stack(threefry2x32(key, jnp.asarray(t, jnp.uint32), jnp.uint32(stream)))
