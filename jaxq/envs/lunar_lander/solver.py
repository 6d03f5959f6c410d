"""The velocity-level constraint problem of one step, solved exactly by a small active-set Newton.

Rows (each a linear function ``J_k u`` of the reduced velocity; the pin joints need none), in this
order (arrays follow :mod:`kinematics`: structure axes first, batch axes last):

* ``2`` joint rows, one per leg, on the fold rate ``f_dot = -i q_dot``: a motor driving the leg
  toward its extended limit at 0.3 rad/s with an impulse bounded by ``torque * dt`` and, when the
  step starts at a limit, that one-sided limit merged into the same row (:func:`joint_bounds`);
* ``4`` contact normals (two slots per leg): impulse ``>= 0``, no approach, no bias;
* ``4`` friction rows, one per slot: ``|impulse| <= mu * normal impulse``.

The impulses ``lam`` solve the mixed complementarity problem
``lam = proj_bounds(lam - (J u(lam) - t) / W_kk)`` with ``u(lam) = u* + M^-1 J^T lam`` and
``W = J M^-1 J^T``: the state Box2D's warm-started sequential impulses converge to. In reduced
coordinates the hull-to-leg mass ratio costs nothing, and there are only ten rows and five
unknowns, so it is solved by a primal-dual active-set (semi-smooth Newton) iteration: guess which
rows sit on a bound, solve exactly for the others, repeat.

Every row acts on the hull's three velocities and on at most one joint rate (its leg's), so a row
is stored as its hull part and one joint coefficient (:class:`Rows`), with the leg of each row
fixed by its position; the sums below exploit that.

One Newton step, for the guessed free rows ``F``, clamped rows ``C`` and friction rows sliding at
``s_t mu lam_n``: free rows satisfy ``J_k u - t_k + eps_k (lam_k - lam_prev_k) = 0``, i.e.
``lam_k = lam_prev_k - (J_k u - t_k) / eps_k``. Substituted into ``M (u - u*) = J^T lam`` this is
the 5x5 system

``(M + sum_F J_k^T J_k / eps_k + sum_slide s_t mu J_t^T J_n / eps_n) u
  = M u* + sum_F J_k^T (lam_prev_k + t_k / eps_k) + sum_slide s_t mu J_t^T lam_prev_n + sum_C J_k^T lam_k``

with the mass matrix's block shape (:func:`kinematics.solve_arrow`). The small proximal weight
``eps_k = PROXIMAL * W_kk`` keeps redundant rows (two feet sticking with friction, two points of a
flat foot) at the impulse split of the previous iterate, as warm starting does; it vanishes at
convergence. Starting from the previous step's impulses, a few iterations find the exact active
set in practice (see the tests).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander.kinematics import expand, matvec, solve_arrow, total

N_JOINTS = 2
N_SLOTS = 4  # two contact points per leg
N_ROWS = N_JOINTS + 2 * N_SLOTS
NORMALS = slice(N_JOINTS, N_JOINTS + N_SLOTS)
FRICTIONS = slice(N_JOINTS + N_SLOTS, N_ROWS)
SLOT_LEGS = (0, 0, 1, 1)  # contact slot -> leg
ROW_LEGS = (0, 1) + SLOT_LEGS + SLOT_LEGS  # row -> the leg whose joint it involves
PROXIMAL = 1e-3  # proximal weight relative to each row's diagonal W_kk
_BIG = 1e9


def joint_bounds(fold: jax.Array, max_impulse: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Target fold rate and impulse bounds of the joint rows, from fold angles at step start.

    ``f = -i q`` is 0.4 at the extended limit and 0.9 fully folded; a positive row impulse folds.

    * between the limits: the motor alone, target ``f_dot = -0.3``, impulse in ``[-m, m]``
      (``m = torque * dt``);
    * at or beyond the extended limit (``f <= 0.4``): the limit forbids ``f_dot < 0`` and the motor
      then pushes with ``-m``, so the merged row has target ``0`` and impulse in ``[-m, inf)``;
    * at or beyond the folded limit (``f >= 0.9``): target ``0``, impulse in ``(-inf, -m]``. (This
      drops the motor's upper clamp for a leg swinging out faster than 0.3 rad/s while at the fold
      limit, which the hull's touching the ground first makes practically unreachable.)
    """
    at_ext = fold <= C.LEG_EXTENDED
    at_fold = fold >= C.LEG_FOLDED
    target = jnp.where(at_ext | at_fold, 0.0, -C.LEG_MOTOR_SPEED)
    lo = jnp.where(at_fold, -_BIG, -max_impulse)
    hi = jnp.where(at_ext, _BIG, jnp.where(at_fold, -max_impulse, max_impulse))
    return target, lo, hi


@dataclasses.dataclass(frozen=True)
class Rows:
    """Constraint rows ``J_k`` whose joint part involves only leg ``legs[k]``: ``hull [K, 3]`` (the
    hull's x, y and angular coefficients) and ``joint [K]`` (the coefficient of that leg's joint
    rate). ``legs`` is a static tuple."""

    hull: jax.Array
    joint: jax.Array
    legs: tuple

    def select(self, index: slice) -> "Rows":
        return Rows(self.hull[index], self.joint[index], self.legs[index])

    def apply(self, u: jax.Array) -> jax.Array:
        """``J u`` for velocities ``u [5]``: ``[K]``."""
        return total(self.hull * u[None, :3], 1) + self.joint * jnp.stack([u[3 + leg] for leg in self.legs])

    def impulse(self, lam: jax.Array) -> jax.Array:
        """``J^T lam``: the generalized impulse ``[5]`` of row impulses ``lam [K]``."""
        joint = [_leg_sum(self.legs, leg, self.joint * lam) for leg in range(2)]
        return jnp.concatenate([total(self.hull * lam[:, None]), jnp.stack(joint)])

    def through(self, minv: jax.Array) -> jax.Array:
        """``M^-1 J^T``: ``[5, K]``, the velocity change per unit impulse of each row."""
        cols = [
            total(minv[:, :3] * self.hull[k][None], 1) + minv[:, 3 + leg] * self.joint[k]
            for k, leg in enumerate(self.legs)
        ]
        return jnp.stack(cols, 1)


def _leg_sum(legs: tuple, leg: int, values: jax.Array) -> jax.Array:
    """Sum of ``values[k]`` over the rows ``k`` of ``leg``."""
    picked = [values[k] for k, l in enumerate(legs) if l == leg]
    return sum(picked[1:], picked[0]) if picked else jnp.zeros_like(values[0])


def add_products(mass: jax.Array, coef: jax.Array, left: Rows, right: Rows) -> jax.Array:
    """``M + sum_k coef_k left_k^T right_k`` (``left_k``, ``right_k`` on the same leg): a 5x5
    matrix that keeps the mass matrix's shape (no coupling between the two joints)."""
    lh = left.hull * coef[:, None]
    lj = left.joint * coef
    hh = total(lh[:, :, None] * right.hull[:, None, :])  # [3, 3]
    hq = [_leg_sum(left.legs, leg, lh * right.joint[:, None]) for leg in range(2)]  # each [3]
    qh = [_leg_sum(left.legs, leg, lj[:, None] * right.hull) for leg in range(2)]
    qq = [_leg_sum(left.legs, leg, lj * right.joint) for leg in range(2)]
    zero = jnp.zeros_like(qq[0])
    top = jnp.concatenate([hh, jnp.stack(hq, 1)], 1)  # [3, 5]
    bottom = jnp.stack(
        [
            jnp.concatenate([qh[0], jnp.stack([qq[0], zero])]),
            jnp.concatenate([qh[1], jnp.stack([zero, qq[1]])]),
        ]
    )
    return mass + jnp.concatenate([top, bottom])


def diagonal(minv: jax.Array, rows: Rows) -> jax.Array:
    """``diag(J M^-1 J^T)``: ``[K]``, each row's inverse effective mass."""
    cols = rows.through(minv)  # [5, K]
    return jnp.stack(
        [
            total(rows.hull[k] * cols[:3, k]) + rows.joint[k] * cols[3 + leg, k]
            for k, leg in enumerate(rows.legs)
        ]
    )


class Problem(NamedTuple):
    """One step's constraint problem.

    ``rows`` (:class:`Rows`, ten of them); ``target [10]`` row velocities wanted (joint rows only,
    else 0); ``lo``/``hi [2]`` joint impulse bounds; ``valid [4]`` contact slots that exist;
    ``mu`` friction coefficient; ``mass [5, 5]``, ``minv [5, 5]``; ``u_star [5]`` velocity before
    the constraints; ``wdiag [10]`` the diagonal of ``J M^-1 J^T`` (1 for empty rows).
    """

    rows: Rows
    target: jax.Array
    lo: jax.Array
    hi: jax.Array
    valid: jax.Array
    mu: jax.Array
    mass: jax.Array
    minv: jax.Array
    u_star: jax.Array
    wdiag: jax.Array


def make_problem(rows: Rows, target, lo, hi, valid, mu, mass, u_star) -> Problem:
    """Bundle the rows with the inverse mass matrix and the Delassus diagonal."""
    minv = solve_arrow(mass, expand(np.eye(5, dtype=np.float32), mass, 2))
    wdiag = diagonal(minv, rows)
    wdiag = jnp.where(wdiag > 0, wdiag, 1.0)  # empty contact slots have zero rows
    return Problem(rows, target, lo, hi, valid, mu, mass, minv, u_star, wdiag)


def project(pr: Problem, lam: jax.Array) -> jax.Array:
    """Clamp impulses into their feasible sets (joint bounds, ``lam_n >= 0``, friction cone)."""
    lj = jnp.clip(lam[:N_JOINTS], pr.lo, pr.hi)
    ln = jnp.where(pr.valid, jnp.maximum(lam[NORMALS], 0.0), 0.0)
    lt = jnp.clip(lam[FRICTIONS], -pr.mu * ln, pr.mu * ln)
    return jnp.concatenate([lj, ln, lt])


def velocity(pr: Problem, lam: jax.Array) -> jax.Array:
    """``u* + M^-1 J^T lam``."""
    return pr.u_star + matvec(pr.minv, pr.rows.impulse(lam))


def _newton_step(pr: Problem, eps: jax.Array, lam: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One active-set Newton step from impulses ``lam`` and their velocity ``u``."""
    resid = pr.rows.apply(u) - pr.target
    prop = lam - resid / pr.wdiag  # the projected-Gauss-Seidel proposal decides each row's status
    pj, pn, pt = prop[:N_JOINTS], prop[NORMALS], prop[FRICTIONS]
    free_j = (pj > pr.lo) & (pj < pr.hi)
    fixed_j = jnp.where(free_j, 0.0, jnp.where(pj <= pr.lo, pr.lo, pr.hi))
    free_n = pr.valid & (pn > 0)
    free_t = free_n & (jnp.abs(pt) < pr.mu * jnp.maximum(lam[NORMALS], 0.0))
    slide = jnp.where(free_n & ~free_t, jnp.where(pt >= 0, pr.mu, -pr.mu), 0.0)  # s_t mu
    free = jnp.concatenate([free_j, free_n, free_t])
    fixed = jnp.concatenate([fixed_j, jnp.zeros_like(lam[N_JOINTS:])])

    a = jnp.where(free, 1.0 / eps, 0.0)
    jn, jt = pr.rows.select(NORMALS), pr.rows.select(FRICTIONS)
    k = add_products(add_products(pr.mass, a, pr.rows, pr.rows), slide * a[NORMALS], jt, jn)
    coef = jnp.where(free, lam + pr.target * a, fixed)
    rhs = (
        matvec(pr.mass, pr.u_star)
        + pr.rows.impulse(coef)
        + jt.impulse(slide * jnp.where(free_n, lam[NORMALS], 0.0))
    )
    u_new = solve_arrow(k, rhs)

    lam_free = jnp.where(free, lam - (pr.rows.apply(u_new) - pr.target) / eps, fixed)
    lam_t = jnp.where(slide != 0, slide * lam_free[NORMALS], lam_free[FRICTIONS])
    return jnp.concatenate([lam_free[: N_ROWS - N_SLOTS], lam_t]), u_new


def solve(pr: Problem, warm: jax.Array, iterations: int) -> tuple[jax.Array, jax.Array]:
    """Impulses and velocity after ``iterations`` Newton steps from ``warm``, projected feasible.

    The velocity is the last Newton solve's own (the impulses it implies carry the penalty's
    ``1/eps`` rounding), plus the effect of the final projection, which is zero once the active
    set is right.
    """
    eps = PROXIMAL * pr.wdiag
    lam0 = project(pr, warm)

    def body(_, carry):
        return _newton_step(pr, eps, *carry)

    lam, u = jax.lax.fori_loop(0, iterations, body, (lam0, velocity(pr, lam0)))
    feasible = project(pr, lam)
    return feasible, u + matvec(pr.minv, pr.rows.impulse(feasible - lam))
