"""Contact manifolds between the lander's convex polygons and the terrain edges.

For one polygon and one edge this follows the rules of Box2D 2.3's polygon-versus-edge test for an
edge without neighbours, with the ground treated as solid below (its normal always points up):

* separation along the edge normal ``s_e = min_j n . (v_j - e_1)`` and along each polygon face
  normal, ``s_j = min(n_j . (e_1 - v_j), n_j . (e_2 - v_j))``;
* no contact if either exceeds ``CONTACT_DISTANCE`` (0.02: two skins of 0.01);
* the polygon face is the reference only if ``max_j s_j > 0.98 s_e + 0.001``;
* edge reference: the polygon face most anti-parallel to ``n`` is clipped to the edge's extent;
  polygon reference: the edge is clipped to that face's extent. Nothing is left if both ends lie
  beyond the same side;
* a clipped point is kept if its separation from the reference face is ``<= 0.02``. Its contact
  point lies half-way across that gap; the normal points from the ground into the polygon.

A polygon narrower than an edge (all of the lander's are) meets at most the two edges under its
leftmost and rightmost points. Arrays follow :mod:`kinematics`: vectors on axis 0, then the
edge / vertex / slot axes, then any batch axes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import terrain
from jaxq.envs.lunar_lander.kinematics import any_of, dot2, expand, first_extreme, largest, perp, rotate, smallest, total


class Manifold(NamedTuple):
    """Contact points over slot axes ``S``: ``valid [S]`` (within the requested margin), world
    ``point [2, S]``, unit ``normal [2, S]`` (ground to body), the cores' ``separation [S]`` and
    ``touch [S]``: a manifold point in the engine's sense (``separation <= 0.02``)."""

    valid: jax.Array
    point: jax.Array
    normal: jax.Array
    separation: jax.Array
    touch: jax.Array


def face_normals(local_verts: np.ndarray) -> np.ndarray:
    """Outward unit normals ``[n, 2]`` of the faces ``v_j -> v_{j+1}`` of a CCW polygon."""
    edge = np.roll(local_verts, -1, axis=0) - local_verts
    return np.stack([edge[:, 1], -edge[:, 0]], -1) / np.linalg.norm(edge, axis=-1, keepdims=True)


def world_polygon(local_verts: np.ndarray, origin: jax.Array, cs: jax.Array, sn: jax.Array):
    """World vertices and face normals ``[2, n, ...]`` of a polygon (``local_verts [n, 2]``)
    placed at ``origin [2, ...]`` with angle cosine ``cs`` and sine ``sn``."""
    lv = expand(local_verts.T, cs, 0)
    ln = expand(face_normals(local_verts).T, cs, 0)
    return origin[:, None] + rotate(cs[None], sn[None], lv), rotate(cs[None], sn[None], ln)


def candidate_edges(heights: jax.Array, verts: jax.Array, margin: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """End points ``e1, e2 [2, 2 edges]`` of the edges under the leftmost and rightmost vertex
    (widened by ``margin``) and ``distinct [2]`` (False for a repeat of the first). The polygon's
    width plus twice the margin must stay below an edge's length (2 m)."""
    x = verts[0]
    k = terrain.edge_index(jnp.stack([smallest(x) - margin, largest(x) + margin]))
    x1 = k.astype(jnp.float32) * C.EDGE_LENGTH_X
    e1 = jnp.stack([x1, jnp.take_along_axis(heights, k, 0)])
    e2 = jnp.stack([x1 + C.EDGE_LENGTH_X, jnp.take_along_axis(heights, k + 1, 0)])
    return e1, e2, jnp.stack([jnp.ones_like(k[0], bool), k[1] != k[0]])


def _pick(mask: jax.Array, values: jax.Array) -> jax.Array:
    """``values[:, i]`` for ``mask [E, n]`` one-hot in ``n``: ``values [2, n]`` -> ``[2, E]``."""
    return total(mask[None] * values[:, None], 2)


def _axes(verts: jax.Array, normals: jax.Array, e1: jax.Array, e2: jax.Array):
    """Edge directions and upward normals ``[2, E]``, lengths ``[E]``, and the separations along
    the edge normal ``[E]`` and along every polygon face normal ``[E, n]``."""
    d = e2 - e1
    length = jnp.sqrt(dot2(d, d))
    d = d / length[None]
    n = perp(d)
    rel1 = e1[:, :, None] - verts[:, None]  # [2, E, n]
    rel2 = e2[:, :, None] - verts[:, None]
    s_edge = smallest(-dot2(rel1, n[:, :, None]), 1)
    s_faces = jnp.minimum(dot2(rel1, normals[:, None]), dot2(rel2, normals[:, None]))
    return d, n, length, s_edge, s_faces


def _clip(a: jax.Array, b: jax.Array, ta: jax.Array, tb: jax.Array, hi: jax.Array):
    """Clip segments ``a -> b`` (``[2, E]``; coordinates ``ta``, ``tb`` along an axis) to
    ``[0, hi]``. Returns the clipped end points and whether anything is left."""
    keep = ~(((ta < 0) & (tb < 0)) | ((ta > hi) & (tb > hi)))
    den = tb - ta
    den = jnp.where(jnp.abs(den) > 1e-12, den, 1.0)

    def end(p, t):
        inside = (t >= 0) & (t <= hi)
        s = (jnp.clip(t, 0.0, hi) - ta) / den
        return jnp.where(inside[None], p, a + s[None] * (b - a))

    return end(a, ta), end(b, tb), keep


def polygon_edges(
    verts: jax.Array, normals: jax.Array, e1: jax.Array, e2: jax.Array, distinct: jax.Array, margin: float
) -> Manifold:
    """Manifolds of one polygon (``verts``, ``normals [2, n]``) against edges ``e1 -> e2 [2, E]``.

    Points are ``valid`` up to a separation of ``margin`` (at least the contact distance), using
    the same axis choice and clipping. Returns slots ``[E, 2]`` (two per edge).
    """
    d, n, length, s_edge, s_faces = _axes(verts, normals, e1, e2)
    ref = first_extreme(s_faces, 1, biggest=True)  # [E, n]
    s_poly = largest(s_faces, 1)
    near = distinct & (s_edge <= margin) & (s_poly <= margin)
    touching = near & (s_edge <= C.CONTACT_DISTANCE) & (s_poly <= C.CONTACT_DISTANCE)
    face_ref = s_poly > C.AXIS_RELATIVE_TOL * s_edge + C.AXIS_ABSOLUTE_TOL

    # Edge as reference: clip the polygon face most anti-parallel to n to the edge's extent.
    inc = first_extreme(dot2(normals[:, None], n[:, :, None]), 1, biggest=False)  # [E, n]
    a, b = _pick(inc, verts), _pick(jnp.roll(inc, 1, 1), verts)
    pa_e, pb_e, keep_e = _clip(a, b, dot2(a - e1, d), dot2(b - e1, d), length)

    # Polygon face as reference: clip the edge to that face's extent.
    rn, r1, r2 = _pick(ref, normals), _pick(ref, verts), _pick(jnp.roll(ref, 1, 1), verts)
    f = r2 - r1
    f2 = dot2(f, f)
    pa_f, pb_f, keep_f = _clip(e1, e2, dot2(e1 - r1, f) / f2, dot2(e2 - r1, f) / f2, jnp.ones_like(f2))

    p_e = jnp.stack([pa_e, pb_e], 2)  # [2, E, 2 slots]
    p_f = jnp.stack([pa_f, pb_f], 2)
    s_e = dot2(p_e - e1[:, :, None], n[:, :, None])  # [E, 2 slots]
    s_f = dot2(p_f - r1[:, :, None], rn[:, :, None])
    fr = face_ref[:, None]
    sep = jnp.where(fr, s_f, s_e)
    point = jnp.where(fr[None], p_f - 0.5 * s_f[None] * rn[:, :, None], p_e - 0.5 * s_e[None] * n[:, :, None])
    normal = jnp.where(fr[None], -rn[:, :, None], n[:, :, None]) + jnp.zeros_like(point)
    clipped = jnp.where(face_ref, keep_f, keep_e)[:, None]
    valid = (near[:, None] & clipped) & (sep <= margin)
    touch = (touching[:, None] & clipped) & (sep <= C.CONTACT_DISTANCE)
    return Manifold(valid, point, normal, sep, touch)


def polygon_terrain(heights: jax.Array, verts: jax.Array, normals: jax.Array, margin: float) -> Manifold:
    """All manifold points of a polygon against the ground within ``margin``: four slots."""
    m = polygon_edges(verts, normals, *candidate_edges(heights, verts, margin), margin)
    rest = m.valid.shape[2:]
    return jax.tree.map(lambda x: x.reshape(x.shape[:-len(rest) - 2] + (4,) + rest), m)


def separation(heights: jax.Array, verts: jax.Array, normals: jax.Array) -> jax.Array:
    """Smallest separating-axis distance between the polygon's core and the ground (negative when
    overlapping): ``max(s_edge, max_j s_j)``, minimised over the candidate edges."""
    e1, e2, distinct = candidate_edges(heights, verts, C.CONTACT_DISTANCE)
    _, _, _, s_edge, s_faces = _axes(verts, normals, e1, e2)
    return smallest(jnp.where(distinct, jnp.maximum(s_edge, largest(s_faces, 1)), jnp.inf))


def best_two(m: Manifold) -> Manifold:
    """The two valid points with the smallest separation out of four (invalid ones sort last)."""
    key = jnp.where(m.valid, m.separation, jnp.inf)
    earlier = expand(np.tril(np.ones((4, 4), bool), -1).astype(np.float32), key, 1) > 0.5  # j < i
    ahead = (key[None, :] < key[:, None]) | ((key[None, :] == key[:, None]) & earlier)
    rank = total(ahead.astype(jnp.float32), 1)  # [4], a permutation of 0..3
    pick = (rank[None] == expand(np.arange(2, dtype=np.float32)[:, None], rank, 1)).astype(jnp.float32)  # [2, 4]
    return Manifold(
        valid=total(pick * m.valid[None], 1) > 0.5,
        point=total(pick[None] * m.point[:, None], 2),
        normal=total(pick[None] * m.normal[:, None], 2),
        separation=total(pick * jnp.where(m.valid, m.separation, 0.0)[None], 1),
        touch=total(pick * m.touch[None], 1) > 0.5,
    )
