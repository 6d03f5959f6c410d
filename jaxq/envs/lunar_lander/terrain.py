"""Terrain: random heights, the 0.33 smoothing with its wrap-around, and the ten ground edges.

The ground is the polyline through ``p_i = (2 i, y_i)``, ``i = 0..10``. Each of its ten segments is
an independent edge; the solid ground lies below it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxq.envs.lunar_lander import constants as C


def smooth_heights(raw: jax.Array) -> jax.Array:
    """Smoothed heights ``y[i] = 0.33 (h[i-1] + h[i] + h[i+1])`` for ``i = 0..10``.

    ``raw`` holds the twelve heights ``h[0..11]``; ``h[3..7]`` are first set to the pad height
    ``H/4``. For ``i = 0`` the left neighbour ``h[-1]`` is ``h[11]`` (Python's negative index in
    the original), so ``h[11]`` enters both ends of the terrain.
    """
    h = raw.at[C.CHUNKS // 2 - 2 : C.CHUNKS // 2 + 3].set(C.HELIPAD_Y)
    left = jnp.roll(h, 1)[: C.CHUNKS]
    return C.SMOOTHING * (left + h[: C.CHUNKS] + h[1 : C.CHUNKS + 1])


def sample_heights(key: jax.Array) -> jax.Array:
    """Draw twelve heights ``U[0, H/2)`` and smooth them: ``[11]`` float32 terrain heights."""
    raw = jax.random.uniform(key, (C.CHUNKS + 1,), jnp.float32, 0.0, C.H / 2)
    return smooth_heights(raw)


def edge_index(x: jax.Array) -> jax.Array:
    """Index ``0..9`` of the edge whose x-range contains ``x`` (clipped at the terrain's ends)."""
    return jnp.clip(jnp.floor(x / C.EDGE_LENGTH_X), 0, C.N_EDGES - 1).astype(jnp.int32)
