"""Reduced coordinates of the lander: hull pose plus two joint angles, and its 5x5 mass matrix.

The mechanism has five degrees of freedom. Positions are ``(c_x, c_y, theta, q_0, q_1)``: the
hull's centre of mass, the hull angle, and the two joint angles ``q_k = theta_leg_k - theta -
ref_k`` (the revolute joints' own angle). Velocities are ``u = (v_x, v_y, omega, qd_0, qd_1)``:
the hull's centre-of-mass velocity, its angular velocity and the joint rates. The pin joints hold
exactly by construction.

Leg ``k`` hangs from the hull's body origin ``P = c - R(theta) (0, h)`` (``h`` = height of the
hull's centre of mass above its origin); its centre is ``c_k = P - R(theta_k) a_k`` with ``a_k``
the joint anchor in leg coordinates and ``theta_k = theta + q_k + ref_k``.

Every function here works on one environment with scalar arrays (vectors are ``(x, y)`` tuples),
so that ``vmap`` turns each operation into a single vector operation over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxq.envs.lunar_lander import constants as C

Vec = tuple[jax.Array, jax.Array]
N_DOF = 5


def rot(cs: jax.Array, sn: jax.Array, x, y) -> Vec:
    """``R(theta) (x, y)`` given ``cos theta``, ``sin theta``."""
    return cs * x - sn * y, sn * x + cs * y


def cross(ax, ay, bx, by) -> jax.Array:
    """``a_x b_y - a_y b_x``."""
    return ax * by - ay * bx


class Pose(NamedTuple):
    """World poses of the three bodies derived from the reduced coordinates.

    ``com``/``cs``/``sn``: hull centre of mass and the cosine/sine of its angle; ``origin``: the
    hull's body origin (the joint point); ``leg_com[k]``, ``leg_cs[k]``, ``leg_sn[k]``: leg centres
    (= leg origins) and the cosine/sine of the leg angles.
    """

    com: Vec
    cs: jax.Array
    sn: jax.Array
    origin: Vec
    leg_com: tuple[Vec, Vec]
    leg_cs: tuple[jax.Array, jax.Array]
    leg_sn: tuple[jax.Array, jax.Array]


def pose(cx, cy, theta, q0, q1) -> Pose:
    """World poses of hull and legs for reduced positions ``(c, theta, q)``."""
    cs, sn = jnp.cos(theta), jnp.sin(theta)
    ox, oy = cx + sn * C.LANDER_COM_Y, cy - cs * C.LANDER_COM_Y
    legs, lcs, lsn = [], [], []
    for k, q in enumerate((q0, q1)):
        a = theta + q + C.LEG_REFERENCE_ANGLE[k]
        kc, ks = jnp.cos(a), jnp.sin(a)
        ax, ay = rot(kc, ks, *C.LEG_ANCHOR[k])
        legs.append((ox - ax, oy - ay))
        lcs.append(kc)
        lsn.append(ks)
    return Pose((cx, cy), cs, sn, (ox, oy), tuple(legs), tuple(lcs), tuple(lsn))


class MassMatrix(NamedTuple):
    """The reduced mass matrix in block form, ready for solves.

    ``M = [[Hh, B], [B^T, D]]`` with the 3x3 hull block ``Hh``, one column ``B[:, k]`` per leg and
    the constant diagonal ``D = diag(I_joint, I_joint)`` (a leg's inertia about its joint; legs do
    not couple to each other directly). Stored: the columns ``b[k] = B[:, k]`` and the Cholesky
    factor ``L`` (lower, row-major ``l00, l10, l11, l20, l21, l22``) of the Schur complement
    ``S = Hh - B D^-1 B^T``, the hull's articulated inertia.
    """

    b: tuple[tuple[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
    l: tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


def mass_matrix(p: Pose) -> MassMatrix:
    """Assemble ``M`` from the kinetic energy of hull and legs and factor its Schur complement.

    With ``g_k = perp(c_k - c)``, ``e_k = perp(c_k - P)`` (``perp(a) = (-a_y, a_x)``), leg mass
    ``m`` and leg inertia ``I``:
    ``Hh = [[m_L + 2m, 0, m sum g_x], [., m_L + 2m, m sum g_y], [., ., I_L + sum(m |g_k|^2 + I)]]``,
    ``B[:, k] = (m e_kx, m e_ky, m g_k . e_k + I)``, ``D_k = m |a_k|^2 + I``.
    """
    m, i_leg, d = C.LEG_MASS, C.LEG_INERTIA, C.LEG_JOINT_INERTIA
    (cx, cy), (ox, oy) = p.com, p.origin
    h00 = C.LANDER_MASS + 2 * m
    h02 = h12 = 0.0
    h22 = C.LANDER_INERTIA
    cols = []
    for lx, ly in p.leg_com:
        gx, gy = -(ly - cy), lx - cx
        ex, ey = -(ly - oy), lx - ox
        h02 = h02 + m * gx
        h12 = h12 + m * gy
        h22 = h22 + m * (gx * gx + gy * gy) + i_leg
        cols.append((m * ex, m * ey, m * (gx * ex + gy * ey) + i_leg))
    (b00, b10, b20), (b01, b11, b21) = cols
    s00 = h00 - (b00 * b00 + b01 * b01) / d
    s10 = -(b10 * b00 + b11 * b01) / d
    s11 = h00 - (b10 * b10 + b11 * b11) / d
    s20 = h02 - (b20 * b00 + b21 * b01) / d
    s21 = h12 - (b20 * b10 + b21 * b11) / d
    s22 = h22 - (b20 * b20 + b21 * b21) / d
    l00 = jnp.sqrt(s00)
    l10 = s10 / l00
    l20 = s20 / l00
    l11 = jnp.sqrt(s11 - l10 * l10)
    l21 = (s21 - l20 * l10) / l11
    l22 = jnp.sqrt(s22 - l20 * l20 - l21 * l21)
    return MassMatrix(tuple(cols), (l00, l10, l11, l20, l21, l22))


def hull_effective(mm: MassMatrix, jh, jq) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``z = L^-1 (j_h - B D^-1 j_q)`` for a row (or generalized impulse) ``(j_h, j_q)``.

    For two rows ``j``, ``l`` the Delassus entry is ``j M^-1 l^T = z_j . z_l + j_q . l_q / D``.
    """
    d = C.LEG_JOINT_INERTIA
    (b00, b10, b20), (b01, b11, b21) = mm.b
    y0 = jh[0] - (b00 * jq[0] + b01 * jq[1]) / d
    y1 = jh[1] - (b10 * jq[0] + b11 * jq[1]) / d
    y2 = jh[2] - (b20 * jq[0] + b21 * jq[1]) / d
    l00, l10, l11, l20, l21, l22 = mm.l
    z0 = y0 / l00
    z1 = (y1 - l10 * z0) / l11
    z2 = (y2 - l20 * z0 - l21 * z1) / l22
    return z0, z1, z2


def velocity_change(mm: MassMatrix, z, jq) -> tuple[jax.Array, ...]:
    """``M^-1 Q`` for a generalized impulse given by its ``z = hull_effective(Q)`` and ``Q_q``.

    Returns the five velocity increments ``(dv_x, dv_y, d omega, d qd_0, d qd_1)``.
    """
    d = C.LEG_JOINT_INERTIA
    l00, l10, l11, l20, l21, l22 = mm.l
    x2 = z[2] / l22
    x1 = (z[1] - l21 * x2) / l11
    x0 = (z[0] - l10 * x1 - l20 * x2) / l00
    dq = tuple((jq[k] - (bk[0] * x0 + bk[1] * x1 + bk[2] * x2)) / d for k, bk in enumerate(mm.b))
    return x0, x1, x2, dq[0], dq[1]


def apply_impulse(mm: MassMatrix, jh, jq) -> tuple[jax.Array, ...]:
    """Velocity change ``M^-1 (j_h, j_q)`` of a generalized impulse."""
    return velocity_change(mm, hull_effective(mm, jh, jq), jq)


def body_velocities(p: Pose, u) -> tuple[list[Vec], list[jax.Array]]:
    """Centre-of-mass velocities and angular velocities of hull, legs[0], legs[1].

    A point ``x`` of leg ``k`` moves with ``v + omega perp(x - c) + qd_k perp(x - P)``.
    """
    vx, vy, w, qd0, qd1 = u
    (cx, cy), (ox, oy) = p.com, p.origin
    vel, ang = [(vx, vy)], [w]
    for (lx, ly), qd in zip(p.leg_com, (qd0, qd1)):
        vel.append((vx - w * (ly - cy) - qd * (ly - oy), vy + w * (lx - cx) + qd * (lx - ox)))
        ang.append(w + qd)
    return vel, ang


def project_velocities(p: Pose, vel, ang) -> tuple[jax.Array, ...]:
    """Reduced velocity ``u`` closest to given body velocities in the kinetic-energy metric.

    Solves ``M u = T^T M_b V`` (``T`` maps ``u`` to body velocities, ``M_b`` the bodies' masses):
    the generalized momentum of ``V`` is kept. For velocities that satisfy the pins this just reads
    them back; for slightly inconsistent ones it is what a converged pin-joint solve produces.
    """
    m, i_leg, m_l, i_l = C.LEG_MASS, C.LEG_INERTIA, C.LANDER_MASS, C.LANDER_INERTIA
    (cx, cy), (ox, oy) = p.com, p.origin
    qh = [m_l * vel[0][0], m_l * vel[0][1], i_l * ang[0]]
    qq = []
    for k, (lx, ly) in enumerate(p.leg_com):
        px, py = m * vel[k + 1][0], m * vel[k + 1][1]
        li = i_leg * ang[k + 1]
        qh[0] = qh[0] + px
        qh[1] = qh[1] + py
        qh[2] = qh[2] + cross(lx - cx, ly - cy, px, py) + li
        qq.append(cross(lx - ox, ly - oy, px, py) + li)
    return apply_impulse(mass_matrix(p), qh, qq)
