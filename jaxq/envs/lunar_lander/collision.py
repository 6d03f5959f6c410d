"""Contact manifolds between the lander's convex polygons and the terrain edges.

For one polygon and one edge this follows the rules of Box2D 2.3's polygon-versus-edge test for an
edge without neighbours, with the ground treated as solid below (its normal always points up, which
also stands in for the continuous collision the original uses against tunnelling):

* separation along the edge normal ``s_e = min_j n . (v_j - e_1)`` and along each polygon face
  normal, ``s_j = min(n_j . (e_1 - v_j), n_j . (e_2 - v_j))``;
* no contact if either exceeds ``CONTACT_DISTANCE`` (0.02: two skins of 0.01);
* the polygon face is the reference only if ``max_j s_j > 0.98 s_e + 0.001``;
* edge reference: the polygon face most anti-parallel to ``n`` is clipped to the edge's extent;
  polygon reference: the edge is clipped to that face's extent. Nothing is left if both ends lie
  beyond the same side;
* a clipped point is kept if its separation from the reference face is ``<= 0.02``. Its contact
  point lies half-way across that gap, the normal points from the ground into the polygon.

Everything is scalar per environment (see :mod:`kinematics`), branch-free with ``jnp.where``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import terrain
from jaxq.envs.lunar_lander.kinematics import Vec, rot

_BIG = 1e9


class ContactPoint(NamedTuple):
    """One manifold point: validity, world contact point, unit normal (ground to body) and the
    separation of the two cores along it (contact exists for ``separation <= 0.02``)."""

    valid: jax.Array
    x: jax.Array
    y: jax.Array
    nx: jax.Array
    ny: jax.Array
    separation: jax.Array


def _pick(masks: Sequence[jax.Array], values: Sequence[jax.Array]) -> jax.Array:
    """``values[i]`` for the one ``i`` whose mask is set (one-hot select)."""
    out = values[0]
    for m, v in zip(masks[1:], values[1:]):
        out = jnp.where(m, v, out)
    return out


def _first_extreme(values: Sequence[jax.Array], largest: bool) -> list[jax.Array]:
    """One-hot masks of the first index attaining the max (or min) of ``values``."""
    best = values[0]
    idx = jnp.zeros((), jnp.int32)
    for i, v in enumerate(values[1:], start=1):
        better = v > best if largest else v < best
        best = jnp.where(better, v, best)
        idx = jnp.where(better, i, idx)
    return [idx == i for i in range(len(values))]


def _clip(ax, ay, bx, by, ta, tb, lo, hi):
    """Clip segment ``a -> b`` with coordinates ``ta``, ``tb`` along an axis to ``[lo, hi]``.

    Returns the two clipped end points and whether anything is left (not both ends beyond the
    same side).
    """
    keep = ~(((ta < lo) & (tb < lo)) | ((ta > hi) & (tb > hi)))
    den = tb - ta
    den = jnp.where(jnp.abs(den) > 1e-12, den, 1.0)

    def end(t):
        s = (jnp.clip(t, lo, hi) - ta) / den
        return ax + s * (bx - ax), ay + s * (by - ay)

    pa = end(ta)
    pb = end(tb)
    # A segment lying entirely inside keeps its own end points exactly.
    pa = (jnp.where((ta >= lo) & (ta <= hi), ax, pa[0]), jnp.where((ta >= lo) & (ta <= hi), ay, pa[1]))
    pb = (jnp.where((tb >= lo) & (tb <= hi), bx, pb[0]), jnp.where((tb >= lo) & (tb <= hi), by, pb[1]))
    return pa, pb, keep


def polygon_edge(verts: Sequence[Vec], normals: Sequence[Vec], e1: Vec, e2: Vec) -> tuple[ContactPoint, ContactPoint]:
    """Manifold (two slots) of a convex CCW polygon against the edge ``e1 -> e2`` (left to right).

    ``verts[j]`` and the outward ``normals[j]`` of face ``j`` (from ``verts[j]`` to
    ``verts[j+1]``) are in world coordinates.
    """
    n_v = len(verts)
    dx, dy = e2[0] - e1[0], e2[1] - e1[1]
    length = jnp.sqrt(dx * dx + dy * dy)
    dx, dy = dx / length, dy / length
    nx, ny = -dy, dx  # upward edge normal

    s_edge = verts[0][0] * 0 + _BIG
    for vx, vy in verts:
        s_edge = jnp.minimum(s_edge, nx * (vx - e1[0]) + ny * (vy - e1[1]))
    s_faces = [
        jnp.minimum(fx * (e1[0] - vx) + fy * (e1[1] - vy), fx * (e2[0] - vx) + fy * (e2[1] - vy))
        for (vx, vy), (fx, fy) in zip(verts, normals)
    ]
    ref_face = _first_extreme(s_faces, largest=True)
    s_poly = _pick(ref_face, s_faces)
    touching = (s_edge <= C.CONTACT_DISTANCE) & (s_poly <= C.CONTACT_DISTANCE)
    face_ref = s_poly > C.AXIS_RELATIVE_TOL * s_edge + C.AXIS_ABSOLUTE_TOL

    # Edge as reference: clip the most anti-parallel polygon face to the edge's extent.
    inc = _first_extreme([fx * nx + fy * ny for fx, fy in normals], largest=False)
    nxt = inc[-1:] + inc[:-1]  # mask of the following vertex
    ax, ay = _pick(inc, [v[0] for v in verts]), _pick(inc, [v[1] for v in verts])
    bx, by = _pick(nxt, [v[0] for v in verts]), _pick(nxt, [v[1] for v in verts])
    ta = dx * (ax - e1[0]) + dy * (ay - e1[1])
    tb = dx * (bx - e1[0]) + dy * (by - e1[1])
    pa_e, pb_e, keep_e = _clip(ax, ay, bx, by, ta, tb, 0.0, length)

    # Polygon face as reference: clip the edge to that face's extent.
    rnx, rny = _pick(ref_face, [f[0] for f in normals]), _pick(ref_face, [f[1] for f in normals])
    nxt_r = ref_face[-1:] + ref_face[:-1]
    r1x, r1y = _pick(ref_face, [v[0] for v in verts]), _pick(ref_face, [v[1] for v in verts])
    r2x, r2y = _pick(nxt_r, [v[0] for v in verts]), _pick(nxt_r, [v[1] for v in verts])
    fdx, fdy = r2x - r1x, r2y - r1y  # face direction, length = face length
    flen2 = fdx * fdx + fdy * fdy
    t1 = (fdx * (e1[0] - r1x) + fdy * (e1[1] - r1y)) / flen2
    t2 = (fdx * (e2[0] - r1x) + fdy * (e2[1] - r1y)) / flen2
    pa_f, pb_f, keep_f = _clip(e1[0], e1[1], e2[0], e2[1], t1, t2, 0.0, 1.0)

    keep = touching & jnp.where(face_ref, keep_f, keep_e)
    out = []
    for pe, pf in ((pa_e, pa_f), (pb_e, pb_f)):
        s_e = nx * (pe[0] - e1[0]) + ny * (pe[1] - e1[1])
        s_f = rnx * (pf[0] - r1x) + rny * (pf[1] - r1y)
        sep = jnp.where(face_ref, s_f, s_e)
        # Normal from ground to polygon; the contact point sits half-way across the gap.
        cnx, cny = jnp.where(face_ref, -rnx, nx), jnp.where(face_ref, -rny, ny)
        px = jnp.where(face_ref, pf[0] - 0.5 * s_f * rnx, pe[0] - 0.5 * s_e * nx)
        py = jnp.where(face_ref, pf[1] - 0.5 * s_f * rny, pe[1] - 0.5 * s_e * ny)
        out.append(ContactPoint(keep & (sep <= C.CONTACT_DISTANCE), px, py, cnx, cny, sep))
    return out[0], out[1]


def world_polygon(local_verts, ox, oy, cs, sn) -> tuple[list[Vec], list[Vec]]:
    """World vertices and outward face normals of a CCW polygon placed at ``(ox, oy)``, angle with
    cosine ``cs`` and sine ``sn``. ``local_verts`` is a NumPy ``[n, 2]`` array of constants."""
    verts = [(ox + x, oy + y) for x, y in (rot(cs, sn, float(px), float(py)) for px, py in local_verts)]
    normals = []
    n = len(local_verts)
    for j in range(n):
        ex, ey = local_verts[(j + 1) % n] - local_verts[j]
        el = float((ex * ex + ey * ey) ** 0.5)
        normals.append(rot(cs, sn, float(ey) / el, float(-ex) / el))
    return verts, normals


def candidate_edges(heights: jax.Array, verts: Sequence[Vec]) -> tuple[tuple[Vec, Vec, jax.Array], ...]:
    """The (at most two) edges under a polygon's x-extent, widened by the contact distance.

    Returns ``(e1, e2, distinct)`` for the edge under the leftmost and under the rightmost point;
    ``distinct`` is False for the second when both are the same edge (it must then be ignored).
    The polygons here are narrower than an edge (2 m), so two edges always suffice.
    """
    xmin = xmax = verts[0][0]
    for vx, _ in verts[1:]:
        xmin, xmax = jnp.minimum(xmin, vx), jnp.maximum(xmax, vx)
    k_lo = terrain.edge_index(xmin - C.CONTACT_DISTANCE)
    k_hi = terrain.edge_index(xmax + C.CONTACT_DISTANCE)
    out = []
    for k, distinct in ((k_lo, jnp.ones((), bool)), (k_hi, k_hi != k_lo)):
        x1, y1, x2, y2 = terrain.edge_points(heights, k)
        out.append(((x1, y1), (x2, y2), distinct))
    return tuple(out)


def polygon_terrain(heights: jax.Array, verts, normals) -> list[ContactPoint]:
    """All manifold points (four slots: two per candidate edge) of a polygon against the ground."""
    points = []
    for e1, e2, distinct in candidate_edges(heights, verts):
        for p in polygon_edge(verts, normals, e1, e2):
            points.append(p._replace(valid=p.valid & distinct))
    return points


def best_two(points: Sequence[ContactPoint]) -> tuple[ContactPoint, ContactPoint]:
    """The two valid points with the smallest separation (invalid slots sort last)."""
    keys = [jnp.where(p.valid, p.separation, _BIG) for p in points]
    n = len(points)
    ranks = []
    for i in range(n):
        r = jnp.zeros((), jnp.int32)
        for j in range(n):
            if j != i:
                ahead = (keys[j] < keys[i]) if j > i else (keys[j] <= keys[i])
                r = r + ahead.astype(jnp.int32)
        ranks.append(r)
    out = []
    for slot in range(2):
        masks = [r == slot for r in ranks]
        out.append(ContactPoint(*(_pick(masks, [getattr(p, f) for p in points]) for f in ContactPoint._fields)))
    return out[0], out[1]
