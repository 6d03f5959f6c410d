"""The velocity-level constraint problem of one step, solved exactly by a small active-set Newton.

Rows (each a linear function ``J u`` of the reduced velocity ``u``; the pin joints need none):

* ``2`` joint rows, one per leg, on the fold rate ``f_dot = -i q_dot``: a motor that drives the leg
  toward its extended limit at 0.3 rad/s with an impulse bounded by ``torque * dt`` and, when the
  step starts at the extended (or folded) limit, that one-sided limit merged into the same row
  (see :func:`joint_bounds`);
* ``2`` contact slots per leg, each a normal row (impulse ``>= 0``, no approach, no bias) and a
  friction row (``|impulse| <= mu * normal impulse``).

With ``W = J M^-1 J^T`` (the Delassus matrix) and ``b = J u* - target``, the impulses ``lam``
solve the mixed complementarity problem ``lam = proj_bounds(lam - (W lam + b) / diag W)``: the
state that Box2D's warm-started sequential impulses converge to. Written in reduced coordinates
the hull-to-leg mass ratio no longer slows anything down, and the problem has only ten rows, so it
is solved by a primal-dual active-set (semi-smooth Newton) iteration: guess which rows sit on a
bound, solve the linear system for the others exactly, repeat. Each solve carries a small
proximal term ``eps * diag(W) * (lam - lam_prev)`` so that redundant rows (two feet sticking
with friction, two points of a flat foot) keep the impulse split of the previous iterate, as
warm starting does, instead of making the system singular. A few iterations from the previous
step's impulses find the exact active set in practice (the tests measure it).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander.kinematics import MassMatrix, hull_effective, velocity_change

N_JOINTS = 2
N_SLOTS = 4  # two contact points per leg
N_ROWS = N_JOINTS + 2 * N_SLOTS
_BIG = 1e9
PROXIMAL = 1e-4  # eps: proximal weight relative to each row's diagonal


class Row(NamedTuple):
    """A constraint row ``(j_h, j_q)``: hull part ``(x, y, angular)`` and joint part ``(q_0, q_1)``."""

    jh: tuple
    jq: tuple


class Problem(NamedTuple):
    """Everything the Newton iteration needs: Delassus matrix and vectors over the ten rows.

    ``z[k]``: the row's hull-effective vector (``W = z z^T + j_q j_q^T / D``); ``jq[k]``;
    ``w``: ``W`` as nested lists; ``b``; joint bounds ``lo``/``hi`` (first two rows);
    ``valid``: which contact slots exist; ``mu``: friction coefficient.
    """

    z: list
    jq: list
    w: list
    b: list
    lo: list
    hi: list
    valid: list
    mu: jax.Array


def joint_bounds(fold: jax.Array, max_impulse: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Target fold rate and impulse bounds of one leg's joint row, from the fold angle at step start.

    ``f = -i q`` is 0.4 at the extended limit and 0.9 fully folded; a positive row impulse folds.

    * between the limits: the motor alone, target ``f_dot = -0.3``, impulse in ``[-m, m]``
      (``m = torque * dt``);
    * at or beyond the extended limit (``f <= 0.4``): the limit forbids ``f_dot < 0`` and the motor
      then pushes with ``-m``, so the merged row has target ``0`` and impulse in ``[-m, inf)``;
    * at or beyond the folded limit (``f >= 0.9``): target ``0``, impulse in ``(-inf, -m]``. (This
      drops the motor's upper clamp for legs swinging out faster than 0.3 rad/s while at the fold
      limit, which the hull's touching the ground makes practically unreachable.)
    """
    at_ext = fold <= C.LEG_EXTENDED
    at_fold = fold >= C.LEG_FOLDED
    target = jnp.where(at_ext | at_fold, 0.0, -C.LEG_MOTOR_SPEED)
    lo = jnp.where(at_fold, -_BIG, -max_impulse)
    hi = jnp.where(at_ext, _BIG, jnp.where(at_fold, -max_impulse, max_impulse))
    return target, lo, hi


def build(mm: MassMatrix, rows: Sequence[Row], b, lo, hi, valid, mu) -> Problem:
    """Delassus matrix ``W = J M^-1 J^T`` of the rows (symmetric, assembled once per step)."""
    d = C.LEG_JOINT_INERTIA
    z = [hull_effective(mm, r.jh, r.jq) for r in rows]
    n = len(rows)
    w = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            v = z[i][0] * z[j][0] + z[i][1] * z[j][1] + z[i][2] * z[j][2]
            for k in range(N_JOINTS):
                if _nonzero(rows[i].jq[k]) and _nonzero(rows[j].jq[k]):
                    v = v + rows[i].jq[k] * rows[j].jq[k] / d
            w[i][j] = w[j][i] = v
    return Problem(z, [r.jq for r in rows], w, list(b), list(lo), list(hi), list(valid), mu)


def _nonzero(x) -> bool:
    """Whether a row entry can be non-zero (rows use the Python literal 0.0 for structural zeros)."""
    return not (isinstance(x, float) and x == 0.0)


def _statuses(pr: Problem, lam):
    """Active-set guess from the current impulses: which rows are free, and the fixed values.

    Returns ``free[k]`` (bool), ``fixed[k]`` (value of a row held at a bound, or 0) and ``slide[t]``
    (``+-1`` for a friction row held at ``+-mu * normal``, else 0).
    """
    n = len(lam)
    resid = [pr.b[k] + sum(pr.w[k][j] * lam[j] for j in range(n)) for k in range(n)]
    prop = [lam[k] - resid[k] / jnp.where(pr.w[k][k] > 0, pr.w[k][k], 1.0) for k in range(n)]
    free, fixed, slide = [None] * n, [0.0] * n, [0.0] * n
    for k in range(N_JOINTS):
        free[k] = (prop[k] > pr.lo[k]) & (prop[k] < pr.hi[k])
        fixed[k] = jnp.where(prop[k] <= pr.lo[k], pr.lo[k], pr.hi[k])
    for s in range(N_SLOTS):
        kn, kt = N_JOINTS + 2 * s, N_JOINTS + 2 * s + 1
        free[kn] = pr.valid[s] & (prop[kn] > 0)
        bound = pr.mu * jnp.maximum(lam[kn], 0.0)
        free[kt] = free[kn] & (jnp.abs(prop[kt]) < bound)
        slide[kt] = jnp.where(free[kn] & ~free[kt], jnp.where(prop[kt] >= 0, 1.0, -1.0), 0.0)
    return free, fixed, slide


def _newton_step(pr: Problem, lam, eps):
    """Solve the linear system of the current active-set guess (Gaussian elimination, no pivoting).

    Free row ``k``: ``sum_j W_kj lam_j + eps_k (lam_k - lam_prev_k) = -b_k``, where a friction
    column held at ``s mu lam_n`` is folded into its normal's column and fixed columns move to the
    right-hand side; other rows: ``lam_k = fixed value``. The matrix is block-diagonal up to a
    permutation (fixed rows are unit rows), and its free block is ``W_FF + eps`` with at most a
    small friction perturbation, so elimination in the natural order is stable.
    """
    n = len(lam)
    free, fixed, slide = _statuses(pr, lam)
    col_scale = [None] * n  # multiplier of column j in free rows (0 for non-free columns)
    for j in range(n):
        col_scale[j] = free[j].astype(lam[j].dtype)
    a = [[None] * n for _ in range(n)]
    r = [None] * n
    for i in range(n):
        rhs = -pr.b[i] + eps[i] * lam[i]
        for j in range(N_JOINTS):
            rhs = rhs - jnp.where(free[j], 0.0, pr.w[i][j] * fixed[j])
        for j in range(n):
            v = pr.w[i][j] * col_scale[j]
            if j >= N_JOINTS and (j - N_JOINTS) % 2 == 0:  # a normal column absorbs its sliding friction
                v = v + pr.w[i][j + 1] * pr.mu * slide[j + 1] * col_scale[j]
            if j == i:
                v = v + eps[i]
            a[i][j] = jnp.where(free[i], v, 1.0 if i == j else 0.0)
        r[i] = jnp.where(free[i], rhs, fixed[i] if i < N_JOINTS else 0.0)
    inv = [None] * n
    for k in range(n):
        piv = a[k][k]
        inv[k] = 1.0 / jnp.where(jnp.abs(piv) > 1e-12, piv, 1e-12)
        for i in range(k + 1, n):
            f = a[i][k] * inv[k]
            for j in range(k + 1, n):
                a[i][j] = a[i][j] - f * a[k][j]
            r[i] = r[i] - f * r[k]
    x = [None] * n
    for k in reversed(range(n)):
        acc = r[k]
        for j in range(k + 1, n):
            acc = acc - a[k][j] * x[j]
        x[k] = acc * inv[k]
    for s in range(N_SLOTS):
        kn, kt = N_JOINTS + 2 * s, N_JOINTS + 2 * s + 1
        x[kt] = jnp.where(free[kt], x[kt], pr.mu * slide[kt] * x[kn])
    return x


def project(pr: Problem, lam):
    """Clamp impulses into their feasible sets (joint bounds, ``lam_n >= 0``, friction cone)."""
    out = list(lam)
    for k in range(N_JOINTS):
        out[k] = jnp.clip(lam[k], pr.lo[k], pr.hi[k])
    for s in range(N_SLOTS):
        kn, kt = N_JOINTS + 2 * s, N_JOINTS + 2 * s + 1
        ln = jnp.where(pr.valid[s], jnp.maximum(lam[kn], 0.0), 0.0)
        out[kn] = ln
        out[kt] = jnp.clip(lam[kt], -pr.mu * ln, pr.mu * ln)
    return out


def solve(pr: Problem, warm: Sequence[jax.Array], iterations: int):
    """Impulses after ``iterations`` active-set Newton steps from ``warm``, clamped feasible."""
    eps = [PROXIMAL * pr.w[k][k] for k in range(len(warm))]
    lam0 = project(pr, list(warm))

    def body(_, lam):
        return tuple(_newton_step(pr, list(lam), eps))

    lam = jax.lax.fori_loop(0, iterations, body, tuple(lam0))
    return project(pr, list(lam))


def velocity_from_impulses(mm: MassMatrix, pr: Problem, lam) -> tuple[jax.Array, ...]:
    """``M^-1 J^T lam``: the reduced velocity change produced by the row impulses."""
    z = [sum(lam[k] * pr.z[k][i] for k in range(len(lam))) for i in range(3)]
    jq = [sum(lam[k] * pr.jq[k][i] for k in range(len(lam)) if _nonzero(pr.jq[k][i])) for i in range(2)]
    return velocity_change(mm, z, jq)


def residual(pr: Problem, lam) -> jax.Array:
    """Largest violation of the complementarity conditions, in m/s (0 at the exact solution).

    Per row, the distance between ``lam`` and ``proj(lam - (W lam + b) / W_kk)`` times ``W_kk``.
    """
    n = len(lam)
    res = [pr.b[k] + sum(pr.w[k][j] * lam[j] for j in range(n)) for k in range(n)]
    wkk = [jnp.where(pr.w[k][k] > 0, pr.w[k][k], 1.0) for k in range(n)]
    prop = project(pr, [lam[k] - res[k] / wkk[k] for k in range(n)])
    return jnp.max(jnp.stack([jnp.abs(prop[k] - lam[k]) * wkk[k] for k in range(n)]))
