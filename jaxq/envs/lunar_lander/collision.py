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
polygon (or polygon-edge pair) / vertex / slot axes, then any batch axes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import terrain
from jaxq.envs.lunar_lander.kinematics import (
    expand,
    dot2,
    first_extreme,
    largest,
    perp,
    rotate,
    smallest,
    total,
)


class Manifold(NamedTuple):
    """Contact points over slot axes ``S``: ``valid [S]`` (within the requested margin), world
    ``point [2, S]``, unit ``normal [2, S]`` (ground to body), the cores' ``separation [S]``,
    ``touch [S]``: a manifold point in the engine's sense (``separation <= 0.02``), and
    ``feature [S]``: which point it is, ``FEATURES * edge + f`` (float) with ``f`` the polygon
    vertex when the edge is the reference face, ``n_vertices`` plus the edge end (0, 1) when a
    polygon face is. The engine carries a point's impulses over to the next step when the same
    feature touches again."""

    valid: jax.Array
    point: jax.Array
    normal: jax.Array
    separation: jax.Array
    touch: jax.Array
    feature: jax.Array


def face_normals(local_verts: np.ndarray) -> np.ndarray:
    """Outward unit normals ``[n, 2]`` of the faces ``v_j -> v_{j+1}`` of a CCW polygon."""
    edge = np.roll(local_verts, -1, axis=0) - local_verts
    return np.stack([edge[:, 1], -edge[:, 0]], -1) / np.linalg.norm(edge, axis=-1, keepdims=True)


def world_polygon(local_verts: np.ndarray, origin: jax.Array, cs: jax.Array, sn: jax.Array):
    """World vertices and face normals ``[2, G, n, ...]`` of ``G`` copies of a polygon
    (``local_verts [n, 2]``) placed at ``origin [2, G, ...]`` with angle cosines and sines
    ``cs``, ``sn [G, ...]``."""
    shape = (2, 1, len(local_verts)) + (1,) * (cs.ndim - 1)
    lv = jnp.asarray(local_verts.T, jnp.float32).reshape(shape)
    ln = jnp.asarray(face_normals(local_verts).T, jnp.float32).reshape(shape)
    c, s = cs[:, None], sn[:, None]
    return origin[:, :, None] + rotate(c, s, lv), rotate(c, s, ln)


def _pairs(heights: jax.Array, verts: jax.Array, normals: jax.Array, margin: float):
    """Each polygon ``[2, G, n]`` paired with the edges under its leftmost and rightmost vertex
    (widened by ``margin``): per pair ``P = 2 G`` the polygon ``[2, P, n]``, the edge end points
    ``e1, e2 [2, P]``, ``distinct [P]`` (False for a repeat of the polygon's first edge) and the
    edge index ``[P]`` (int). A polygon plus twice the margin must be narrower than an edge
    (2 m)."""
    g, n = verts.shape[1], verts.shape[2]
    rest = verts.shape[3:]
    x = verts[0]
    k = terrain.edge_index(jnp.stack([smallest(x, 1) - margin, largest(x, 1) + margin], 1))  # [G, 2]
    flat = k.reshape((2 * g,) + rest)
    x1 = flat.astype(jnp.float32) * C.EDGE_LENGTH_X
    e1 = jnp.stack([x1, jnp.take_along_axis(heights, flat, 0)])
    e2 = jnp.stack([x1 + C.EDGE_LENGTH_X, jnp.take_along_axis(heights, flat + 1, 0)])
    distinct = jnp.stack([jnp.ones_like(k[:, 0], bool), k[:, 1] != k[:, 0]], 1).reshape((2 * g,) + rest)
    def per_pair(a):
        return jnp.broadcast_to(a[:, :, None], (2, g, 2, n) + rest).reshape((2, 2 * g, n) + rest)

    return per_pair(verts), per_pair(normals), e1, e2, distinct, flat


def _axes(verts: jax.Array, normals: jax.Array, e1: jax.Array, e2: jax.Array):
    """Per pair: edge direction and upward normal ``[2, P]``, length ``[P]``, and the separations
    along the edge normal ``[P]`` and along every polygon face normal ``[P, n]``."""
    d = e2 - e1
    length = jnp.sqrt(dot2(d, d))
    d = d / length[None]
    n = perp(d)
    rel1 = e1[:, :, None] - verts  # [2, P, n]
    rel2 = e2[:, :, None] - verts
    s_edge = smallest(-dot2(rel1, n[:, :, None]), 1)
    s_faces = jnp.minimum(dot2(rel1, normals), dot2(rel2, normals))
    return d, n, length, s_edge, s_faces


def _clip(a: jax.Array, b: jax.Array, ta: jax.Array, tb: jax.Array, hi: jax.Array):
    """Clip segments ``a -> b`` (``[2, P]``; coordinates ``ta``, ``tb`` along an axis) to
    ``[0, hi]``. Returns the clipped end points and whether anything is left."""
    keep = ~(((ta < 0) & (tb < 0)) | ((ta > hi) & (tb > hi)))
    den = tb - ta
    den = jnp.where(jnp.abs(den) > 1e-12, den, 1.0)

    def end(p, t):
        inside = (t >= 0) & (t <= hi)
        s = (jnp.clip(t, 0.0, hi) - ta) / den
        return jnp.where(inside[None], p, a + s[None] * (b - a))

    return end(a, ta), end(b, tb), keep


FEATURES = 8  # feature numbers per edge (polygons have at most 6 vertices, plus 2 edge ends)


def _manifolds(verts, normals, e1, e2, distinct, edge, margin: float) -> Manifold:
    """Manifold of every polygon-edge pair (``verts``, ``normals [2, P, n]``, edges ``[2, P]``):
    slots ``[P, 2]``. Points are ``valid`` up to a separation of ``margin`` (at least the contact
    distance), with the same axis choice and clipping."""
    d, n, length, s_edge, s_faces = _axes(verts, normals, e1, e2)
    ref = first_extreme(s_faces, 1, biggest=True)  # [P, n]
    s_poly = largest(s_faces, 1)
    near = distinct & (s_edge <= margin) & (s_poly <= margin)
    touching = near & (s_edge <= C.CONTACT_DISTANCE) & (s_poly <= C.CONTACT_DISTANCE)
    face_ref = s_poly > C.AXIS_RELATIVE_TOL * s_edge + C.AXIS_ABSOLUTE_TOL

    # Edge as reference: clip the polygon face most anti-parallel to n to the edge's extent.
    inc = first_extreme(dot2(normals, n[:, :, None]), 1, biggest=False)  # [P, n]
    # One pass over the vertices picks everything: incident face ends a, b; reference face ends
    # r1, r2 and normal rn.
    masks = jnp.stack([inc, jnp.roll(inc, 1, 1), ref, jnp.roll(ref, 1, 1), ref])  # [5, P, n]
    sources = jnp.stack([verts, verts, verts, verts, normals], 1)  # [2, 5, P, n]
    a, b, r1, r2, rn = jnp.unstack(total(masks[None] * sources, 3), axis=1)
    pa_e, pb_e, keep_e = _clip(a, b, dot2(a - e1, d), dot2(b - e1, d), length)

    # Polygon face as reference: clip the edge to that face's extent.
    f = r2 - r1
    f2 = dot2(f, f)
    pa_f, pb_f, keep_f = _clip(e1, e2, dot2(e1 - r1, f) / f2, dot2(e2 - r1, f) / f2, jnp.ones_like(f2))

    p_e = jnp.stack([pa_e, pb_e], 2)  # [2, P, 2 slots]
    p_f = jnp.stack([pa_f, pb_f], 2)
    s_e = dot2(p_e - e1[:, :, None], n[:, :, None])  # [P, 2 slots]
    s_f = dot2(p_f - r1[:, :, None], rn[:, :, None])
    fr = face_ref[:, None]
    sep = jnp.where(fr, s_f, s_e)
    point = jnp.where(fr[None], p_f - 0.5 * s_f[None] * rn[:, :, None], p_e - 0.5 * s_e[None] * n[:, :, None])
    normal = jnp.where(fr[None], -rn[:, :, None], n[:, :, None]) + jnp.zeros_like(point)
    clipped = jnp.where(face_ref, keep_f, keep_e)[:, None]
    valid = (near[:, None] & clipped) & (sep <= margin)
    touch = (touching[:, None] & clipped) & (sep <= C.CONTACT_DISTANCE)
    n_verts = inc.shape[1]
    first = total(inc * expand(np.arange(n_verts, dtype=np.float32), inc, 2)[None], 1)
    second = jnp.where(first == n_verts - 1, 0.0, first + 1.0)
    local = jnp.where(fr, jnp.stack([first * 0 + n_verts, first * 0 + n_verts + 1.0], 1),
                      jnp.stack([first, second], 1))
    feature = FEATURES * edge.astype(jnp.float32)[:, None] + local
    return Manifold(valid, point, normal, sep, touch, feature)


def polygon_terrain(heights: jax.Array, verts: jax.Array, normals: jax.Array, margin: float) -> Manifold:
    """Manifold points of polygons ``[2, G, n]`` against the ground within ``margin``: four slots
    per polygon, ``[G, 4]``."""
    g = verts.shape[1]
    m = _manifolds(*_pairs(heights, verts, normals, margin), margin)
    rest = m.valid.shape[2:]
    return Manifold(
        valid=m.valid.reshape((g, 4) + rest),
        point=m.point.reshape((2, g, 4) + rest),
        normal=m.normal.reshape((2, g, 4) + rest),
        separation=m.separation.reshape((g, 4) + rest),
        touch=m.touch.reshape((g, 4) + rest),
        feature=m.feature.reshape((g, 4) + rest),
    )


def pair_separations(heights: jax.Array, verts: jax.Array, normals: jax.Array):
    """Separating-axis distance between each polygon's core and the two edges under it:
    ``[G, 2]`` (``inf`` for a repeated edge; negative when overlapping), and the edge indices
    ``[G, 2]`` (int)."""
    g = verts.shape[1]
    verts, normals, e1, e2, distinct, edge = _pairs(heights, verts, normals, C.CONTACT_DISTANCE)
    _, _, _, s_edge, s_faces = _axes(verts, normals, e1, e2)
    s = jnp.where(distinct, jnp.maximum(s_edge, largest(s_faces, 1)), jnp.inf)
    rest = s.shape[1:]
    return s.reshape((g, 2) + rest), edge.reshape((g, 2) + rest)


def separation(heights: jax.Array, verts: jax.Array, normals: jax.Array) -> jax.Array:
    """Smallest separating-axis distance ``[G]`` between each polygon's core and the ground
    (negative when overlapping): ``max(s_edge, max_j s_j)``, minimised over its edges."""
    return smallest(pair_separations(heights, verts, normals)[0], 1)


def best_two(m: Manifold) -> Manifold:
    """Per polygon, the two valid points with the smallest separation out of four (invalid ones
    sort last, ties keep the earlier point): ``[G, 4]`` slots to ``[G, 2]``.

    A candidate's rank is the number of candidates ahead of it; slot ``s`` takes the candidate of
    rank ``s``, picked by a chain of selects over the four. The manifold and the ranks are
    materialised once (``optimization_barrier``): fused into every pick, XLA:CPU would recompute
    them for each output element.
    """
    m = jax.lax.optimization_barrier(m)
    key = jnp.where(m.valid, m.separation, jnp.inf)  # [G, 4]
    keys = [key[:, i] for i in range(4)]
    rank = [
        sum(((keys[j] <= keys[i]) if j < i else (keys[j] < keys[i])).astype(jnp.int32) for j in range(4) if j != i)
        for i in range(4)
    ]
    rank = jax.lax.optimization_barrier(rank)
    fields = [m.valid, jnp.where(m.valid, m.separation, 0.0), m.touch, *m.point, *m.normal,
              m.feature]  # each [G, 4]

    def slot(s):
        def pick(field):
            out = field[:, 3]
            for i in (2, 1, 0):
                out = jnp.where(rank[i] == s, field[:, i], out)
            return out

        return [pick(f) for f in fields]

    valid, sep, touch, px, py, nx, ny, feature = (jnp.stack(pair, 1) for pair in zip(slot(0), slot(1)))
    return Manifold(valid, jnp.stack([px, py]), jnp.stack([nx, ny]), sep, touch, feature)
