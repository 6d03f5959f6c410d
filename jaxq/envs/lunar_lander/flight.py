"""The velocity solve of a lander off the ground: what the engine's sweeps converge to, and the
joint impulses they leave behind.

Without ground contact only the two joints act. The original's 180 sequential-impulse sweeps
have converged then (a swinging leg's motor converges slowest, by about 3 % per sweep), so the
velocities are the exact solution of two box-constrained rows in reduced coordinates: per joint,
on the fold rate ``f_dot = -i q_dot`` (``i`` the leg's side), a motor toward ``f_dot = -0.3``
with impulse in ``[-m, m]`` (``m = torque dt``), merged with the limit when the step starts at
one (:func:`joint_bounds`). The rows couple only through the hull, so the 2x2 problem is solved
by trying its nine active sets.

The engine's accumulated joint impulses, which warm-start the next step (and matter once a leg
touches the ground), follow from the solution: the pin impulse is the leg's change of momentum
less gravity's, the angular one (motor plus limit) is the row impulse, and at a limit the split
between motor and limit moves by ``speed / (1/I_A + 1/I_B)`` per sweep (the motor keeps pushing,
the limit holds), up to the motor's bound.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import impulses
from jaxq.envs.lunar_lander import kinematics as K

FOLD_SIGN = np.array([-i for i in C.LEG_SIDE], np.float32)  # f = FOLD_SIGN q
_BIG = 1e9


def joint_bounds(fold: jax.Array, max_impulse: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Target fold rate and impulse bounds of the joint rows, from fold angles at step start.

    A positive row impulse folds. Between the limits: the motor alone, target ``f_dot = -0.3``,
    impulse in ``[-m, m]``. At or beyond the extended limit (``f <= 0.4``): the limit forbids
    ``f_dot < 0`` and the motor pushes with ``-m``, so the merged row has target 0 and impulse in
    ``[-m, inf)``. At or beyond the folded limit (``f >= 0.9``): target 0, impulse in
    ``(-inf, -m]``.
    """
    at_ext = fold <= C.LEG_EXTENDED
    at_fold = fold >= C.LEG_FOLDED
    target = jnp.where(at_ext | at_fold, 0.0, -C.LEG_MOTOR_SPEED)
    lo = jnp.where(at_fold, -_BIG, -max_impulse)
    hi = jnp.where(at_ext, _BIG, jnp.where(at_fold, -max_impulse, max_impulse))
    return target, lo, hi


def solve_rows(minv: jax.Array, u_star: jax.Array, fold: jax.Array, max_impulse: jax.Array):
    """Velocity ``[5]`` and row impulses ``[2]`` of the two joint rows from ``u_star``.

    With ``r = J u* - t`` and ``W = J M^-1 J^T``, a row is free (``r + W lam = 0`` there, ``lam``
    within its bounds) or at a bound (at ``lo`` its velocity may only exceed the target, at ``hi``
    only fall short). The first of the nine active sets that satisfies all that is taken.
    """
    sign = K.expand(FOLD_SIGN, fold, 1)
    target, lo, hi = joint_bounds(fold, max_impulse)
    resid = sign * u_star[3:] - target
    w00 = minv[3, 3] * sign[0] * sign[0]
    w11 = minv[4, 4] * sign[1] * sign[1]
    w01 = minv[3, 4] * sign[0] * sign[1]
    det = w00 * w11 - w01 * w01
    bounds = ((lo[0], hi[0]), (lo[1], hi[1]))
    chosen = jnp.zeros_like(resid)
    found = jnp.zeros_like(resid[0], bool)
    tol = 1e-7
    for case in itertools.product(("free", "lo", "hi"), repeat=2):
        fixed = [bounds[k][0] if c == "lo" else bounds[k][1] for k, c in enumerate(case)]
        if case == ("free", "free"):
            lam = [(-resid[0] * w11 + resid[1] * w01) / det, (-resid[1] * w00 + resid[0] * w01) / det]
        elif case[0] == "free":
            lam = [-(resid[0] + w01 * fixed[1]) / w00, fixed[1]]
        elif case[1] == "free":
            lam = [fixed[0], -(resid[1] + w01 * fixed[0]) / w11]
        else:
            lam = fixed
        after = [resid[0] + w00 * lam[0] + w01 * lam[1], resid[1] + w01 * lam[0] + w11 * lam[1]]
        ok = ~found
        for k, c in enumerate(case):
            if c == "free":
                ok = ok & (lam[k] >= bounds[k][0]) & (lam[k] <= bounds[k][1])
            elif c == "lo":
                ok = ok & (after[k] >= -tol)
            else:
                ok = ok & (after[k] <= tol)
        chosen = jnp.where(ok[None], jnp.stack(lam), chosen)
        found = found | ok
    generalized = sign * chosen  # impulse on the joint coordinates q
    u = u_star + minv[:, 3] * generalized[0] + minv[:, 4] * generalized[1]
    return u, chosen


def engine_impulses(p: K.Pose, u_start: jax.Array, u_new: jax.Array, lam: jax.Array,
                    joints: tuple[impulses.Joint, impulses.Joint], warm: jax.Array, gravity_dv: jax.Array,
                    iterations: int, max_impulse: jax.Array) -> jax.Array:
    """The engine's accumulated joint impulses ``[2, 4]`` (pin x, pin y, limit, motor) after
    ``iterations`` converged sweeps that took the legs from ``u_start`` to ``u_new``."""
    v0, _ = K.body_velocities(p, u_start)
    v1, _ = K.body_velocities(p, u_new)
    out = []
    for k, j in enumerate(joints):
        pin = C.LEG_MASS * (v1[:, k + 1] - v0[:, k + 1])
        pin = pin.at[1].add(-C.LEG_MASS * gravity_dv)
        total = FOLD_SIGN[k] * lam[k]  # motor + limit, on the leg, about the joint
        motor = warm[k, 3]
        step = impulses.MOTOR_SPEED[k] / (1.0 / C.LANDER_INERTIA + 1.0 / C.LEG_INERTIA)
        drifted = jnp.clip(motor + iterations * step, -max_impulse, max_impulse)
        z = total - drifted
        held = (j.at_lower & (z > 0)) | (j.at_upper & (z < 0))
        motor = jnp.where(held, drifted, jnp.clip(total, -max_impulse, max_impulse))
        out.append(jnp.stack([pin[0], pin[1], total - motor, motor]))
    return jnp.stack(out)
