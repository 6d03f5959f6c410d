"""Drive Gymnasium's real LunarLander (Box2D) as the reference for the JAX port.

Used by the parity tests and by the parity study; ``gymnasium[box2d]`` is an optional dependency,
so import this module only after checking that gymnasium and Box2D are installed.

What it offers:

* **State injection.** :func:`settled_env` resets an environment and steps the no-op action until
  both legs rest at their joint limits. :func:`rigid_bodies` turns a lander pose and velocity into
  the state of all three bodies moving as one (legs keep their current pose relative to the hull),
  and :func:`inject` writes those bodies and a terrain into the Box2D world.
  :func:`peek_dispersion` reads the two dispersion numbers that the next step will draw, so the port
  can be stepped with the very same ones.
* **Drops** onto a flat pad (:func:`drop_bodies`, :func:`run_drop`) for the landing envelope.
* **Episodes** of a policy (:func:`run_episodes`): returns, lengths and how each episode ended,
  optionally every observation and action. Policies are Gymnasium's heuristic, uniform random
  actions, the no-op, or a learned pilot stored with the harness (:mod:`.pilots`).

Body order everywhere is (lander, legs[0], legs[1]); legs[0] is the leg on the lander's +x side.
Positions are body origins, velocities are centre-of-mass velocities, as Box2D reports them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any, Callable, Iterator, Sequence

import Box2D
import gymnasium as gym
import numpy as np
from Box2D import b2EdgeShape
from gymnasium.envs.box2d import lunar_lander as gym_lunar

from jaxq.envs.lunar_lander.parity import pilots

WORLD_W = 20.0  # viewport width in metres
WORLD_H = 400.0 / 30.0  # viewport height in metres
CHUNKS = 11
CHUNK_X = np.linspace(0.0, WORLD_W, CHUNKS)
PAD_SURFACE_Y = 0.99 * WORLD_H / 4  # smoothed height of the helipad edges
TERRAIN_FRICTION = 0.1
MAX_EPISODE_STEPS = 1000
OUTCOMES = ("sleep", "crash", "out", "truncated")
POLICIES = ("heuristic", "random", "noop")
HULL_COM_Y = 0.101307  # the hull's centre of mass above its body origin (hull frame)
LEG_HALF_W, LEG_HALF_H = 2.0 / 30.0, 8.0 / 30.0  # leg box half extents


@dataclasses.dataclass(frozen=True)
class Bodies:
    """Kinematic state of the three bodies, in the order (lander, legs[0], legs[1]).

    Attributes:
        origin: ``[3, 2]`` world position of each body origin.
        angle: ``[3]`` body angles.
        velocity: ``[3, 2]`` linear velocity of each body's centre of mass.
        angular_velocity: ``[3]``.
    """

    origin: np.ndarray
    angle: np.ndarray
    velocity: np.ndarray
    angular_velocity: np.ndarray

    def as_kwargs(self) -> dict[str, np.ndarray]:
        """The fields as float32 keyword arguments (the port's ``state_from_bodies`` takes these)."""
        return {f.name: np.asarray(getattr(self, f.name), np.float32)
                for f in dataclasses.fields(self)}


def versions() -> dict[str, str]:
    """Versions of the reference: Gymnasium and pybox2d."""
    return {"gymnasium": gym.__version__, "box2d": Box2D.__version__}


def make_env(continuous: bool = False, time_limit: bool = True) -> gym.Env:
    """A fresh ``LunarLander-v3`` (wind off), with or without the 1000-step time limit wrapper."""
    env = gym.make("LunarLander-v3", continuous=continuous)
    return env if time_limit else env.unwrapped


def _bodies_of(env: gym.Env) -> list[Any]:
    u = env.unwrapped
    return [u.lander, *u.legs]


def read_bodies(env: gym.Env) -> Bodies:
    """The current kinematic state of the lander and both legs."""
    bodies = _bodies_of(env)
    return Bodies(
        origin=np.array([tuple(b.position) for b in bodies], np.float64),
        angle=np.array([b.angle for b in bodies], np.float64),
        velocity=np.array([tuple(b.linearVelocity) for b in bodies], np.float64),
        angular_velocity=np.array([b.angularVelocity for b in bodies], np.float64),
    )


def read_terrain(env: gym.Env) -> np.ndarray:
    """``[11]`` terrain heights at x = 0, 2, ..., 20 as stored in Box2D's edge shapes (float32)."""
    shapes = [f.shape.vertices for f in env.unwrapped.moon.fixtures]
    edges = [(p, q) for p, q in shapes if abs(q[0] - p[0]) < WORLD_W]  # not the bottom edge
    heights = np.full(CHUNKS, np.nan)
    for (x0, y0), (x1, y1) in edges:
        heights[int(round(x0 / 2))] = y0
        heights[int(round(x1 / 2))] = y1
    if np.isnan(heights).any():
        raise RuntimeError("could not read all 11 terrain heights from the Box2D world")
    return heights.astype(np.float32)


def set_terrain(env: gym.Env, heights: Sequence[float]) -> None:
    """Replace the terrain by the ten edges through ``(2 i, heights[i])`` (plus the bottom edge).

    Creating fixtures also makes Box2D look for new contact pairs at the start of the next step, so
    bodies teleported onto the ground get their contacts in that step (as in a continuous episode).
    """
    u = env.unwrapped
    y = np.asarray(heights, np.float64)
    if y.shape != (CHUNKS,):
        raise ValueError(f"terrain heights must have shape ({CHUNKS},), got {y.shape}")
    u.world.DestroyBody(u.moon)
    u.moon = u.world.CreateStaticBody(shapes=b2EdgeShape(vertices=[(0.0, 0.0), (WORLD_W, 0.0)]))
    points = list(zip(CHUNK_X.tolist(), y.tolist()))
    for p, q in zip(points[:-1], points[1:]):
        u.moon.CreateEdgeFixture(vertices=[p, q], density=0.0, friction=TERRAIN_FRICTION)
    u.sky_polys = [[p, q, (q[0], WORLD_H), (p[0], WORLD_H)] for p, q in zip(points[:-1], points[1:])]


def joint_angles(env: gym.Env) -> np.ndarray:
    """``[2]`` joint angles q of legs[0] (limits [0.4, 0.9]) and legs[1] (limits [-0.9, -0.4])."""
    return np.array([leg.joint.angle for leg in env.unwrapped.legs])


def joint_impulses(env: gym.Env) -> np.ndarray:
    """``[2, 4]`` the joints' accumulated impulses of the last step (pin x, pin y, limit, motor),
    which warm-start the next one: the port's ``state_from_bodies(joint_impulses=...)``."""
    rows = []
    for leg in env.unwrapped.legs:
        j = leg.joint
        force = j.GetReactionForce(1.0)
        rows.append([force[0], force[1], j.GetReactionTorque(1.0), j.GetMotorTorque(1.0)])
    return np.array(rows, np.float32)


def settled_env(seed: int = 0, continuous: bool = False, steps: int = 30) -> gym.Env:
    """An unwrapped env after ``reset(seed)`` and ``steps`` no-op steps: both legs at their limits.

    Raises:
        RuntimeError: if the legs have not reached their extended limits (|q| within 0.01 of 0.4)
            or the episode ended on the way.
    """
    env = make_env(continuous, time_limit=False)
    env.reset(seed=seed)
    noop = np.zeros(2) if continuous else 0
    for _ in range(steps):
        _, _, terminated, _, _ = env.step(noop)
        if terminated:
            raise RuntimeError(f"seed {seed}: episode ended during the {steps} settling steps")
    q = np.abs(joint_angles(env))
    if np.any(np.abs(q - 0.4) > 0.01):
        raise RuntimeError(f"seed {seed}: legs not at their limits after {steps} steps (|q| = {q})")
    return env


def _rot(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def rigid_bodies(reference: Bodies, origin: Sequence[float], angle: float,
                 velocity: Sequence[float], angular_velocity: float) -> Bodies:
    """All three bodies for a lander pose and motion, with the legs rigidly attached.

    Args:
        reference: bodies whose legs' pose relative to the hull is kept (e.g. ``read_bodies`` of a
            :func:`settled_env`, legs at their limits).
        origin: lander body origin (x, y); angle: lander angle.
        velocity: lander centre-of-mass velocity; angular_velocity: shared by all three bodies.
    """
    # Each leg's origin (its centre of mass) and angle in the hull's frame.
    rel_pos = (reference.origin[1:] - reference.origin[0]) @ _rot(reference.angle[0])
    rel_angle = reference.angle[1:] - reference.angle[0]
    p = np.asarray(origin, np.float64)
    r = _rot(angle)
    origins = np.vstack([p, p + rel_pos @ r.T])
    lever = origins - (p + r @ np.array([0.0, HULL_COM_Y]))  # hull COM -> each body's COM
    lever[0] = 0.0
    velocities = np.asarray(velocity, np.float64) + angular_velocity * np.stack(
        [-lever[:, 1], lever[:, 0]], axis=1)
    return Bodies(origin=origins, angle=np.concatenate([[angle], angle + rel_angle]),
                  velocity=velocities, angular_velocity=np.full(3, float(angular_velocity)))


def observe(env: gym.Env) -> np.ndarray:
    """The 8-vector observation of the current world state (what ``step`` would report)."""
    u = env.unwrapped
    p, v = u.lander.position, u.lander.linearVelocity
    obs = [(p.x - WORLD_W / 2) / (WORLD_W / 2),
           (p.y - (WORLD_H / 4 + 18 / 30)) / (WORLD_H / 2),
           v.x * (WORLD_W / 2) / 50,
           v.y * (WORLD_H / 2) / 50,
           u.lander.angle,
           20.0 * u.lander.angularVelocity / 50,
           float(u.legs[0].ground_contact),
           float(u.legs[1].ground_contact)]
    return np.array(obs, np.float32)


def shaping(obs: np.ndarray) -> float:
    """The potential whose differences make the step reward (spec §7)."""
    o = np.asarray(obs, np.float64)
    return float(-100 * np.hypot(o[0], o[1]) - 100 * np.hypot(o[2], o[3]) - 100 * abs(o[4])
                 + 10 * o[6] + 10 * o[7])


def inject(env: gym.Env, bodies: Bodies, terrain: Sequence[float] | None = None,
           leg_contact: tuple[bool, bool] = (False, False)) -> np.ndarray:
    """Put the world into a given state and return its observation.

    The terrain is rebuilt (the current one when ``terrain`` is None) so that contacts of the new
    poses are found in the next step; game over is cleared, the legs' contact flags are set to
    ``leg_contact`` and ``prev_shaping`` to the shaping of the injected state, so the next reward is
    the change of shaping from here. Joint warm-start impulses are whatever Box2D accumulated before.
    """
    u = env.unwrapped
    set_terrain(env, read_terrain(env) if terrain is None else terrain)
    for body, o, a, v, w in zip(_bodies_of(env), bodies.origin, bodies.angle, bodies.velocity,
                                bodies.angular_velocity):
        body.transform = (tuple(map(float, o)), float(a))
        body.linearVelocity = tuple(map(float, v))
        body.angularVelocity = float(w)
        body.awake = True
    for leg, flag in zip(u.legs, leg_contact):
        leg.ground_contact = bool(flag)
    u.game_over = False
    obs = observe(env)
    u.prev_shaping = shaping(obs)
    return obs


def peek_dispersion(env: gym.Env, steps: int | None = None) -> np.ndarray:
    """The dispersion numbers (d0, d1) the next step (``[2]``) or the next ``steps`` steps
    (``[steps, 2]``) will draw, without consuming them: each step draws exactly these two."""
    rng = copy.deepcopy(env.unwrapped.np_random)
    draws = rng.uniform(-1.0, 1.0, size=(1 if steps is None else steps, 2)) / 30.0
    return draws[0] if steps is None else draws


@contextlib.contextmanager
def solver_iterations(velocity: int) -> Iterator[None]:
    """Within the block, every Box2D world step runs ``velocity`` velocity iterations (not 180).

    Box2D's sequential-impulse solve has not fully converged after its 180 iterations when a leg
    hits the ground (hull and legs weigh 68:1); a few thousand iterations give the converged
    constraint solution that an exact solver should reproduce.
    """
    step_fn = Box2D.b2World.__dict__["Step"]
    Box2D.b2World.Step = lambda world, dt, _vel, position: step_fn(world, dt, velocity, position)
    try:
        yield
    finally:
        Box2D.b2World.Step = step_fn


def step(env: gym.Env, action: Any) -> tuple[np.ndarray, float, bool]:
    """One step of the unwrapped env: ``(obs, reward, terminated)``."""
    obs, reward, terminated, _, _ = env.unwrapped.step(action)
    return obs, float(reward), bool(terminated)


# --------------------------------------------------------------------------------- landing envelope

def flat_terrain(height: float = PAD_SURFACE_Y) -> np.ndarray:
    """A terrain that is flat at the pad surface everywhere (float32, as Box2D stores it)."""
    return np.full(CHUNKS, height, np.float32)


def drop_bodies(reference: Bodies, speed: float, tilt: float = 0.0, vx: float = 0.0,
                omega: float = 0.0, gap: float = 0.03, x: float = WORLD_W / 2,
                ground: float = PAD_SURFACE_Y) -> Bodies:
    """Bodies for a drop onto flat ground: all three moving rigidly at vertical speed ``-speed``.

    The lander (angle ``tilt``, COM velocity ``(vx, -speed)``, angular velocity ``omega``, legs posed
    as in ``reference``) is placed so that the lowest leg corner is ``gap`` above ``ground``.
    """
    probe = rigid_bodies(reference, (x, 0.0), tilt, (vx, -speed), omega)
    corners = np.array([[sx * LEG_HALF_W, sy * LEG_HALF_H] for sx in (-1, 1) for sy in (-1, 1)])
    lowest = min(float((o + corners @ _rot(a).T)[:, 1].min())
                 for o, a in zip(probe.origin[1:], probe.angle[1:]))
    return dataclasses.replace(probe, origin=probe.origin + np.array([0.0, ground + gap - lowest]))


@dataclasses.dataclass(frozen=True)
class DropResult:
    """How a drop ended: ``outcome`` in OUTCOMES ("truncated" if the steps ran out), after ``steps``."""

    outcome: str
    steps: int


def run_drop(env: gym.Env, bodies: Bodies, ground: float = PAD_SURFACE_Y,
             max_steps: int = 600) -> DropResult:
    """Inject ``bodies`` over flat ground into ``env`` and step the no-op action until it ends.

    Pass a freshly settled env for each drop: Box2D carries the joints' warm-start impulses over.
    """
    inject(env, bodies, terrain=flat_terrain(ground))
    noop = np.zeros(2) if env.unwrapped.continuous else 0
    for t in range(1, max_steps + 1):
        obs, _, terminated = step(env, noop)
        if terminated:
            return DropResult(_outcome(env, obs), t)
    return DropResult("truncated", max_steps)


def _outcome(env: gym.Env, obs: np.ndarray) -> str:
    u = env.unwrapped
    if not u.lander.awake:
        return "sleep"
    if u.game_over:
        return "crash"
    if abs(obs[0]) >= 1.0:
        return "out"
    raise RuntimeError("episode terminated for no known reason")


# ----------------------------------------------------------------------------------------- episodes

@dataclasses.dataclass(frozen=True)
class Episodes:
    """Per-episode results: ``returns`` [N], ``lengths`` [N] (env steps), ``outcomes`` [N] (str);
    with ``record``, ``observations`` (per episode ``[T + 1, 8]``: the reset observation, then one
    per step) and ``actions`` (per episode ``[T]`` or ``[T, 2]``)."""

    returns: np.ndarray
    lengths: np.ndarray
    outcomes: np.ndarray
    observations: tuple = ()
    actions: tuple = ()


def random_actions(seed: int, continuous: bool, steps: int = MAX_EPISODE_STEPS) -> np.ndarray:
    """The uniform random policy's actions for episode ``seed``: ints ``[steps]`` in 0..3, or
    floats ``[steps, 2]`` in [-1, 1] (drawn up front, so the port can replay the same sequence)."""
    rng = np.random.default_rng(seed)
    if continuous:
        return rng.uniform(-1.0, 1.0, size=(steps, 2))
    return rng.integers(4, size=steps)


def make_policy(name: str, continuous: bool, seed: int) -> Callable[[gym.Env, np.ndarray], Any]:
    """``policy(env, obs) -> action`` for "heuristic" (Gymnasium's own), "random", "noop" or the
    name of a stored learned pilot (greedy, discrete actions only)."""
    if name == "heuristic":
        return gym_lunar.heuristic
    if name == "random":
        actions = iter(random_actions(seed, continuous))
        return lambda env, obs: next(actions)
    if name == "noop":
        return (lambda env, obs: np.zeros(2)) if continuous else (lambda env, obs: 0)
    if name in pilots.available():
        if continuous:
            raise ValueError(f"policy={name!r} is a discrete pilot; it cannot fly the continuous env")
        pilot = pilots.load(name)
        return lambda env, obs: int(pilots.act_numpy(pilot, obs))
    choices = ", ".join(POLICIES + pilots.available())
    raise ValueError(f"policy={name!r} is not allowed; choose one of: {choices}")


@dataclasses.dataclass(frozen=True)
class InitialCondition:
    """Everything random about one episode, read from Box2D right after ``reset(seed)``.

    Attributes:
        bodies: the three bodies after the reset step; terrain: ``[11]`` heights.
        obs: the reset observation; prev_shaping: its shaping (the first step's reward baseline;
            None: the shaping of ``bodies``).
        dispersion: ``[steps, 2]`` the (d0, d1) pairs the episode's steps will draw, in order.
        joint_impulses: ``[2, 4]`` the joints' warm-start impulses (None: legs hanging in flight).
    """

    bodies: Bodies
    terrain: np.ndarray
    obs: np.ndarray
    prev_shaping: float | None
    dispersion: np.ndarray
    joint_impulses: np.ndarray | None = None


def initial_condition(seed: int, continuous: bool = False,
                      steps: int = MAX_EPISODE_STEPS) -> InitialCondition:
    """The initial condition of episode ``seed`` (wind off)."""
    env = make_env(continuous, time_limit=False)
    obs, _ = env.reset(seed=seed)
    return InitialCondition(read_bodies(env), read_terrain(env), obs,
                            float(env.unwrapped.prev_shaping), peek_dispersion(env, steps),
                            joint_impulses(env))


def run_episodes(policy: str, seeds: Sequence[int], continuous: bool = False,
                 velocity_iterations: int | None = None,
                 continuous_collision: bool = True, record: bool = False) -> Episodes:
    """Run one episode per seed (``reset(seed=s)``) in ``LunarLander-v3`` with its time limit.

    ``velocity_iterations`` (default: Gymnasium's 180) and ``continuous_collision`` (Box2D's
    time-of-impact handling, on in Gymnasium) make variants of the reference for diagnostics;
    ``record`` keeps every observation and action.
    """
    env = make_env(continuous)
    solver = (solver_iterations(velocity_iterations) if velocity_iterations
              else contextlib.nullcontext())
    returns, lengths, outcomes, observations, actions = [], [], [], [], []
    with solver:
        for seed in seeds:
            act = make_policy(policy, continuous, int(seed))
            obs, _ = env.reset(seed=int(seed))
            env.unwrapped.world.continuousPhysics = continuous_collision
            total, t, terminated, truncated = 0.0, 0, False, False
            seen, done = [obs], []
            while not (terminated or truncated):
                action = act(env, obs)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                t += 1
                if record:
                    seen.append(obs)
                    done.append(action)
            returns.append(total)
            lengths.append(t)
            outcomes.append(_outcome(env, obs) if terminated else "truncated")
            if record:
                observations.append(np.array(seen, np.float32))
                actions.append(np.array(done))
    env.close()
    return Episodes(np.array(returns), np.array(lengths), np.array(outcomes), tuple(observations),
                    tuple(actions))
