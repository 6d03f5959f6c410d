"""Reduced coordinates of the lander: hull pose plus two joint angles, and its 5x5 mass matrix.

The mechanism has five degrees of freedom. Positions are ``(c_x, c_y, theta, q_0, q_1)``: the
hull's centre of mass, the hull angle, and the two joint angles ``q_k = theta_leg_k - theta -
ref_k`` (the revolute joints' own angle). Velocities are ``u = (v_x, v_y, omega, qd_0, qd_1)``:
the hull's centre-of-mass velocity, its angular velocity and the joint rates. The pin joints hold
exactly by construction.

Leg ``k`` hangs from the hull's body origin ``P = c - R(theta) (0, h)`` (``h`` = height of the
hull's centre of mass above its origin); its centre is ``c_k = P - R(theta_k) a_k`` with ``a_k``
the joint anchor in leg coordinates and ``theta_k = theta + q_k + ref_k``. A point ``x`` of leg
``k`` moves with ``v + omega perp(x - c) + qd_k perp(x - P)``, ``perp(a) = (-a_y, a_x)``.

Array convention of the physics modules: structure axes first, batch axes last. A 2-D vector is
``[2, ...]`` (x, y on axis 0), a 5x5 matrix ``[5, 5, ...]``; any trailing axes (the batch of
environments) broadcast through. Sums, minima and maxima over the small structure axes are
unrolled into elementwise operations (:func:`total`, :func:`smallest`, ...): XLA:CPU fuses those
into plain vectorised loops over the batch, while a ``reduce`` over a short axis becomes a
library call that is slow at these sizes.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import constants as C

_ANCHOR = np.array(C.LEG_ANCHOR, np.float32).T  # [2 xy, 2 legs]
_REF = np.array(C.LEG_REFERENCE_ANGLE, np.float32)  # [2]


def expand(const: np.ndarray, like: jax.Array, leading: int) -> jax.Array:
    """A constant given trailing unit axes so it broadcasts against the batch axes of ``like``
    (the axes after its first ``leading`` structure axes)."""
    return jnp.asarray(const, jnp.float32).reshape(const.shape + (1,) * (like.ndim - leading))


def _fold(op: Callable, x: jax.Array, axis: int) -> jax.Array:
    parts = [jax.lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]
    return functools.reduce(op, parts)


def total(x: jax.Array, axis: int = 0) -> jax.Array:
    """Sum over a short structure axis, unrolled."""
    return _fold(operator.add, x, axis)


def smallest(x: jax.Array, axis: int = 0) -> jax.Array:
    """Minimum over a short structure axis, unrolled."""
    return _fold(jnp.minimum, x, axis)


def largest(x: jax.Array, axis: int = 0) -> jax.Array:
    """Maximum over a short structure axis, unrolled."""
    return _fold(jnp.maximum, x, axis)


def any_of(x: jax.Array, axis: int = 0) -> jax.Array:
    """Logical or over a short structure axis, unrolled."""
    return _fold(operator.or_, x, axis)


def first_extreme(x: jax.Array, axis: int, biggest: bool) -> jax.Array:
    """Float one-hot mask (same shape as ``x``) of the first index along ``axis`` where ``x`` is
    maximal (``biggest``) or minimal."""
    best = largest(x, axis) if biggest else smallest(x, axis)
    hits = x == jnp.expand_dims(best, axis)
    out, seen = [], None
    for i in range(x.shape[axis]):
        h = jax.lax.index_in_dim(hits, i, axis, keepdims=False)
        out.append(h if seen is None else h & ~seen)
        seen = h if seen is None else seen | h
    return jnp.stack(out, axis).astype(jnp.float32)


def dot2(a: jax.Array, b: jax.Array) -> jax.Array:
    """Dot product of vectors on axis 0."""
    return a[0] * b[0] + a[1] * b[1]


def rotate(cs: jax.Array, sn: jax.Array, v: jax.Array) -> jax.Array:
    """``R(theta) v`` for vectors ``v [2, ...]``, with ``cs``, ``sn`` broadcast against ``v[0]``."""
    return jnp.stack([cs * v[0] - sn * v[1], sn * v[0] + cs * v[1]])


def cross(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a_x b_y - a_y b_x`` for vectors on axis 0."""
    return a[0] * b[1] - a[1] * b[0]


def perp(a: jax.Array) -> jax.Array:
    """``(-a_y, a_x)`` for vectors on axis 0."""
    return jnp.stack([-a[1], a[0]])


def matvec(a: jax.Array, x: jax.Array) -> jax.Array:
    """``a @ x`` for ``a [n, m, ...]``, ``x [m, ...]``."""
    return total(a * x[None], 1)


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` for ``a [n, m, ...]``, ``b [m, p, ...]``."""
    return total(a[:, :, None] * b[None], 1)


class Pose(NamedTuple):
    """World poses of the bodies for reduced positions.

    ``com [2]`` hull centre of mass, ``cs``/``sn`` cosine and sine of the hull angle, ``origin
    [2]`` hull body origin (the joint point); ``leg_com [2, 2 legs]`` leg centres (= leg origins),
    ``leg_angle``/``leg_cs``/``leg_sn [2 legs]`` (all with trailing batch axes).
    """

    com: jax.Array
    cs: jax.Array
    sn: jax.Array
    origin: jax.Array
    leg_com: jax.Array
    leg_angle: jax.Array
    leg_cs: jax.Array
    leg_sn: jax.Array


def pose(position: jax.Array) -> Pose:
    """Poses of hull and legs for reduced positions ``[5, ...]``."""
    com, th, q = position[:2], position[2], position[3:]
    cs, sn = jnp.cos(th), jnp.sin(th)
    origin = jnp.stack([com[0] + sn * C.LANDER_COM_Y, com[1] - cs * C.LANDER_COM_Y])
    leg_angle = th[None] + q + expand(_REF, q, 1)
    lcs, lsn = jnp.cos(leg_angle), jnp.sin(leg_angle)
    leg_com = origin[:, None] - rotate(lcs, lsn, expand(_ANCHOR, position, 1))
    return Pose(com, cs, sn, origin, leg_com, leg_angle, lcs, lsn)


def mass_matrix(p: Pose) -> jax.Array:
    """The 5x5 reduced mass matrix ``M = T^T M_bodies T`` (kinetic energy ``u^T M u / 2``).

    With ``g_k = perp(c_k - c)``, ``e_k = perp(c_k - P)``, leg mass ``m``, leg inertia ``I``:
    ``M_vv = (m_L + 2m) I_2``, ``M_vw = m sum g_k``, ``M_vq_k = m e_k``,
    ``M_ww = I_L + sum(m |g_k|^2 + I)``, ``M_wq_k = m g_k . e_k + I``, ``M_q_kq_k = m |a_k|^2 + I``
    and ``M_q0q1 = 0`` (the legs couple only through the hull).
    """
    m, i_leg = C.LEG_MASS, C.LEG_INERTIA
    g = perp(p.leg_com - p.com[:, None])  # [2 xy, 2 legs, ...]
    e = perp(p.leg_com - p.origin[:, None])
    zero = jnp.zeros_like(p.cs)
    mt = zero + (C.LANDER_MASS + 2 * m)
    mvw = m * total(g, 1)
    mww = C.LANDER_INERTIA + total(m * dot2(g, g) + i_leg)
    mwq = m * dot2(g, e) + i_leg  # [2 legs, ...]
    d = zero + C.LEG_JOINT_INERTIA
    return jnp.stack(
        [
            jnp.stack([mt, zero, mvw[0], m * e[0, 0], m * e[0, 1]]),
            jnp.stack([zero, mt, mvw[1], m * e[1, 0], m * e[1, 1]]),
            jnp.stack([mvw[0], mvw[1], mww, mwq[0], mwq[1]]),
            jnp.stack([m * e[0, 0], m * e[1, 0], mwq[0], d, zero]),
            jnp.stack([m * e[0, 1], m * e[1, 1], mwq[1], zero, d]),
        ]
    )


def solve3(s: jax.Array, r: jax.Array) -> jax.Array:
    """Solve the 3x3 system ``s x = r`` (``r [3, ...]`` or ``[3, n, ...]``) by cofactors."""
    c00 = s[1, 1] * s[2, 2] - s[1, 2] * s[2, 1]
    c01 = s[1, 2] * s[2, 0] - s[1, 0] * s[2, 2]
    c02 = s[1, 0] * s[2, 1] - s[1, 1] * s[2, 0]
    c10 = s[0, 2] * s[2, 1] - s[0, 1] * s[2, 2]
    c11 = s[0, 0] * s[2, 2] - s[0, 2] * s[2, 0]
    c12 = s[0, 1] * s[2, 0] - s[0, 0] * s[2, 1]
    c20 = s[0, 1] * s[1, 2] - s[0, 2] * s[1, 1]
    c21 = s[0, 2] * s[1, 0] - s[0, 0] * s[1, 2]
    c22 = s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0]
    det = s[0, 0] * c00 + s[0, 1] * c01 + s[0, 2] * c02
    adj = jnp.stack([jnp.stack([c00, c10, c20]), jnp.stack([c01, c11, c21]), jnp.stack([c02, c12, c22])])
    if r.ndim == s.ndim - 1:
        return matvec(adj, r) / det
    return matmul(adj, r) / det


def solve_arrow(k: jax.Array, r: jax.Array) -> jax.Array:
    """Solve ``k x = r`` for a 5x5 matrix whose joint block ``k[3:, 3:]`` is diagonal.

    The mass matrix and everything constraint rows add to it (each row acts on the hull and at
    most one joint) have that shape. Eliminates the two joint unknowns and solves the 3x3 Schur
    complement ``k_hh - k_hq D^-1 k_qh`` directly; ``k`` need not be symmetric. ``r`` is ``[5, ...]``
    or ``[5, n, ...]`` (several right-hand sides).
    """
    vec = r.ndim == k.ndim - 1
    dinv = 1.0 / jnp.stack([k[3, 3], k[4, 4]])
    kqh = k[3:, :3] * dinv[:, None]  # D^-1 k_qh
    schur = k[:3, :3] - matmul(k[:3, 3:], kqh)
    rq = r[3:] * (dinv if vec else dinv[:, None])
    prod = matvec if vec else matmul
    xh = solve3(schur, r[:3] - prod(k[:3, 3:], rq))
    return jnp.concatenate([xh, rq - prod(kqh, xh)])


def body_velocities(p: Pose, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Centre-of-mass velocities ``[2, 3 bodies]`` and angular velocities ``[3]`` of hull, legs."""
    v, w, qd = u[:2], u[2], u[3:]
    leg_v = v[:, None] + w * perp(p.leg_com - p.com[:, None]) + qd[None] * perp(p.leg_com - p.origin[:, None])
    return jnp.concatenate([v[:, None], leg_v], 1), jnp.concatenate([w[None], w[None] + qd])


def generalized_momentum(p: Pose, vel: jax.Array, ang: jax.Array) -> jax.Array:
    """``T^T M_bodies V`` for body velocities ``vel [2, 3]`` and ``ang [3]``: the generalized
    momentum ``[5]``."""
    hull = C.LANDER_MASS * vel[:, 0]
    leg = C.LEG_MASS * vel[:, 1:]  # [2, 2 legs]
    leg_l = C.LEG_INERTIA * ang[1:]
    spin = C.LANDER_INERTIA * ang[0] + total(cross(p.leg_com - p.com[:, None], leg) + leg_l)
    q = cross(p.leg_com - p.origin[:, None], leg) + leg_l
    return jnp.concatenate([hull + total(leg, 1), spin[None], q])


def project_velocities(p: Pose, vel: jax.Array, ang: jax.Array) -> jax.Array:
    """Reduced velocity with the same generalized momentum as body velocities ``vel``, ``ang``.

    Solves ``M u = T^T M_bodies V``: for velocities that satisfy the pins this reads them back
    exactly; for slightly inconsistent ones it is what a converged pin-joint solve produces.
    """
    return solve_arrow(mass_matrix(p), generalized_momentum(p, vel, ang))
