"""One physics step of the lander (hull + two legs on revolute joints) over the terrain.

The step reproduces what one ``b2World.Step(1/50, 180, 60)`` of the original does to this scene,
in reduced coordinates (see :mod:`kinematics`):

1. contacts are found on the poses at the start of the step (so contact flags normally lag one
   step, as in the original);
2. velocities: the hull's impulse and force terms act through the mass matrix, gravity on all
   bodies;
3. constraints: the exact solution of the velocity problem (motors, limits, contacts with
   friction; :mod:`solver`);
4. positions: ``x += dt * v`` with the engine's per-step caps, a non-linear Gauss-Seidel push-out
   of contacts overlapping by more than the slop (20 % per pass, ``position_iterations`` passes
   with early exit; linearised in the reduced coordinates), and the joint-limit correction;
5. continuous collision: the original stops a body that would pass closer than ``TOI_DISTANCE``
   (0.005 m, core to ground) within a step at its time of impact, on its own (joints are not part
   of that sub-step), and reports the contact in that step. Here the nearest points of each leg up
   to ``SPECULATIVE_MARGIN`` away are tracked; one that would end the step closer than
   ``TOI_DISTANCE`` is put back at that distance by turning its leg about the joint, and its
   approach speed is taken out of that joint's rate (the hull keeps moving, as in the original).
   A leg or the hull ending the step within ``TOI_DISTANCE`` (plus the engine's tolerance)
   reports contact in this step;
6. sleep: a body is calm when ``|v| <= 0.01`` m/s and ``|omega| <= 2`` deg/s; the island sleeps
   once all three bodies have been calm for 25 steps in a row and the positions are solved.

Contacts of the hull are detected (they end the episode) but not solved: the step in which the
hull first touches is the last one of an episode, so its contact forces never matter.

:func:`physics_step` takes one environment. Under ``vmap`` it moves the batch to the last axis
(``jax.custom_batching.custom_vmap``) and runs :func:`step_batched`, whose every operation is then
one vectorised loop over the environments; arrays there follow :mod:`kinematics` (structure axes
first, batch last).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.custom_batching import custom_vmap

from jaxq.envs.lunar_lander import collision
from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import kinematics as K
from jaxq.envs.lunar_lander import solver

N_DOF = 5
# Core distance at which the original's continuous collision stops a body (and reports contact),
# and the tolerance of its root finder.
TOI_DISTANCE = max(C.LINEAR_SLOP, C.CONTACT_DISTANCE - 3 * C.LINEAR_SLOP)
TOI_TOLERANCE = 0.25 * C.LINEAR_SLOP
# Leg points this close (m) are tracked for continuous collision: enough for an approach of
# 20 m/s, and small enough that a leg plus twice the margin spans at most two edges.
SPECULATIVE_MARGIN = 0.4
_MIN_LEVER = 0.05  # m: a point whose normal passes this close to the joint is not turned out
_FOLD_SIGN = np.array([-i for i in C.LEG_SIDE], np.float32)  # f = -i q


@struct.dataclass
class Mechanism:
    """The lander's dynamic state.

    Attributes:
        position: ``[5]`` hull centre of mass ``(x, y)``, hull angle, joint angles ``q_0, q_1``.
        velocity: ``[5]`` hull centre-of-mass velocity, hull angular velocity, joint rates.
        impulses: ``[10]`` constraint impulses of the last step (joint rows, contact normals,
            contact frictions), the starting point of the next solve.
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
    """What the environment needs besides the new mechanism: ``leg_contact [2]`` and
    ``hull_contact`` (contact begun by the end of the step), ``asleep`` (the island fell asleep)."""

    leg_contact: jax.Array
    hull_contact: jax.Array
    asleep: jax.Array


def leg_polygons(p: K.Pose) -> tuple[jax.Array, jax.Array]:
    """World vertices and face normals of both legs, ``[2, 2 legs, 4]`` each."""
    return collision.world_polygon(C.LEG_BOX, p.leg_com, p.leg_cs, p.leg_sn)


def hull_polygon(p: K.Pose) -> tuple[jax.Array, jax.Array]:
    """World vertices and face normals of the hull, ``[2, 1, 6]`` each."""
    return collision.world_polygon(C.LANDER_POLY, p.origin[:, None], p.cs[None], p.sn[None])


def contacts(heights: jax.Array, p: K.Pose) -> tuple[collision.Manifold, jax.Array, jax.Array]:
    """The two nearest points of each leg within ``SPECULATIVE_MARGIN`` (slots ``[4]``; ``touch``
    marks real manifold points) and the touching flags of legs ``[2]`` and hull.

    The hull's flag uses its separating-axis distance (``<= 0.02``) rather than a full manifold.
    """
    legs = collision.polygon_terrain(heights, *leg_polygons(p), SPECULATIVE_MARGIN)  # [2 legs, 4]
    leg_touch = K.any_of(legs.touch, 1)
    slots = collision.best_two(legs)  # [2 legs, 2]
    rest = leg_touch.shape[1:]
    slots = collision.Manifold(
        valid=slots.valid.reshape((solver.N_SLOTS,) + rest),
        point=slots.point.reshape((2, solver.N_SLOTS) + rest),
        normal=slots.normal.reshape((2, solver.N_SLOTS) + rest),
        separation=slots.separation.reshape((solver.N_SLOTS,) + rest),
        touch=slots.touch.reshape((solver.N_SLOTS,) + rest),
    )
    hull_touch = collision.separation(heights, *hull_polygon(p))[0] <= C.CONTACT_DISTANCE
    return slots, leg_touch, hull_touch


def constraint_rows(p: K.Pose, slots: collision.Manifold) -> solver.Rows:
    """The ten rows: joint fold rates, then contact normals, then frictions (zero if empty).

    A unit push along ``d`` at point ``x`` of leg ``k`` acts on the reduced velocity through
    ``(d, cross(x - c, d))`` on the hull and ``cross(x - P, d)`` on joint ``k``.
    """
    zero = jnp.zeros_like(slots.separation[:1])

    def rows(direction):
        direction = jnp.where(slots.valid[None], direction, 0.0)
        hull = jnp.stack([direction[0], direction[1], K.cross(slots.point - p.com[:, None], direction)], 1)
        return hull, K.cross(slots.point - p.origin[:, None], direction)

    tangent = jnp.stack([slots.normal[1], -slots.normal[0]])
    (hn, jn), (ht, jt) = rows(slots.normal), rows(tangent)
    joints_hull = jnp.broadcast_to(zero[None], (solver.N_JOINTS, 3) + zero.shape[1:])
    joints = jnp.concatenate([zero + _FOLD_SIGN[0], zero + _FOLD_SIGN[1]])
    hull = jnp.concatenate([joints_hull, hn, ht])
    return solver.Rows(hull, jnp.concatenate([joints, jn, jt]), solver.ROW_LEGS)


def _cap(u: jax.Array) -> jax.Array:
    """Scale velocities so no body moves more than 2 m or turns more than pi/2 in one step."""
    speed = jnp.sqrt(u[0] ** 2 + u[1] ** 2)
    vscale = jnp.minimum(1.0, C.MAX_TRANSLATION / jnp.maximum(speed * C.DT, 1e-12))
    wmax = C.MAX_ROTATION / C.DT
    w = jnp.clip(u[2], -wmax, wmax)
    qd = jnp.clip(w[None] + u[3:], -wmax, wmax) - w[None]
    return jnp.concatenate([u[:2] * vscale[None], w[None], qd])


def _push_out(w: jax.Array, sep: jax.Array, valid: jax.Array, passes: int) -> tuple[jax.Array, jax.Array]:
    """Box2D-style position correction of the contact slots, linearised in reduced coordinates.

    ``sep [4]``: separations minus the contact distance at the end of the step; ``w [4, 4]``: the
    Delassus block of the normals (how a unit push at one slot moves every slot). A pass visits the
    slots in order: ``C = clamp(0.2 (sep + slop), -0.2, 0)``, push ``-C / w_aa``. Passes stop after
    the first one whose separations all exceed ``-3 slop``. Returns the total pushes and whether
    the contacts ended up solved.
    """

    def one_pass(_, carry):
        sep, push, done = carry
        min_sep = jnp.full_like(sep[0], jnp.inf)
        for a in range(solver.N_SLOTS):
            min_sep = jnp.where(valid[a], jnp.minimum(min_sep, sep[a]), min_sep)
            corr = jnp.clip(C.BAUMGARTE * (sep[a] + C.LINEAR_SLOP), -C.MAX_LINEAR_CORRECTION, 0.0)
            imp = jnp.where(valid[a] & ~done, -corr / w[a, a], 0.0)
            push = push.at[a].add(imp)
            sep = sep + w[:, a] * imp[None]
        return sep, push, done | (min_sep >= -3.0 * C.LINEAR_SLOP)

    init = (sep, jnp.zeros_like(sep), jnp.zeros_like(valid[0]))
    _, push, done = jax.lax.fori_loop(0, passes, one_pass, init)
    return push, done


def _limit_correction(fold: jax.Array, at_ext: jax.Array, at_fold: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Joint-limit position correction (fold angles only) and whether each joint is within slop."""
    c_ext = jnp.clip(fold - C.LEG_EXTENDED + C.ANGULAR_SLOP, -C.MAX_ANGULAR_CORRECTION, 0.0)
    c_fold = jnp.clip(fold - C.LEG_FOLDED - C.ANGULAR_SLOP, 0.0, C.MAX_ANGULAR_CORRECTION)
    new = fold - jnp.where(at_ext, c_ext, jnp.where(at_fold, c_fold, 0.0))
    err = jnp.where(at_ext, C.LEG_EXTENDED - new, jnp.where(at_fold, new - C.LEG_FOLDED, 0.0))
    return new, err <= C.ANGULAR_SLOP


def _time_of_impact(normals: solver.Rows, slots: collision.Manifold, position: jax.Array, u: jax.Array):
    """Stop legs that would end the step closer than ``TOI_DISTANCE`` to the ground.

    For the approaching (not yet touching) points, the end-of-step separation is predicted to first
    order, ``s + dt v_n``; the deepest offender of each leg is turned out by
    ``dq = (TOI_DISTANCE - s_end) / l`` about the joint, with ``l = cross(x - P, n)`` its lever,
    and the joint rate loses ``v_n / l``, so the point neither penetrates nor approaches further.
    Returns the new position and velocity and, per leg, whether it was stopped (a contact event).
    """
    approaching = slots.valid & ~slots.touch
    vn = normals.apply(u)
    s_end = slots.separation + C.DT * vn
    deficit = jnp.where(approaching, TOI_DISTANCE - s_end, 0.0)  # > 0: would end too close
    lever = normals.joint
    usable = (deficit > 0) & (jnp.abs(lever) > _MIN_LEVER)
    safe = jnp.where(usable, lever, 1.0)
    dq = jnp.where(usable, deficit / safe, 0.0)
    dqd = jnp.where(usable, -jnp.minimum(vn, 0.0) / safe, 0.0)
    # Per leg (slots 2k, 2k + 1), act on the point that needs the larger turn.
    first = jnp.abs(dq[0::2]) >= jnp.abs(dq[1::2])
    dq_leg = jnp.where(first, dq[0::2], dq[1::2])
    dqd_leg = jnp.where(first, dqd[0::2], dqd[1::2])
    hit = jnp.stack([usable[0] | usable[1], usable[2] | usable[3]])
    return position.at[3:].add(dq_leg), u.at[3:].add(dqd_leg), hit


def close_to_ground(heights: jax.Array, p: K.Pose) -> tuple[jax.Array, jax.Array]:
    """Whether each leg ``[2]`` and the hull ended within ``TOI_DISTANCE`` (plus tolerance) of the
    ground: the original's continuous collision reports those contacts in the same step."""
    limit = TOI_DISTANCE + TOI_TOLERANCE
    leg_sep = collision.separation(heights, *leg_polygons(p))
    return leg_sep <= limit, collision.separation(heights, *hull_polygon(p))[0] <= limit


def step_batched(
    mech: Mechanism,
    heights: jax.Array,
    hull_impulse: jax.Array,
    forces: StepForces,
    config: SolverConfig,
) -> tuple[Mechanism, StepResult]:
    """:func:`physics_step` for arrays with the batch on the trailing axes."""
    p = K.pose(mech.position)
    mass = K.mass_matrix(p)
    slots, leg_touch, hull_touch = contacts(heights, p)

    impulse = jnp.concatenate([hull_impulse, jnp.zeros_like(hull_impulse[:2])])
    u_star = mech.velocity + K.solve_arrow(mass, impulse)
    u_star = u_star.at[1].add(forces.gravity * C.DT)

    fold = K.expand(_FOLD_SIGN, mech.position, 1) * mech.position[3:]
    target_j, lo, hi = solver.joint_bounds(fold, forces.motor_torque[None] * C.DT)
    rows = constraint_rows(p, slots)  # every tracked point; the solve uses the manifold points
    touch = slots.touch.astype(jnp.float32)
    mask = jnp.concatenate([jnp.ones_like(touch[:2]), touch, touch])
    solved = solver.Rows(rows.hull * mask[:, None], rows.joint * mask, rows.legs)
    target = jnp.concatenate([target_j, jnp.zeros_like(mech.impulses[solver.N_JOINTS:])])
    pr = solver.make_problem(solved, target, lo, hi, slots.touch, forces.friction, mass, u_star)
    lam, u_new = solver.solve(pr, mech.impulses, config.newton_iterations)
    u_new = _cap(u_new)

    # Positions, then push-out of overlapping contacts (separations predicted to first order).
    position = mech.position + C.DT * u_new
    jn = solved.select(solver.NORMALS)
    minv_jn = jn.through(pr.minv)  # [5, 4]
    sep = slots.separation - C.CONTACT_DISTANCE + C.DT * jn.apply(u_new)
    w = jnp.stack([jn.apply(minv_jn[:, b]) for b in range(solver.N_SLOTS)], 1)  # [4, 4]
    push, contacts_ok = _push_out(w, sep, slots.touch, config.position_iterations)
    position = position + K.matvec(minv_jn, push)
    position, u_new, leg_hit = _time_of_impact(rows.select(solver.NORMALS), slots, position, u_new)
    sign = K.expand(_FOLD_SIGN, position, 1)
    new_fold, joints_ok = _limit_correction(sign * position[3:], fold <= C.LEG_EXTENDED, fold >= C.LEG_FOLDED)
    position = jnp.concatenate([position[:3], sign * new_fold])

    leg_close, hull_close = close_to_ground(heights, K.pose(position))

    vel, ang = K.body_velocities(p, u_new)
    calm = (K.dot2(vel, vel) <= C.LINEAR_SLEEP_TOLERANCE**2) & (ang * ang <= C.ANGULAR_SLEEP_TOLERANCE**2)
    calm_steps = jnp.where(calm, mech.calm_steps + 1, 0).astype(jnp.int32)
    asleep = (K.smallest(calm_steps) >= C.SLEEP_STEPS) & contacts_ok & joints_ok[0] & joints_ok[1]

    new = Mechanism(position=position, velocity=u_new, impulses=lam, calm_steps=calm_steps)
    return new, StepResult(leg_touch | leg_hit | leg_close, hull_touch | hull_close, asleep)


CHUNK = 128  # environments per pass: keeps the step's intermediates in cache


def _chunked(fn, args, size: int):
    """``fn(args)`` for batch-last ``args`` of batch ``size``, run ``CHUNK`` environments at a time.

    Large batches are padded to a multiple of ``CHUNK`` (repeating the last environment), split,
    and mapped over sequentially, so that each chunk's working set stays in the CPU caches. A
    batch of one is run as two copies: XLA:CPU (jaxlib 0.10.2) miscompiles parts of this step when
    the trailing batch axis has size 1.
    """
    n = max(1, -(-size // CHUNK))
    width = max(2, min(size, CHUNK))
    pad = n * width - size

    def split(x):
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], mode="edge")
        return jnp.moveaxis(x.reshape(x.shape[:-1] + (n, width)), -2, 0)

    def join(x):
        return jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (n * width,))[..., :size]

    if n == 1:
        return jax.tree.map(lambda x: x[..., :size], fn(jax.tree.map(lambda x: split(x)[0], args)))
    return jax.tree.map(join, jax.lax.map(fn, jax.tree.map(split, args)))


@functools.lru_cache(maxsize=None)
def _vmappable_step(config: SolverConfig):
    """The per-environment step for ``config``; ``vmap`` runs it batch-last, in chunks."""

    def run(args):
        return step_batched(*args, config)

    @custom_vmap
    def step(mech, heights, impulse, forces):
        args = jax.tree.map(lambda x: x[..., None], (mech, heights, impulse, forces))
        return jax.tree.map(lambda x: x[..., 0], _chunked(run, args, 1))

    @step.def_vmap
    def _rule(axis_size, in_batched, mech, heights, impulse, forces):
        def to_last(x, batched):
            if batched:
                return jnp.moveaxis(x, 0, -1)
            return jnp.broadcast_to(x[..., None], x.shape + (axis_size,))

        args = jax.tree.map(to_last, (mech, heights, impulse, forces), tuple(in_batched))
        out = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), _chunked(run, args, axis_size))
        return out, jax.tree.map(lambda _: True, out)

    return step


def physics_step(
    mech: Mechanism,
    heights: jax.Array,
    hull_impulse: jax.Array,
    forces: StepForces,
    config: SolverConfig,
) -> tuple[Mechanism, StepResult]:
    """Advance one environment's mechanism by one step of ``dt = 1/50`` s.

    Args:
        mech: state at the start of the step.
        heights: ``[11]`` terrain heights.
        hull_impulse: ``[3]`` linear impulse (N s) on the hull's centre of mass and angular impulse
            (N m s) about it, acting at the start of the step (engines, and ``dt`` times the wind
            force and torque).
        forces: gravity, motor torque and friction (scalars).
        config: static iteration counts.
    """
    forces = StepForces(*(jnp.asarray(f, jnp.float32) for f in forces))
    heights = jnp.asarray(heights, jnp.float32)
    return _vmappable_step(config)(mech, heights, jnp.asarray(hull_impulse, jnp.float32), forces)
