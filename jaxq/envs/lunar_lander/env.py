"""LunarLander-v3 as a gymnax environment: parameters, state, reset, step, observation, reward.

One environment step (the original's order):

1. wind and turbulence, if enabled and neither leg touched the ground in the previous step:
   ``F = wind_power tanh(sin(0.02 k) + sin(0.01 pi k))`` along x at the hull's centre of mass,
   ``tau`` likewise with ``turbulence_power`` and the torque index ``k'``; each index advances by
   one whenever it is used;
2. two dispersion numbers ``d_0, d_1 ~ U(-1, 1) / 30`` drawn every step;
3. engine impulses on the hull (body origin ``P``, angle ``theta``, ``R`` the rotation):
   main engine ``J = 13 m R(theta)(d_1, 4/30 + 2 d_0)`` at ``P - R(theta)(d_1, 4/30 + 2 d_0)``;
   side engine (direction ``s = +-1``, ``u = 3 d_1 + 0.4 s``) ``J = 0.6 p R(theta)(u, d_0)`` at
   ``P - R(theta)(u, d_0) + (-(17/30) sin theta, (14/30) cos theta)``;
4. one physics step (:mod:`physics`);
5. observation from the hull's body origin and centre-of-mass velocity; shaping reward
   ``S = -100 |(x, y)| - 100 |(v_x, v_y)| - 100 |theta| + 10 (c_0 + c_1)`` (observation units),
   ``r = S - S_prev - 0.3 m - 0.03 p``; ``-100`` replaces ``r`` when the hull touched the ground
   or ``|x| >= 1``, and ``+100`` replaces it when the lander fell asleep (this wins if both).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import kinematics as K
from jaxq.envs.lunar_lander import physics, terrain
from jaxq.validation import check_count, check_range

OBS_HIGH = np.array([2.5, 2.5, 10.0, 10.0, 2 * np.pi, 10.0, 1.0, 1.0], np.float32)
OBS_LOW = np.array([-2.5, -2.5, -10.0, -10.0, -2 * np.pi, -10.0, 0.0, 0.0], np.float32)


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Environment parameters. Numeric fields are pytree leaves (sweepable with ``vmap``); the
    solver's iteration counts set loop lengths and are static.

    Attributes:
        max_steps_in_episode: time limit (truncation), 1000 in the original.
        gravity: m/s^2, in (-12, 0).
        enable_wind: apply wind and turbulence.
        wind_power: peak wind force, N, in [0, 20].
        turbulence_power: peak turbulence torque, N m, in [0, 2].
        main_engine_power, side_engine_power: impulse per metre of nozzle offset (13, 0.6).
        initial_random: range of the random initial force per axis, N (1000).
        leg_motor_torque: the legs' motor torque limit, N m (40).
        leg_friction, terrain_friction: friction of the leg and ground fixtures (0.2, 0.1); a
            contact uses their geometric mean.
        velocity_iterations: sweeps of the sequential-impulse velocity solve per step (the
            original's 180; with ground contact the result depends on it, as in the original).
        position_iterations: at most this many push-out passes of the position correction per
            step (the original's 60; they stop once the contacts are solved).
    """

    max_steps_in_episode: int = C.MAX_EPISODE_STEPS
    gravity: float = C.GRAVITY
    enable_wind: bool = False
    wind_power: float = C.WIND_POWER
    turbulence_power: float = C.TURBULENCE_POWER
    main_engine_power: float = C.MAIN_ENGINE_POWER
    side_engine_power: float = C.SIDE_ENGINE_POWER
    initial_random: float = C.INITIAL_RANDOM
    leg_motor_torque: float = C.LEG_MOTOR_TORQUE
    leg_friction: float = C.LEG_FRICTION
    terrain_friction: float = C.TERRAIN_FRICTION
    velocity_iterations: int = struct.field(pytree_node=False, default=180)
    position_iterations: int = struct.field(pytree_node=False, default=60)


# name -> (low, high, low_open, high_open) for the numeric parameters
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "gravity": (-12.0, 0.0, True, True),
    "wind_power": (0.0, 20.0, False, False),
    "turbulence_power": (0.0, 2.0, False, False),
    "main_engine_power": (0.0, None, False, False),
    "side_engine_power": (0.0, None, False, False),
    "initial_random": (0.0, None, False, False),
    "leg_motor_torque": (0.0, None, True, False),
    "leg_friction": (0.0, None, False, False),
    "terrain_friction": (0.0, None, False, False),
}
_COUNTS = ("max_steps_in_episode", "velocity_iterations", "position_iterations")


def make_params(**overrides: Any) -> EnvParams:
    """Default :class:`EnvParams` with ``overrides`` applied, each checked.

    Raises:
        ValueError: for an unknown name, or a value outside its range (naming both): gravity in
            ``(-12, 0)``, wind_power in ``[0, 20]``, turbulence_power in ``[0, 2]``, powers, forces
            and frictions ``>= 0``, motor torque ``> 0``, iteration counts and the time limit
            positive integers, enable_wind a bool.
    """
    fields = {f.name for f in dataclasses.fields(EnvParams)}
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            choices = ", ".join(sorted(fields))
            raise ValueError(f"{name}={value!r} is not a LunarLander parameter; choose from: {choices}")
        if name == "enable_wind":
            if not isinstance(value, bool):
                raise ValueError(f"enable_wind={value!r} is not allowed; enable_wind must be True or False")
            values[name] = value
        elif name in _COUNTS:
            values[name] = check_count(value, name)
        else:
            low, high, low_open, high_open = _RANGES[name]
            check_range(name, value, low, high, low_open=low_open, high_open=high_open)
            values[name] = float(value)
    return EnvParams(**values)



@struct.dataclass
class EnvState(environment.EnvState):
    """State of one episode.

    Attributes:
        mech: the bodies in reduced coordinates, warm-start impulses and sleep counters.
        heights: ``[11]`` terrain heights at ``x = 0, 2, ..., 20``.
        leg_contact: ``[2]`` bool, the legs' ground-contact flags reported by the last step.
        prev_shaping: shaping term of the last observation.
        wind_idx, torque_idx: int32 wind and turbulence indices.
        main_power, side_power: engine throttles of the last step (0 when off).
        side_direction: -1 (left engine, pushes toward -x), +1 (right) or 0, last step.
        time: steps since reset.
    """

    mech: physics.Mechanism
    heights: jax.Array
    leg_contact: jax.Array
    prev_shaping: jax.Array
    wind_idx: jax.Array
    torque_idx: jax.Array
    main_power: jax.Array
    side_power: jax.Array
    side_direction: jax.Array
    time: int


# --- observation and reward -------------------------------------------------------------------


def hull_origin(mech: physics.Mechanism) -> jax.Array:
    """The hull's body origin ``P = c - R(theta) (0, h)``, ``[2]``."""
    th = mech.position[2]
    return mech.position[:2] + C.LANDER_COM_Y * jnp.stack([jnp.sin(th), -jnp.cos(th)])


def observation(state: EnvState) -> jax.Array:
    """The original's 8-vector: origin, centre-of-mass velocity, angle, angular velocity, contacts.

    ``((X - 10) / 10, (Y - (H/4 + 0.6)) / (H/2), 0.2 v_x, (H/100) v_y, theta, 0.4 omega, c_0, c_1)``.
    """
    px, py = hull_origin(state.mech)
    v = state.mech.velocity
    half_w, half_h = C.W / 2, C.H / 2
    return jnp.stack(
        [
            (px - half_w) / half_w,
            (py - (C.HELIPAD_Y + C.LEG_DOWN)) / half_h,
            v[0] * half_w / C.FPS,
            v[1] * half_h / C.FPS,
            state.mech.position[2],
            20.0 * v[2] / C.FPS,
            state.leg_contact[0].astype(jnp.float32),
            state.leg_contact[1].astype(jnp.float32),
        ]
    ).astype(jnp.float32)


def shaping(obs: jax.Array) -> jax.Array:
    """``-100 |(x, y)| - 100 |(v_x, v_y)| - 100 |theta| + 10 c_0 + 10 c_1`` in observation units."""
    return (
        -100.0 * jnp.sqrt(obs[0] ** 2 + obs[1] ** 2)
        - 100.0 * jnp.sqrt(obs[2] ** 2 + obs[3] ** 2)
        - 100.0 * jnp.abs(obs[4])
        + 10.0 * obs[6]
        + 10.0 * obs[7]
    )


def terminal_reward(reward: jax.Array, crashed: jax.Array, asleep: jax.Array) -> jax.Array:
    """The step reward after the terminal overrides: ``+100`` if the lander fell asleep (this wins),
    else ``-100`` if it crashed or left the screen, else ``reward`` unchanged."""
    return jnp.where(asleep, 100.0, jnp.where(crashed, -100.0, reward))


def _wind_profile(index: jax.Array) -> jax.Array:
    """``tanh(sin(0.02 k) + sin(0.01 pi k))``, the original's non-periodic wind profile."""
    k = index.astype(jnp.float32)
    return jnp.tanh(jnp.sin(0.02 * k) + jnp.sin((0.01 * np.pi) * k))


# --- actions ----------------------------------------------------------------------------------


def decode_action(action: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(main_power, side_power, side_direction)`` of an action; the shape says which kind.

    Discrete (shape ``()``): 0 no-op, 1 left engine (direction -1), 2 main engine, 3 right engine
    (+1); traced values outside ``{0..3}`` are clipped into it. Continuous (shape ``(2,)``): clipped
    to ``[-1, 1]``; the main engine runs at ``(a_0 + 1)/2`` when ``a_0 > 0``, the side engine at
    ``|a_1|`` (at least 0.5) in direction ``sign(a_1)`` when ``|a_1| > 0.5``. NaN entries leave
    their engine off.
    """
    action = jnp.asarray(action)
    if action.shape == ():
        a = jnp.clip(action.astype(jnp.int32), 0, 3)
        main = (a == 2).astype(jnp.float32)
        side_on = (a == 1) | (a == 3)
        return main, side_on.astype(jnp.float32), jnp.where(side_on, a - 2, 0).astype(jnp.float32)
    if action.shape != (2,):
        raise ValueError(
            f"action has shape {action.shape}; a discrete action is a scalar in {{0, 1, 2, 3}} and a "
            "continuous one has shape (2,)"
        )
    a = jnp.clip(action.astype(jnp.float32), -1.0, 1.0)
    main_on = a[0] > 0
    main = jnp.where(main_on, (jnp.clip(a[0], 0.0, 1.0) + 1.0) * 0.5, 0.0)
    side_on = jnp.abs(a[1]) > 0.5
    side = jnp.where(side_on, jnp.clip(jnp.abs(a[1]), 0.5, 1.0), 0.0)
    return main, side, jnp.where(side_on, jnp.sign(a[1]), 0.0)


def engine_impulse(state: EnvState, action: jax.Array, dispersion: jax.Array, params: EnvParams):
    """Engine impulse on the hull, ``[J_x, J_y, L]`` with ``L`` about its centre of mass, and the
    throttles ``(main_power, side_power, side_direction)``."""
    main, side, direction = decode_action(action)
    d0, d1 = dispersion[0], dispersion[1]
    com, th = state.mech.position[:2], state.mech.position[2]
    cs, sn = jnp.cos(th), jnp.sin(th)
    # Nozzle offsets in the lander frame (columns: main, side): main (-d1, -(4/30 + 2 d0)), side
    # (-u, -d0) with u = 3 d1 + 0.4 s. Each engine pushes the hull by -power * throttle * offset.
    side_u = 3.0 * d1 + direction * C.SIDE_ENGINE_AWAY
    offsets = jnp.stack([jnp.stack([-d1, -side_u]), jnp.stack([-(C.MAIN_ENGINE_Y + 2.0 * d0), -d0])])
    world = K.rotate(cs, sn, offsets)  # [2 xy, 2 engines]
    push = -world * jnp.stack([params.main_engine_power * main, params.side_engine_power * side])[None]
    # The side engine's point is raised by (17/30, 14/30) (x, y parts) along the lander's up axis.
    zero = jnp.zeros_like(sn)
    quirk_x = jnp.stack([zero, -sn * C.SIDE_ENGINE_HEIGHT_X])
    quirk = jnp.stack([quirk_x, jnp.stack([zero, cs * C.SIDE_ENGINE_HEIGHT_Y])])
    point = hull_origin(state.mech)[:, None] + world + quirk
    angular = K.cross(point - com[:, None], push).sum()
    return jnp.concatenate([push.sum(1), angular[None]]), (main, side, direction)


def _wind(state: EnvState, params: EnvParams):
    """Wind force (x) and turbulence torque of this step and the advanced indices."""
    on = jnp.asarray(params.enable_wind) & ~jnp.any(state.leg_contact)
    force = jnp.where(on, params.wind_power * _wind_profile(state.wind_idx), 0.0)
    torque = jnp.where(on, params.turbulence_power * _wind_profile(state.torque_idx), 0.0)
    step = on.astype(jnp.int32)
    return force, torque, state.wind_idx + step, state.torque_idx + step


def _forces(params: EnvParams) -> physics.StepForces:
    mu = jnp.sqrt(jnp.asarray(params.leg_friction, jnp.float32) * params.terrain_friction)
    gravity = jnp.asarray(params.gravity, jnp.float32)
    return physics.StepForces(gravity, jnp.asarray(params.leg_motor_torque, jnp.float32), mu)


def _config(params: EnvParams) -> physics.SolverConfig:
    return physics.SolverConfig(params.velocity_iterations, params.position_iterations)


def transition(state: EnvState, action: jax.Array, dispersion: jax.Array, params: EnvParams):
    """One environment step with the two dispersion numbers given (each ``U(-1, 1) / 30``).

    Returns ``(obs, next_state, reward, terminated, info)``; ``info`` holds the engine throttles
    ``main_power``, ``side_power`` and ``side_direction`` of this step.
    """
    dispersion = jnp.asarray(dispersion, jnp.float32)
    force, torque, wind_idx, torque_idx = _wind(state, params)
    engines, (main, side, direction) = engine_impulse(state, action, dispersion, params)
    impulse = engines + C.DT * jnp.stack([force, jnp.zeros_like(force), torque])
    mech, res = physics.physics_step(state.mech, state.heights, impulse, _forces(params), _config(params))
    nxt = state.replace(
        mech=mech,
        leg_contact=(state.leg_contact | res.leg_begin) & ~res.leg_end,
        wind_idx=wind_idx,
        torque_idx=torque_idx,
        main_power=main,
        side_power=side,
        side_direction=direction,
        time=state.time + 1,
    )
    obs = observation(nxt)
    shape = shaping(obs)
    reward = shape - state.prev_shaping - C.MAIN_FUEL_COST * main - C.SIDE_FUEL_COST * side
    crashed = res.hull_contact | (jnp.abs(obs[0]) >= 1.0)
    reward = terminal_reward(reward, crashed, res.asleep)
    terminated = crashed | res.asleep
    nxt = nxt.replace(prev_shaping=shape)
    info = {"main_power": main, "side_power": side, "side_direction": direction}
    return obs, nxt, reward.astype(jnp.float32), terminated, info


# --- building states --------------------------------------------------------------------------


def _state(heights, mech, leg_contact, prev_shaping, wind_idx, torque_idx, time) -> EnvState:
    zero = jnp.zeros((), jnp.float32)
    st = EnvState(
        mech=mech,
        heights=jnp.asarray(heights, jnp.float32),
        leg_contact=jnp.asarray(leg_contact, bool),
        prev_shaping=zero,
        wind_idx=jnp.asarray(wind_idx, jnp.int32),
        torque_idx=jnp.asarray(torque_idx, jnp.int32),
        main_power=zero,
        side_power=zero,
        side_direction=zero,
        time=time,
    )
    if prev_shaping is None:
        prev_shaping = shaping(observation(st))
    return st.replace(prev_shaping=jnp.asarray(prev_shaping, jnp.float32))


def _mechanism(position: jax.Array, velocity: jax.Array, params: EnvParams,
               joint_impulses: Any = None) -> physics.Mechanism:
    position = jnp.asarray(position, jnp.float32)
    impulses = physics.flight_impulses(position, C.DT * jnp.asarray(params.leg_motor_torque, jnp.float32))
    if joint_impulses is not None:
        impulses = impulses.at[:8].set(jnp.asarray(joint_impulses, jnp.float32).reshape(8))
    return physics.Mechanism(
        position=position,
        velocity=jnp.asarray(velocity, jnp.float32),
        impulses=impulses,
        features=jnp.full((4,), -1.0, jnp.float32),
        edges=jnp.full((2, 5), -1.0, jnp.float32),
        calm_steps=jnp.zeros((3,), jnp.int32),
        gap=jnp.zeros((2, 2), jnp.float32),
    )


def reset_state(key: jax.Array, params: EnvParams) -> EnvState:
    """The state after the original's reset: terrain, initial push and one no-op physics step.

    That step, in which the original also snaps the legs onto their joints, is replaced by its
    affine response to the forces acting in it, measured on the original (``constants.RESET_*``):
    the random initial force ``F ~ U(-1000, 1000)^2`` plus, with wind, the wind force and
    turbulence torque of that step (the indices are drawn in ``[-9999, 9999)`` and advance by
    one). The legs then rest relative to the hull, as they do after that step.
    """
    k_terrain, k_force, k_wind, k_torque = jax.random.split(key, 4)
    heights = terrain.sample_heights(k_terrain)
    fx, fy = jax.random.uniform(k_force, (2,), jnp.float32, -1.0, 1.0) * params.initial_random
    wind_idx = jax.random.randint(k_wind, (), *C.WIND_INDEX_RANGE, jnp.int32)
    torque_idx = jax.random.randint(k_torque, (), *C.WIND_INDEX_RANGE, jnp.int32)
    on = jnp.asarray(params.enable_wind)
    fx = fx + jnp.where(on, params.wind_power * _wind_profile(wind_idx), 0.0)
    tau = jnp.where(on, params.turbulence_power * _wind_profile(torque_idx), 0.0)
    step = on.astype(jnp.int32)
    g = jnp.asarray(params.gravity, jnp.float32)

    ox = C.W / 2 + C.RESET_X_FX * fx + C.RESET_X_TAU * tau
    oy = C.H + C.RESET_Y_SNAP + g * C.DT**2 + C.RESET_Y_FY * fy
    th = C.RESET_ANGLE_0 + C.RESET_ANGLE_FX * fx + C.RESET_ANGLE_TAU * tau
    cx, cy = ox - jnp.sin(th) * C.LANDER_COM_Y, oy + jnp.cos(th) * C.LANDER_COM_Y
    q = [C.RESET_Q0[k] + C.RESET_Q_FX * fx + C.RESET_Q_TAU * tau for k in range(2)]
    vx = C.RESET_VX_FX * fx + C.RESET_VX_TAU * tau
    vy = g * C.DT + C.RESET_VY_FY * fy
    w = C.RESET_OMEGA_FX * fx + C.RESET_OMEGA_TAU * tau
    zero = jnp.zeros((), jnp.float32)
    mech = _mechanism(jnp.stack([cx, cy, th, q[0], q[1]]), jnp.stack([vx, vy, w, zero, zero]), params)
    return _state(heights, mech, jnp.zeros((2,), bool), None, wind_idx + step, torque_idx + step, 0)


def state_from_bodies(
    params: EnvParams,
    *,
    terrain_heights: Any,
    origin: Any,
    angle: Any,
    velocity: Any,
    angular_velocity: Any,
    leg_contact: Any = (False, False),
    prev_shaping: Any = None,
    time: int = 0,
    wind_idx: Any = 0,
    torque_idx: Any = 0,
    joint_impulses: Any = None,
) -> EnvState:
    """A state from the three bodies' poses and velocities (hull, legs[0], legs[1]).

    ``origin`` ``[3, 2]`` and ``angle`` ``[3]`` are body origins and angles; only the hull's origin
    and the three angles are used (the legs hang from the hull's origin by construction).
    ``velocity`` ``[3, 2]`` (centres of mass) and ``angular_velocity`` ``[3]`` are turned into the
    reduced velocity with the same generalized momentum (exact for velocities that satisfy the
    joints). ``joint_impulses [2, 4]`` are the joints' warm-start impulses (pin x, pin y, limit,
    motor; None: legs hanging in flight, see :func:`physics.flight_impulses`); contact impulses
    and sleep counters start at zero; ``prev_shaping=None`` uses this state's own shaping;
    ``wind_idx``/``torque_idx`` are the next wind and turbulence indices.
    """
    origin = jnp.asarray(origin, jnp.float32)
    angle = jnp.asarray(angle, jnp.float32)
    velocity = jnp.asarray(velocity, jnp.float32)
    angular_velocity = jnp.asarray(angular_velocity, jnp.float32)
    th = angle[0]
    com = origin[0] + C.LANDER_COM_Y * jnp.stack([-jnp.sin(th), jnp.cos(th)])
    q = angle[1:] - th - jnp.asarray(C.LEG_REFERENCE_ANGLE, jnp.float32)
    position = jnp.concatenate([com, th[None], q])
    u = K.project_velocities(K.pose(position), velocity.T, angular_velocity)
    mech = _mechanism(position, u, params, joint_impulses)
    return _state(terrain_heights, mech, leg_contact, prev_shaping, wind_idx, torque_idx, time)


def body_poses(state: EnvState) -> dict[str, jax.Array]:
    """World origin ``[3, 2]``, angle ``[3]``, centre-of-mass velocity ``[3, 2]`` and angular
    velocity ``[3]`` of hull, legs[0] (the +x-side leg) and legs[1]."""
    p = K.pose(state.mech.position)
    vel, ang = K.body_velocities(p, state.mech.velocity)
    return {
        "origin": jnp.concatenate([p.origin[:, None], p.leg_com], 1).T,
        "angle": jnp.concatenate([state.mech.position[2:3], p.leg_angle]),
        "velocity": vel.T,
        "angular_velocity": ang,
    }


def terrain_heights(state: EnvState) -> jax.Array:
    """``[11]`` smoothed terrain heights at ``x = 2 i``."""
    return state.heights


def engine_flags(state: EnvState) -> dict[str, jax.Array]:
    """Engine throttles of the last step: ``main_power``, ``side_power``, ``side_direction``."""
    return {
        "main_power": state.main_power,
        "side_power": state.side_power,
        "side_direction": state.side_direction,
    }


# --- the gymnax environment -------------------------------------------------------------------


class LunarLander(environment.Environment[EnvState, EnvParams]):
    """Gymnasium's LunarLander-v3 (``continuous=False``) or LunarLanderContinuous-v3."""

    def __init__(self, continuous: bool = False):
        super().__init__()
        self.continuous = bool(continuous)
        self.obs_shape = (8,)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def make_params(self, **overrides: Any) -> EnvParams:
        """Default params with ``overrides`` applied, each validated (see :func:`make_params`)."""
        return make_params(**overrides)

    @property
    def name(self) -> str:
        return "LunarLanderContinuous-v3" if self.continuous else "LunarLander-v3"

    @property
    def num_actions(self) -> int:
        """4 discrete actions, or the 2 dimensions of a continuous action."""
        return 2 if self.continuous else 4

    def action_space(self, params: EnvParams | None = None):
        if self.continuous:
            return spaces.Box(-1.0, 1.0, (2,), jnp.float32)
        return spaces.Discrete(4)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(jnp.asarray(OBS_LOW), jnp.asarray(OBS_HIGH), (8,), jnp.float32)

    def check_action(self, action: Any) -> None:
        """Raise ``ValueError`` for an action outside the action space.

        Shapes are always checked (they are static, also inside ``jit``/``vmap``); the values of a
        discrete action only when they are concrete. Traced discrete actions outside ``{0..3}``
        are clipped into it.
        """
        shape = np.shape(action)
        allowed = "float actions of shape (2,)" if self.continuous else "an integer action in {0, 1, 2, 3}"
        if shape != ((2,) if self.continuous else ()):
            raise ValueError(f"action shape {shape} is not allowed; {self.name} takes {allowed}")
        if self.continuous or isinstance(action, jax.core.Tracer):
            return
        value = np.asarray(action)
        whole = value.dtype.kind == "f" and float(value) == round(float(value))
        integral = value.dtype.kind in "iub" or whole
        if not integral:
            raise ValueError(f"action={action!r} is not allowed; {self.name} takes {allowed}")
        if not 0 <= int(value) <= 3:
            raise ValueError(f"action={int(value)} is not allowed; {self.name} takes {allowed}")

    def step(self, key, state, action, params=None):
        """gymnax's step (auto-reset) after checking the action (see :meth:`check_action`)."""
        self.check_action(action)
        return super().step(key, state, action, params)

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):
        self.check_action(action)
        dispersion = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) / C.SCALE
        return transition(state, action, dispersion, params)

    def reset_env(self, key: jax.Array, params: EnvParams):
        state = reset_state(key, params)
        return observation(state), state

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None):
        return observation(state)
