"""One physics step of the lander (hull + two legs on revolute joints) over the terrain.

The step reproduces what one ``b2World.Step(1/50, 180, 60)`` of the original does to this scene,
in reduced coordinates (see :mod:`kinematics`):

1. contacts are found on the poses at the start of the step (so the legs' contact flags lag one
   step, as in the original);
2. velocities: the hull's impulse/force terms are applied through the mass matrix, gravity to all
   bodies;
3. constraints: the exact solution of the velocity problem (motors, limits, contacts with
   friction; :mod:`solver`);
4. positions: ``x += dt * v`` with the engine's per-step caps, then a non-linear Gauss-Seidel
   push-out of contacts that overlap by more than the slop (20 % per pass, ``position_iterations``
   passes with early exit), and the joint-limit correction;
5. sleep bookkeeping: a body is calm when ``|v| <= 0.01`` m/s and ``|omega| <= 2`` deg/s; the
   island sleeps once all three bodies have been calm for 25 steps in a row and the positions are
   solved.

Contacts of the hull are detected (they end the episode) but not solved: the step in which the
hull first touches is the last one of an episode, so its contact forces never matter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxq.envs.lunar_lander import collision
from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import kinematics as K
from jaxq.envs.lunar_lander import solver

N_POSITION = 5


@struct.dataclass
class Mechanism:
    """The lander's dynamic state.

    Attributes:
        position: ``[5]`` hull centre of mass ``(x, y)``, hull angle, joint angles ``q_0, q_1``.
        velocity: ``[5]`` hull centre-of-mass velocity, hull angular velocity, joint rates.
        impulses: ``[10]`` constraint impulses of the last step (joint rows, then per contact slot
            normal and friction), used to start the next solve.
        calm_steps: ``[3]`` int32, consecutive calm steps of hull, legs[0], legs[1].
    """

    position: jax.Array
    velocity: jax.Array
    impulses: jax.Array
    calm_steps: jax.Array


class SolverConfig(NamedTuple):
    """Static solver settings (they set loop lengths): Newton iterations and position passes."""

    newton_iterations: int
    position_iterations: int


class StepForces(NamedTuple):
    """Per-step physical parameters (traced, so they can be swept)."""

    gravity: jax.Array
    motor_torque: jax.Array
    friction: jax.Array  # leg-ground friction coefficient (mixed)


class StepResult(NamedTuple):
    """What the environment needs besides the new mechanism.

    ``leg_contact``: ``[2]`` legs touching the ground (manifolds at the start of the step);
    ``hull_contact``: the hull touching it; ``asleep``: the island went to sleep this step.
    """

    leg_contact: jax.Array
    hull_contact: jax.Array
    asleep: jax.Array


def leg_polygons(p: K.Pose):
    """World vertices and normals of both legs."""
    return [collision.world_polygon(C.LEG_BOX, *p.leg_com[k], p.leg_cs[k], p.leg_sn[k]) for k in range(2)]


def hull_polygon(p: K.Pose):
    """World vertices and normals of the hull."""
    return collision.world_polygon(C.LANDER_POLY, *p.origin, p.cs, p.sn)


def contacts(heights: jax.Array, p: K.Pose):
    """Contact slots of both legs (two each) and the touching flags of legs and hull."""
    slots, leg_touch = [], []
    for verts, normals in leg_polygons(p):
        pts = collision.polygon_terrain(heights, verts, normals)
        leg_touch.append(jnp.any(jnp.stack([q.valid for q in pts])))
        slots.extend(collision.best_two(pts))
    hull_pts = collision.polygon_terrain(heights, *hull_polygon(p))
    hull_touch = jnp.any(jnp.stack([q.valid for q in hull_pts]))
    return slots, jnp.stack(leg_touch), hull_touch


def _contact_rows(p: K.Pose, slots):
    """Normal and friction rows of every contact slot (slot ``s`` belongs to leg ``s // 2``)."""
    (cx, cy), (ox, oy) = p.com, p.origin
    rows = []
    for s, pt in enumerate(slots):
        leg = s // 2
        for dx, dy in ((pt.nx, pt.ny), (pt.ny, -pt.nx)):
            dx = jnp.where(pt.valid, dx, 0.0)
            dy = jnp.where(pt.valid, dy, 0.0)
            jh = (dx, dy, K.cross(pt.x - cx, pt.y - cy, dx, dy))
            lever = K.cross(pt.x - ox, pt.y - oy, dx, dy)
            rows.append(solver.Row(jh, (lever, 0.0) if leg == 0 else (0.0, lever)))
    return rows


def _dot(row: solver.Row, u) -> jax.Array:
    out = row.jh[0] * u[0] + row.jh[1] * u[1] + row.jh[2] * u[2]
    for k in range(2):
        if solver._nonzero(row.jq[k]):
            out = out + row.jq[k] * u[3 + k]
    return out


def _cap(u):
    """Scale velocities so no body moves more than 2 m or turns more than pi/2 in one step."""
    vx, vy, w, qd0, qd1 = u
    speed = jnp.sqrt(vx * vx + vy * vy)
    vscale = jnp.minimum(1.0, C.MAX_TRANSLATION / jnp.maximum(speed * C.DT, 1e-12))
    wmax = C.MAX_ROTATION / C.DT
    w_c = jnp.clip(w, -wmax, wmax)
    qd = [jnp.clip(w_c + qd, -wmax, wmax) - w_c for qd in (qd0, qd1)]
    return vx * vscale, vy * vscale, w_c, qd[0], qd[1]


def _position_correction(pr: solver.Problem, sep, valid, iterations: int):
    """Box2D-style push-out of overlapping contacts, linearised in the reduced coordinates.

    ``sep[s]`` is each slot's separation minus the contact distance at the end of the step. A pass
    visits the slots in order: ``C = clamp(0.2 (sep + slop), -0.2, 0)``, impulse ``P = -C / W_ss``,
    and every separation moves by ``W_ts P``. Passes stop after the first whose separations all
    exceed ``-3 slop`` (the original's early exit). Returns the total push impulses per slot and
    whether the contacts ended up solved.
    """
    idx = [solver.N_JOINTS + 2 * s for s in range(solver.N_SLOTS)]
    push = [jnp.zeros_like(sep[0]) for _ in idx]
    sep = list(sep)
    done = jnp.zeros((), bool)
    for _ in range(iterations):
        min_sep = jnp.asarray(_BIG_SEP, sep[0].dtype)
        for a, ka in enumerate(idx):
            min_sep = jnp.where(valid[a], jnp.minimum(min_sep, sep[a]), min_sep)
            corr = jnp.clip(C.BAUMGARTE * (sep[a] + C.LINEAR_SLOP), -C.MAX_LINEAR_CORRECTION, 0.0)
            wkk = jnp.where(pr.w[ka][ka] > 0, pr.w[ka][ka], 1.0)
            imp = jnp.where(valid[a] & ~done, -corr / wkk, 0.0)
            push[a] = push[a] + imp
            for b, kb in enumerate(idx):
                sep[b] = sep[b] + pr.w[kb][ka] * imp
        done = done | (min_sep >= -3.0 * C.LINEAR_SLOP)
    return push, done


_BIG_SEP = 1e9


def _limit_correction(fold, at_ext, at_fold):
    """Joint-limit position correction (angles only) and whether the joint is within the slop."""
    c_ext = jnp.clip(fold - C.LEG_EXTENDED + C.ANGULAR_SLOP, -C.MAX_ANGULAR_CORRECTION, 0.0)
    c_fold = jnp.clip(fold - C.LEG_FOLDED - C.ANGULAR_SLOP, 0.0, C.MAX_ANGULAR_CORRECTION)
    corr = jnp.where(at_ext, c_ext, jnp.where(at_fold, c_fold, 0.0))
    new = fold - corr
    ok = jnp.where(at_ext, C.LEG_EXTENDED - new <= C.ANGULAR_SLOP, jnp.where(at_fold, new - C.LEG_FOLDED <= C.ANGULAR_SLOP, True))
    return new, ok


def physics_step(
    mech: Mechanism,
    heights: jax.Array,
    hull_impulse: tuple[jax.Array, jax.Array, jax.Array],
    forces: StepForces,
    config: SolverConfig,
) -> tuple[Mechanism, StepResult]:
    """Advance the mechanism by one step of ``dt = 1/50`` s.

    Args:
        mech: state at the start of the step.
        heights: ``[11]`` terrain heights.
        hull_impulse: ``(J_x, J_y, L)``: linear impulse (N s) on the hull's centre of mass and
            angular impulse (N m s) about it, acting at the start of the step (engines, and
            ``dt`` times wind force and torque).
        forces: gravity, motor torque and friction.
        config: static iteration counts.
    """
    cx, cy, th, q0, q1 = (mech.position[i] for i in range(N_POSITION))
    u = tuple(mech.velocity[i] for i in range(N_POSITION))
    p = K.pose(cx, cy, th, q0, q1)
    mm = K.mass_matrix(p)

    slots, leg_touch, hull_touch = contacts(heights, p)

    du = K.apply_impulse(mm, hull_impulse, (0.0, 0.0))
    u_star = tuple(u[i] + du[i] for i in range(N_POSITION))
    u_star = (u_star[0], u_star[1] + forces.gravity * C.DT, *u_star[2:])

    max_imp = forces.motor_torque * C.DT
    folds = [-C.LEG_SIDE[k] * (q0, q1)[k] for k in range(2)]
    targets, lo, hi, rows = [], [], [], []
    for k in range(2):
        t, l, h = solver.joint_bounds(folds[k], max_imp)
        targets.append(t)
        lo.append(l)
        hi.append(h)
        sign = -C.LEG_SIDE[k]
        rows.append(solver.Row((0.0, 0.0, 0.0), (sign, 0.0) if k == 0 else (0.0, sign)))
    rows.extend(_contact_rows(p, slots))
    b = [_dot(r, u_star) for r in rows]
    b[0] = b[0] - targets[0]
    b[1] = b[1] - targets[1]
    valid = [s.valid for s in slots]
    pr = solver.build(mm, rows, b, lo, hi, valid, forces.friction)

    warm = [mech.impulses[i] for i in range(solver.N_ROWS)]
    lam = solver.solve(pr, warm, config.newton_iterations)
    dv = solver.velocity_from_impulses(mm, pr, lam)
    u_new = _cap(tuple(u_star[i] + dv[i] for i in range(N_POSITION)))

    # Positions, then push-out of overlapping contacts (separations predicted to first order).
    pos = [cx, cy, th, q0, q1]
    pos = [pos[i] + C.DT * u_new[i] for i in range(N_POSITION)]
    sep = [
        s.separation - C.CONTACT_DISTANCE + C.DT * _dot(rows[solver.N_JOINTS + 2 * i], u_new)
        for i, s in enumerate(slots)
    ]
    push, contacts_ok = _position_correction(pr, sep, valid, config.position_iterations)
    nidx = [solver.N_JOINTS + 2 * s for s in range(solver.N_SLOTS)]
    z = [sum(push[a] * pr.z[k][i] for a, k in enumerate(nidx)) for i in range(3)]
    jq = [sum(push[a] * pr.jq[k][i] for a, k in enumerate(nidx) if solver._nonzero(pr.jq[k][i])) for i in range(2)]
    dpos = K.velocity_change(mm, z, jq)
    pos = [pos[i] + dpos[i] for i in range(N_POSITION)]
    joints_ok = jnp.ones((), bool)
    for k in range(2):
        sign = -C.LEG_SIDE[k]
        new_fold, ok = _limit_correction(sign * pos[3 + k], folds[k] <= C.LEG_EXTENDED, folds[k] >= C.LEG_FOLDED)
        pos[3 + k] = sign * new_fold
        joints_ok = joints_ok & ok

    # Sleep: every body calm for 25 steps in a row and the positions solved.
    vel, ang = K.body_velocities(p, u_new)
    calm = jnp.stack(
        [
            (vx * vx + vy * vy <= C.LINEAR_SLEEP_TOLERANCE**2) & (w * w <= C.ANGULAR_SLEEP_TOLERANCE**2)
            for (vx, vy), w in zip(vel, ang)
        ]
    )
    calm_steps = jnp.where(calm, mech.calm_steps + 1, 0)
    asleep = (jnp.min(calm_steps) >= C.SLEEP_STEPS) & contacts_ok & joints_ok

    dtype = mech.position.dtype
    new = Mechanism(
        position=jnp.stack(pos).astype(dtype),
        velocity=jnp.stack(u_new).astype(dtype),
        impulses=jnp.stack(lam).astype(dtype),
        calm_steps=calm_steps.astype(jnp.int32),
    )
    return new, StepResult(leg_touch, hull_touch, asleep)
