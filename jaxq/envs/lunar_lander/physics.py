"""One physics step of the lander (hull + two legs on revolute joints) over the terrain.

The step reproduces what one ``b2World.Step(1/50, 180, 60)`` of the original does to this scene.
Positions live in reduced coordinates (see :mod:`kinematics`: the pins hold exactly); velocities
are solved as the original solves them, body by body:

1. contacts are found on the poses at the start of the step (so contact flags normally lag one
   step, as in the original), each manifold point with its feature, so that a point that keeps
   touching keeps its impulses;
2. velocities: the hull's engine impulse and gravity act, then the joints and the legs' contacts
   are solved as the original's warm-started sequential impulses solve them. In flight those
   converge, and :mod:`flight` gives the exact solution and the impulses the engine is left with;
   a lane with a leg within the contact distance runs the sweeps themselves (:mod:`impulses`,
   joints then contacts, ``velocity_iterations`` = 180 of them), whose unconverged result --
   legs softer at their limits, stiffer in folding than the exact solution -- is what the
   original computes; its body velocities are projected onto the joints (same generalized
   momentum);
3. positions: ``x += dt * v`` with the engine's per-step caps, a non-linear Gauss-Seidel push-out
   of contacts overlapping by more than the slop (20 % per pass, ``position_iterations`` passes
   with early exit; linearised in the reduced coordinates), and the joint-limit correction;
4. continuous collision: the original stops a body that would pass closer than ``TOI_DISTANCE``
   (0.005 m, core to ground) within a step at its time of impact, on its own (joints are not part
   of that sub-step), and reports the contact in that step: a leg stays there while the hull moves
   on, so its joint opens, and the next step starts from that pose (its contacts are those of the
   stopped leg) and closes the joint in its position correction. Here the nearest points of each
   leg up to ``SPECULATIVE_MARGIN`` away are tracked; a leg whose point would end the step closer
   than ``TOI_DISTANCE`` keeps the pinned pose but records the shortfall along the contact normal
   as its joint gap (``Mechanism.gap``); the next step finds its contacts on the leg offset by the
   gap, and its push-out (3.) starts from the pinned pose, closing the gap as the original's joint
   and contact corrections do together. A leg or the hull ending the step within ``TOI_DISTANCE``
   (plus the engine's tolerance) reports contact in this step;
5. contact events: a leg's contact with an edge begins when it touches an edge it did not touch
   after the last step and ends when it no longer touches one it did (:func:`contact_events`);
6. sleep: a body is calm when its own velocity after the velocity solve has ``|v| <= 0.01`` m/s
   and ``|omega| <= 2`` deg/s; the island sleeps once all three bodies have been calm for 25
   steps in a row and the positions are solved.

Contacts of the hull are detected (they end the episode) but not solved: the step in which the
hull first touches is the last one of an episode, so its contact forces never matter.

:func:`physics_step` takes one environment. Under ``vmap`` it moves the batch to the last axis
(``jax.custom_batching.custom_vmap``) and runs :func:`begin_step` (contacts, flight velocities),
:func:`swept_velocities` for the lanes near the ground (gathered to the front of the batch, so only
they pay for the full velocity iteration) and :func:`finish_step` (everything after the velocity
solve), whose every operation is one vectorised loop over the environments; arrays there follow
:mod:`kinematics` (structure axes first, batch last).
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
from jaxq.envs.lunar_lander import flight, impulses
from jaxq.envs.lunar_lander.rows import N_SLOTS, SLOT_LEGS, Rows

N_DOF = 5
# Core distance at which the original's continuous collision stops a body (and reports contact),
# and the tolerance of its root finder.
TOI_DISTANCE = max(C.LINEAR_SLOP, C.CONTACT_DISTANCE - 3 * C.LINEAR_SLOP)
TOI_TOLERANCE = 0.25 * C.LINEAR_SLOP
# Leg points this close (m) are tracked for continuous collision: enough for an approach of
# 20 m/s, and small enough that a leg plus twice the margin spans at most two edges.
SPECULATIVE_MARGIN = 0.4
_FOLD_SIGN = flight.FOLD_SIGN  # fold angle f = -i q


@struct.dataclass
class Mechanism:
    """The lander's dynamic state.

    Attributes:
        position: ``[5]`` hull centre of mass ``(x, y)``, hull angle, joint angles ``q_0, q_1``.
        velocity: ``[5]`` hull centre-of-mass velocity, hull angular velocity, joint rates.
        impulses: ``[10]`` constraint impulses of the last step (joint rows, contact normals,
            contact frictions), the starting point of the next solve.
        calm_steps: ``[3]`` int32, consecutive calm steps of hull, legs[0], legs[1].
        gap: ``[2 xy, 2 legs]`` how far each leg body sits from the pose its joint pins it to:
            nonzero only after a step in which continuous collision stopped the leg (see the
            module docstring, 4.), zero again after the next step.
    """

    position: jax.Array
    velocity: jax.Array
    impulses: jax.Array
    features: jax.Array
    edges: jax.Array
    calm_steps: jax.Array
    gap: jax.Array


class SolverConfig(NamedTuple):
    """Static solver settings (they set loop lengths): velocity iterations (sweeps of the
    sequential impulses, 180 in the original) and position passes."""

    velocity_iterations: int
    position_iterations: int


class StepForces(NamedTuple):
    """Per-step physical parameters (traced, so they can be swept)."""

    gravity: jax.Array
    motor_torque: jax.Array
    friction: jax.Array  # leg-ground friction coefficient (mixed)


class StepResult(NamedTuple):
    """What the environment needs besides the new mechanism: per leg ``[2]`` whether one of its
    ground contacts began (``leg_begin``) or ended (``leg_end``) in the step, ``hull_contact``
    (contact begun by the end of the step) and ``asleep`` (the island fell asleep).

    The original's listener sets a leg's flag on any begin and clears it on any end, so a leg
    that slides from one terrain edge onto the next loses its flag while it still touches the new
    edge (the end of the old contact comes last). The flags therefore follow
    ``flag = (flag | begin) & ~end``."""

    leg_begin: jax.Array
    leg_end: jax.Array
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
    marks real manifold points), the edges each leg touches ``[2 legs, 2]`` (edge index, -1 for
    none) and the hull's touching flag.

    The hull's flag uses its separating-axis distance (``<= 0.02``) rather than a full manifold.
    """
    legs = collision.polygon_terrain(heights, *leg_polygons(p), SPECULATIVE_MARGIN)  # [2 legs, 4]
    pair_touch = jnp.stack([legs.touch[:, 0] | legs.touch[:, 1], legs.touch[:, 2] | legs.touch[:, 3]], 1)
    pair_edge = jnp.floor(jnp.stack([legs.feature[:, 0], legs.feature[:, 2]], 1) / collision.FEATURES)
    touched = jnp.where(pair_touch, pair_edge, -1.0)  # [2 legs, 2]
    slots = collision.best_two(legs)  # [2 legs, 2]
    rest = touched.shape[2:]
    slots = collision.Manifold(
        valid=slots.valid.reshape((N_SLOTS,) + rest),
        point=slots.point.reshape((2, N_SLOTS) + rest),
        normal=slots.normal.reshape((2, N_SLOTS) + rest),
        separation=slots.separation.reshape((N_SLOTS,) + rest),
        touch=slots.touch.reshape((N_SLOTS,) + rest),
        feature=slots.feature.reshape((N_SLOTS,) + rest),
    )
    hull_touch = collision.separation(heights, *hull_polygon(p))[0] <= C.CONTACT_DISTANCE
    return slots, touched, hull_touch


def normal_rows(p: K.Pose, slots: collision.Manifold) -> Rows:
    """The contact slots' normal rows (zero for slots out of range).

    A unit push along ``n`` at point ``x`` of leg ``k`` acts on the reduced velocity through
    ``(n, cross(x - c, n))`` on the hull and ``cross(x - P, n)`` on joint ``k``.
    """
    n = jnp.where(slots.valid[None], slots.normal, 0.0)
    hull = jnp.stack([n[0], n[1], K.cross(slots.point - p.com[:, None], n)], 1)
    return Rows(hull, K.cross(slots.point - p.origin[:, None], n), SLOT_LEGS)


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

    A lane whose contacts are solved is left unchanged by further passes, so the loop ends as soon
    as every lane of the batch is solved (in flight: after one pass) -- the result is the same as
    running all ``passes``.
    """

    def unsolved(carry):
        count, _, _, done = carry
        return (count < passes) & ~jnp.all(done)

    def one_pass(carry):
        count, sep, push, done = carry
        min_sep = jnp.full_like(sep[0], jnp.inf)
        for a in range(N_SLOTS):
            min_sep = jnp.where(valid[a], jnp.minimum(min_sep, sep[a]), min_sep)
            corr = jnp.clip(C.BAUMGARTE * (sep[a] + C.LINEAR_SLOP), -C.MAX_LINEAR_CORRECTION, 0.0)
            imp = jnp.where(valid[a] & ~done, -corr / w[a, a], 0.0)
            push = push.at[a].add(imp)
            sep = sep + w[:, a] * imp[None]
        return count + 1, sep, push, done | (min_sep >= -3.0 * C.LINEAR_SLOP)

    init = (jnp.zeros((), jnp.int32), sep, jnp.zeros_like(sep), jnp.zeros_like(valid[0]))
    _, _, push, done = jax.lax.while_loop(unsolved, one_pass, init)
    return push, done


def _limit_correction(fold: jax.Array, at_ext: jax.Array, at_fold: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Joint-limit position correction (fold angles only) and whether each joint is within slop."""
    c_ext = jnp.clip(fold - C.LEG_EXTENDED + C.ANGULAR_SLOP, -C.MAX_ANGULAR_CORRECTION, 0.0)
    c_fold = jnp.clip(fold - C.LEG_FOLDED - C.ANGULAR_SLOP, 0.0, C.MAX_ANGULAR_CORRECTION)
    new = fold - jnp.where(at_ext, c_ext, jnp.where(at_fold, c_fold, 0.0))
    err = jnp.where(at_ext, C.LEG_EXTENDED - new, jnp.where(at_fold, new - C.LEG_FOLDED, 0.0))
    return new, err <= C.ANGULAR_SLOP


def _time_of_impact(normals: Rows, slots: collision.Manifold, separation: jax.Array,
                    u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The joint gaps of legs that would end the step closer than ``TOI_DISTANCE`` to the ground.

    For the approaching (not yet touching) points, the end-of-step separation of the pinned pose
    is predicted to first order, ``s_end = s + dt v_n``; the deepest offender of each leg, with
    shortfall ``d = TOI_DISTANCE - s_end > 0`` and contact normal ``n``, leaves its leg at
    ``d n`` from the pinned pose, where the original's time-of-impact sub-step stops it. Returns the
    gaps ``[2 xy, 2 legs]`` and, per leg, whether it was stopped (a contact event).
    """
    approaching = slots.valid & ~slots.touch
    vn = normals.apply(u)
    s_end = separation + C.DT * vn
    deficit = jnp.where(approaching, TOI_DISTANCE - s_end, 0.0)  # > 0: would end too close
    usable = deficit > 0
    first = deficit[0::2] >= deficit[1::2]
    hit = jnp.stack([usable[0] | usable[1], usable[2] | usable[3]])
    shortfall = jnp.where(hit, jnp.where(first, deficit[0::2], deficit[1::2]), 0.0)
    normal = jnp.where(first[None], slots.normal[:, 0::2], slots.normal[:, 1::2])
    return shortfall[None] * normal, hit


def close_to_ground(heights: jax.Array, p: K.Pose) -> tuple[jax.Array, jax.Array]:
    """The edges each leg ended within ``TOI_DISTANCE`` (plus tolerance) of, ``[2 legs, 2]``
    (edge index, -1 for none), and whether the hull did: the original's continuous collision
    reports those contacts in the same step."""
    limit = TOI_DISTANCE + TOI_TOLERANCE
    leg_sep, leg_edge = collision.pair_separations(heights, *leg_polygons(p))
    close = jnp.where(leg_sep <= limit, leg_edge.astype(jnp.float32), -1.0)
    return close, collision.separation(heights, *hull_polygon(p))[0] <= limit


def contact_events(before: jax.Array, touched: jax.Array, reached: jax.Array):
    """Begin and end events per leg ``[2]``.

    ``before [2, 5]``: the edges each leg touched after the last step (-1: none);
    ``touched [2, 2]``: the edges it touches at the start of this step; ``reached [2, 3]``: the
    edges it came within the continuous-collision distance of during the step. A contact ends
    when an edge touched before is not touched now, and begins when an edge touched now or
    reached was not touched before. Returns ``(begin, end, after [2, 5])``.
    """

    def member(edge, group):
        hits = [(edge == group[:, j]) for j in range(group.shape[1])]
        return (edge >= 0) & functools.reduce(jnp.logical_or, hits)

    end = functools.reduce(jnp.logical_or, [(before[:, j] >= 0) & ~member(before[:, j], touched)
                                            for j in range(before.shape[1])])
    after = jnp.concatenate([touched, reached], 1)
    begin = functools.reduce(jnp.logical_or, [(after[:, j] >= 0) & ~member(after[:, j], before)
                                              for j in range(after.shape[1])])
    return begin, end, after


def flight_impulses(position: jax.Array, max_impulse: jax.Array) -> jax.Array:
    """Warm-start impulses ``[16]`` of legs hanging in flight: a leg at its extended limit has its
    motor at the bound (pushing outward) held by an equal limit impulse; otherwise nothing."""
    at_limit = jnp.stack([position[3] <= impulses.LOWER[0], position[4] >= impulses.UPPER[1]])
    push = jnp.where(at_limit, max_impulse, 0.0) * jnp.asarray(C.LEG_SIDE, jnp.float32)  # motor
    zero = jnp.zeros_like(push)
    joints = jnp.stack([zero, zero, -push, push], 1)
    return jnp.concatenate([joints.reshape(-1), jnp.zeros((8,), jnp.float32)])


def solve_arrow_inverse(mass):
    return K.solve_arrow(mass, K.expand(np.eye(5, dtype=np.float32), mass, 2))


class Velocities(NamedTuple):
    """A velocity solve's result: reduced velocity ``u [5]``, body velocities ``vel [2, 3]``,
    angular velocities ``ang [3]`` and the accumulated impulses ``[16]``."""

    u: jax.Array
    vel: jax.Array
    ang: jax.Array
    impulses: jax.Array


def _joint_constants(p: K.Pose, position: jax.Array) -> tuple[impulses.Joint, impulses.Joint]:
    """Both joints' per-step constants (:func:`impulses.joint_constants`): anchors from the poses,
    limit states from the joint angles."""
    ra = p.origin - p.com
    return tuple(impulses.joint_constants(ra[0], ra[1], p.origin[0] - p.leg_com[0, k],
                                          p.origin[1] - p.leg_com[1, k], position[3 + k], k)
                 for k in range(2))


def _step_constants(mech: Mechanism, forces: StepForces) -> tuple[jax.Array, jax.Array, jax.Array]:
    """What both velocity solves start from: gravity's velocity change ``g dt``, the motors'
    impulse bound ``torque dt`` and the last step's joint impulses ``[2, 4]`` (the warm start)."""
    return (forces.gravity * C.DT, forces.motor_torque * C.DT,
            mech.impulses[:8].reshape((2, 4) + mech.impulses.shape[1:]))


def flight_velocities(p: K.Pose, minv: jax.Array, mech: Mechanism, hull_impulse: jax.Array,
                      forces: StepForces, config: SolverConfig) -> Velocities:
    """The velocity solve off the ground, where the original's sweeps converge: the exact solution
    of the joint rows (:mod:`flight`), the engine's joint impulses and no contact impulses."""
    g, max_impulse, warm_joints = _step_constants(mech, forces)
    u_star = mech.velocity + K.matvec(minv[:, :3], hull_impulse)
    u_star = u_star.at[1].add(g)
    fold = K.expand(flight.FOLD_SIGN, mech.position, 1) * mech.position[3:]
    u, lam = flight.solve_rows(minv, u_star, fold, max_impulse)
    joint_acc = flight.engine_impulses(p, mech.velocity, u, lam, _joint_constants(p, mech.position),
                                       warm_joints, g, config.velocity_iterations, max_impulse)
    vel, ang = K.body_velocities(p, u)
    rest = lam.shape[1:]
    flat = jnp.concatenate([joint_acc.reshape((8,) + rest), jnp.zeros((8,) + rest, lam.dtype)])
    return Velocities(u, vel, ang, flat)


def swept_velocities(p: K.Pose, mech: Mechanism, slots: collision.Manifold, hull_impulse: jax.Array,
                     forces: StepForces, config: SolverConfig) -> Velocities:
    """The velocity solve as the original's warm-started sequential impulses compute it, all
    ``velocity_iterations`` sweeps of joints and leg contacts (:mod:`impulses`), for a lane near
    the ground; the body velocities are projected onto the joints."""
    g, max_impulse, warm_joints = _step_constants(mech, forces)
    start_vel, start_ang = K.body_velocities(p, mech.velocity)
    hull = (start_vel[0, 0] + hull_impulse[0] / C.LANDER_MASS,
            start_vel[1, 0] + hull_impulse[1] / C.LANDER_MASS + g,
            start_ang[0] + hull_impulse[2] / C.LANDER_INERTIA)
    legs = [(start_vel[0, k + 1], start_vel[1, k + 1] + g, start_ang[k + 1]) for k in range(2)]
    r = slots.point - jnp.repeat(p.leg_com + mech.gap, 2, axis=1)  # from the leg bodies where they are
    manifolds = tuple(impulses.manifold_constants(r[:, 2 * k:2 * k + 2], slots.normal[:, 2 * k:2 * k + 2],
                                                  slots.touch[2 * k:2 * k + 2], k) for k in range(2))
    old = mech.impulses[8:].reshape((4, 2) + mech.impulses.shape[1:])
    # A contact point keeps its impulses if the same feature of the same leg touched last step.
    carried = []
    for s in range(4):
        leg = s // 2
        acc = jnp.zeros_like(old[0])
        for o in (2 * leg, 2 * leg + 1):
            same = (mech.features[o] == slots.feature[s]) & slots.touch[s]
            acc = jnp.where(same[None], old[o], acc)
        carried.append(acc)
    warm = impulses.Impulses(warm_joints, jnp.stack(carried))
    bodies, acc = impulses.solve((hull, *legs), _joint_constants(p, mech.position), manifolds, warm,
                                 forces.friction, max_impulse, config.velocity_iterations)
    vel = jnp.stack([jnp.stack([b[0], b[1]]) for b in bodies], 1)
    ang = jnp.stack([b[2] for b in bodies])
    rest = ang.shape[1:]
    flat = jnp.concatenate([acc.joints.reshape((8,) + rest), acc.contacts.reshape((8,) + rest)])
    return Velocities(K.project_velocities(p, vel, ang), vel, ang, flat)


def needs_contact_solve(position: jax.Array, heights: jax.Array) -> jax.Array:
    """Whether a leg is within the contact distance of the ground (batch-last): a superset of
    the lanes with manifold points, which need the engine's full iteration count."""
    sep = collision.separation(heights, *leg_polygons(K.pose(position)))
    return K.any_of(sep <= C.CONTACT_DISTANCE, 0)


class Stage(NamedTuple):
    """A step up to its velocity solve (batch-last): the poses at the start of the step, the
    contact slots, the edges each leg touches and the hull's flag (:func:`contacts`), the inverse
    reduced mass matrix and the solved velocities."""

    pose: K.Pose
    slots: collision.Manifold
    touched: jax.Array
    hull_touch: jax.Array
    minv: jax.Array
    solved: Velocities


def begin_step(mech: Mechanism, heights: jax.Array, hull_impulse: jax.Array, forces: StepForces,
               config: SolverConfig) -> Stage:
    """Contacts on the poses at the start of the step (legs offset by their joint gaps), and the
    velocity solve off the ground (:func:`flight_velocities`); lanes near the ground replace it by
    :func:`swept_velocities`."""
    p = K.pose(mech.position)
    slots, touched, hull_touch = contacts(heights, p._replace(leg_com=p.leg_com + mech.gap))
    minv = solve_arrow_inverse(K.mass_matrix(p))
    solved = flight_velocities(p, minv, mech, hull_impulse, forces, config)
    return Stage(p, slots, touched, hull_touch, minv, solved)


def finish_step(stage: Stage, mech: Mechanism, heights: jax.Array,
                config: SolverConfig) -> tuple[Mechanism, StepResult]:
    """Positions, push-out, continuous collision, joint limits, contact events and sleep after
    the velocity solve of ``stage``."""
    p, slots, minv = stage.pose, stage.slots, stage.minv
    fold = K.expand(_FOLD_SIGN, mech.position, 1) * mech.position[3:]
    u_new = _cap(stage.solved.u)

    # Positions, then push-out of overlapping contacts (separations of the pinned pose, where the
    # contacts were found on legs offset by their gaps, predicted to first order).
    position = mech.position + C.DT * u_new
    normals = normal_rows(p, slots)
    jn = normals.masked(slots.touch.astype(jnp.float32))
    minv_jn = jn.through(minv)  # [5, 4]
    rigid_sep = slots.separation - K.dot2(slots.normal, jnp.repeat(mech.gap, 2, axis=1))
    sep = rigid_sep - C.CONTACT_DISTANCE + C.DT * jn.apply(u_new)
    w = jnp.stack([jn.apply(minv_jn[:, b]) for b in range(N_SLOTS)], 1)  # [4, 4]
    push, contacts_ok = _push_out(w, sep, slots.touch, config.position_iterations)
    position = position + K.matvec(minv_jn, push)
    gap, leg_hit = _time_of_impact(normals, slots, rigid_sep, u_new)
    sign = K.expand(_FOLD_SIGN, position, 1)
    new_fold, joints_ok = _limit_correction(sign * position[3:], fold <= C.LEG_EXTENDED, fold >= C.LEG_FOLDED)
    position = jnp.concatenate([position[:3], sign * new_fold])

    reached, hull_close = close_to_ground(heights, K.pose(position))
    nearest = jnp.floor(slots.feature[0::2] / collision.FEATURES)  # each leg's nearest point's edge
    reached = jnp.concatenate([reached, jnp.where(leg_hit, nearest, -1.0)[:, None]], 1)
    begin, end, after = contact_events(mech.edges, stage.touched, reached)

    # Sleep: the engine tests the bodies' own velocities after its velocity solve.
    vel, ang = stage.solved.vel, stage.solved.ang
    calm = (K.dot2(vel, vel) <= C.LINEAR_SLEEP_TOLERANCE**2) & (ang * ang <= C.ANGULAR_SLEEP_TOLERANCE**2)
    calm_steps = jnp.where(calm, mech.calm_steps + 1, 0).astype(jnp.int32)
    asleep = (K.smallest(calm_steps) >= C.SLEEP_STEPS) & contacts_ok & joints_ok[0] & joints_ok[1]

    features = jnp.where(slots.touch, slots.feature, -1.0)
    new = Mechanism(position=position, velocity=u_new, impulses=stage.solved.impulses, features=features,
                    edges=after, calm_steps=calm_steps, gap=gap)
    return new, StepResult(begin, end, stage.hull_touch | hull_close, asleep)


CHUNK = 4096  # environments per pass of begin_step and finish_step (bounds their intermediates; 4096 measured fastest)
CONTACT_CHUNK = 32  # environments per pass of the full velocity iteration


def _pad(tree, pad: int):
    """Pad the trailing (batch) axis of every leaf by repeating its last lane ``pad`` times."""
    return jax.tree.map(lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], mode="edge"), tree)


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
        x = _pad(x, pad)
        return jnp.moveaxis(x.reshape(x.shape[:-1] + (n, width)), -2, 0)

    def join(x):
        return jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (n * width,))[..., :size]

    if n == 1:
        return jax.tree.map(lambda x: x[..., :size], fn(jax.tree.map(lambda x: split(x)[0], args)))
    return jax.tree.map(join, jax.lax.map(fn, jax.tree.map(split, args)))


def _sweep_near_ground(stage: Stage, mech: Mechanism, impulse: jax.Array, forces: StepForces,
                       needs: jax.Array, config: SolverConfig) -> Velocities:
    """``stage``'s velocities, with the lanes that ``need`` it (sorted to the front of the batch)
    solved by the full sweeps, ``CONTACT_CHUNK`` lanes at a time; the rest keep the flight
    solve."""
    size = needs.shape[-1]
    width = max(2, min(size, CONTACT_CHUNK))
    pad = -size % width
    inputs = _pad((stage.pose, stage.slots, mech, impulse, forces, needs, stage.solved), pad)
    count = jnp.sum(needs.astype(jnp.int32))

    def solve(part):
        p, slots, mech, impulse, forces, needs, solved = part
        swept = swept_velocities(p, mech, slots, impulse, forces, config)
        return jax.tree.map(lambda s, f: jnp.where(needs, s, f), swept, solved)

    if size + pad == width:
        # One chunk: a conditional, because XLA hoists the whole-array "slice" of a one-chunk
        # loop out of the loop and would run the full iteration on every step.
        out = jax.lax.cond(count > 0, solve, lambda part: part[-1], inputs)
    else:
        def more(carry):
            return carry[0] * width < count

        def one(carry):
            i, out = carry
            start = i * width
            part = jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, width, axis=x.ndim - 1),
                                inputs)
            out = jax.tree.map(lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, start, axis=o.ndim - 1),
                               out, solve(part))
            return i + 1, out

        _, out = jax.lax.while_loop(more, one, (jnp.zeros((), jnp.int32), inputs[-1]))
    return jax.tree.map(lambda x: x[..., :size], out)


@functools.lru_cache(maxsize=None)
def _vmappable_step(config: SolverConfig):
    """The per-environment step for ``config``; ``vmap`` runs it batch-last, in chunks.

    Lanes near the ground are sorted to the front of the batch, so that only the chunks that hold
    them run the full velocity iteration (each lane's result depends only on its own state, not on
    its neighbours). Every lane's step is :func:`begin_step`, the sweeps where needed, then
    :func:`finish_step`: the program holds one copy of each."""

    def sorted_run(args, size):
        mech, heights = args[0], args[1]
        needs = needs_contact_solve(mech.position, heights)
        order = jnp.argsort(jnp.logical_not(needs), stable=True)
        mech, heights, impulse, forces, needs = jax.tree.map(lambda x: jnp.take(x, order, axis=-1),
                                                             args + (needs,))
        stage = _chunked(lambda a: begin_step(*a, config), (mech, heights, impulse, forces), size)
        stage = stage._replace(solved=_sweep_near_ground(stage, mech, impulse, forces, needs, config))
        out = _chunked(lambda a: finish_step(*a, config), (stage, mech, heights), size)
        back = jnp.argsort(order)
        return jax.tree.map(lambda x: jnp.take(x, back, axis=-1), out)

    @custom_vmap
    def lanes(args):
        return sorted_run(args, jax.tree.leaves(args)[0].shape[-1])

    @lanes.def_vmap
    def _lanes_rule(axis_size, in_batched, args):
        # Every vmap (of one environment, or of agents over their environments) joins the lanes
        # into one sorted batch, so that the conditional and the loop of ``sorted_run`` are never
        # batched into selects that would run the full iteration for every lane.
        def merge(x, batched):
            x = jnp.moveaxis(x, 0, -2) if batched else jnp.broadcast_to(
                x[..., None, :], x.shape[:-1] + (axis_size, x.shape[-1]))
            return x.reshape(x.shape[:-2] + (-1,))

        out = lanes(jax.tree.map(merge, args, in_batched[0]))
        out = jax.tree.map(lambda x: jnp.moveaxis(x.reshape(x.shape[:-1] + (axis_size, -1)), -2, 0), out)
        return out, jax.tree.map(lambda _: True, out)

    def step(mech, heights, impulse, forces):
        # One environment is a batch of one lane; a vmap over it reaches ``lanes``' rule.
        args = jax.tree.map(lambda x: x[..., None], (mech, heights, impulse, forces))
        return jax.tree.map(lambda x: x[..., 0], lanes(args))

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
