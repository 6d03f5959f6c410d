"""LunarLander port: API, bad input, numerical safety, flight physics, landing envelope, rewards.

Everything here runs on the port alone (the comparisons with Box2D live in test_lunar_parity.py).
Compiled functions are shared through module-scope fixtures with fixed shapes.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.envs import env_step
from jaxq.envs import lunar_lander as LL
from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import env as E
from jaxq.envs.lunar_lander import physics
from jaxq.envs.lunar_lander import terrain

PAD_Y = 0.99 * C.HELIPAD_Y  # the pad's surface: the 0.33 smoothing of three pad heights
# Joint angles and warm starts of legs resting on their extended limits, as Box2D leaves them
# after a reset and 30 no-op steps (seed 0; the legs reach their limits six steps before, and
# the motor impulse grows by 0.0965 N m s per step there, up to 0.8): the spec's drops start so.
SETTLED_Q = (0.39558, -0.39977)
SETTLED_IMPULSES = np.array([[0.0, 0.0, 0.579, -0.579], [0.0, 0.0, -0.579, 0.579]], np.float32)


# --- helpers ------------------------------------------------------------------------------------


def flat_heights(y: float = PAD_Y) -> np.ndarray:
    return np.full(11, y, np.float32)


def lander_bodies(x: float, y: float, angle: float, v: tuple[float, float], omega: float = 0.0):
    """Hull origin at ``(x, y)`` with both legs on their extended limits, moving rigidly with
    hull centre-of-mass velocity ``v`` and angular velocity ``omega``."""
    cs, sn = math.cos(angle), math.sin(angle)
    com = np.array([x - sn * C.LANDER_COM_Y, y + cs * C.LANDER_COM_Y])
    origin, angles = [(x, y)], [angle]
    for k, q in enumerate(SETTLED_Q):
        a = angle + q + C.LEG_REFERENCE_ANGLE[k]
        ax, ay = C.LEG_ANCHOR[k]
        origin.append((x - (math.cos(a) * ax - math.sin(a) * ay), y - (math.sin(a) * ax + math.cos(a) * ay)))
        angles.append(a)
    origin = np.array(origin)
    centres = [com, *origin[1:]]
    vel = np.array([[v[0] - omega * (p[1] - com[1]), v[1] + omega * (p[0] - com[0])] for p in centres])
    return dict(origin=origin.astype(np.float32), angle=np.array(angles, np.float32),
                velocity=vel.astype(np.float32), angular_velocity=np.full(3, omega, np.float32))


def lowest_point(bodies, which=(0, 1, 2)) -> float:
    """Lowest core vertex of the bodies ``which`` (0 hull, 1 and 2 the legs) of ``bodies`` (a dict
    with ``origin`` and ``angle``, as :func:`lander_bodies` or ``body_poses`` give)."""
    ys = []
    for b in which:
        local = C.LANDER_POLY if b == 0 else C.LEG_BOX
        a = float(bodies["angle"][b])
        ys += list(bodies["origin"][b, 1] + np.sin(a) * local[:, 0] + np.cos(a) * local[:, 1])
    return min(ys)


def drop(vy: float, angle: float = 0.0, gap: float = 0.03):
    """Bodies above the flat pad at x = 10, the lowest leg corner ``gap`` above it (core to edge,
    as in the spec's Box2D drops), falling at ``vy``."""
    b = lander_bodies(10.0, 10.0, angle, (0.0, -vy))
    shift = PAD_Y + gap - lowest_point(b)
    b["origin"][:, 1] += shift
    return b


def stack_states(params, bodies_list, heights=None):
    heights = flat_heights() if heights is None else heights
    states = [LL.state_from_bodies(params, terrain_heights=heights, joint_impulses=SETTLED_IMPULSES, **b)
              for b in bodies_list]
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


# --- shared compiled functions -------------------------------------------------------------------


@pytest.fixture(scope="module")
def discrete():
    return LL.make_discrete()


@pytest.fixture(scope="module")
def continuous():
    return LL.make_continuous()


N_LANES, N_STEPS = 8, 160  # every batched rollout has this shape, so it compiles once


@pytest.fixture(scope="module")
def trans():
    """``transition`` compiled once per action kind and parameter structure."""
    return jax.jit(E.transition)


@pytest.fixture(scope="module")
def rollout(discrete):
    """``run(cases, actions, params)``: up to ``N_LANES`` states (from body dicts on the flat pad)
    stepped ``N_STEPS`` times with given discrete actions ``[steps, lanes]`` and zero dispersion,
    without auto-reset; a lane freezes once terminated. Returns ``obs, reward, terminated`` with
    one column per case."""
    _, default = discrete

    @jax.jit
    def run(states, actions, params):
        def body(carry, a):
            s, done = carry
            o, s2, r, te, _ = jax.vmap(E.transition, in_axes=(0, 0, None, None))(s, a, jnp.zeros(2), params)
            def keep(new, old):
                return jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new)

            return (jax.tree.map(keep, s2, s), done | te), (o, jnp.where(done, 0.0, r), te & ~done)

        return jax.lax.scan(body, (states, jnp.zeros(N_LANES, bool)), actions)[1]

    def call(cases, actions=None, params=default):
        n = len(cases)
        states = stack_states(params, list(cases) + [cases[0]] * (N_LANES - n))
        acts = np.zeros((N_STEPS, N_LANES), np.int32)
        if actions is not None:
            acts[: actions.shape[0], :n] = actions
        obs, rew, term = run(states, jnp.asarray(acts), params)
        return np.asarray(obs)[:, :n], np.asarray(rew)[:, :n], np.asarray(term)[:, :n]

    return call


def outcome(rew: np.ndarray, term: np.ndarray) -> list[tuple[str, int]]:
    """Per lane: ("land" | "crash" | "none", step count) from the rollout's rewards."""
    out = []
    for lane in range(term.shape[1]):
        steps = np.flatnonzero(term[:, lane])
        if len(steps) == 0:
            out.append(("none", term.shape[0]))
        else:
            t = steps[0]
            out.append(("land" if rew[t, lane] > 0 else "crash", int(t) + 1))
    return out


# --- API ----------------------------------------------------------------------------------------


def test_make_returns_gymnax_envs_with_the_original_spaces():
    env, params = jaxq.make("LunarLander-v3")
    assert isinstance(env, LL.LunarLander) and not env.continuous
    assert env.name == "LunarLander-v3" and env.num_actions == 4
    assert env.action_space(params).n == 4
    assert params.max_steps_in_episode == 1000 and params.gravity == -10.0 and not params.enable_wind
    cenv, _ = jaxq.make("LunarLanderContinuous-v3")
    assert cenv.continuous and cenv.name == "LunarLanderContinuous-v3"
    assert cenv.action_space(params).shape == (2,)
    space = env.observation_space(params)
    assert space.shape == (8,) and float(space.high[4]) == pytest.approx(2 * math.pi)


def test_reset_matches_the_state_after_the_original_reset_step(discrete):
    env, params = discrete
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 256), params)
    obs = np.asarray(obs)
    assert obs.dtype == np.float32 and obs.shape == (256, 8)
    # Affine in the initial force: y_o = 1.41032 + 1.21e-5 Fy, vy_o = 5.3776e-4 Fy - 0.026667, ...
    assert np.all(np.abs(obs[:, 0]) < 0.0081) and np.all(np.abs(obs[:, 2]) < 0.81)
    assert np.all(np.abs(obs[:, 1] - 1.41032) < 0.0122)
    fy = (obs[:, 3] + 0.026667) / 5.3776e-4
    assert np.allclose(obs[:, 1], 1.41032 + 1.2100e-5 * fy, atol=2e-5)
    assert np.allclose(obs[:, 5], -1.8315e-4 * obs[:, 2] / 8.0856e-4, atol=2e-5)
    assert np.all(obs[:, 6:] == 0)
    assert np.allclose(state.prev_shaping, jax.vmap(E.shaping)(jnp.asarray(obs)), atol=1e-4)
    assert np.all(np.asarray(state.time) == 0)
    # Terrain: the pad is flat at 0.99 * H/4 between x = 8 and 12.
    assert np.allclose(np.asarray(state.heights)[:, 4:7], PAD_Y, atol=1e-5)


def test_terrain_smoothing_uses_033_and_wraps_around():
    raw = jnp.arange(12, dtype=jnp.float32)
    y = np.asarray(terrain.smooth_heights(raw))
    h = np.arange(12, dtype=np.float64)
    h[3:8] = C.HELIPAD_Y
    expect = [0.33 * (h[i - 1] + h[i] + h[i + 1]) for i in range(11)]
    assert np.allclose(y, expect, atol=1e-5)
    assert y[0] == pytest.approx(0.33 * (11 + 0 + 1), abs=1e-5)  # h[-1] is h[11]


@pytest.mark.slow
def test_jit_vmap_auto_reset_and_truncation_apart_from_termination(discrete):
    env, _ = discrete
    params = LL.make_params(max_steps_in_episode=75)
    n = 64

    @jax.jit
    def run(key):
        obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)

        def body(s, k):
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (n,), 0, 4)
            keys = jax.random.split(ks, n)
            out = jax.vmap(env_step, in_axes=(None, 0, 0, 0, None))(env, keys, s, a, params)
            times = (out.next_state.time, out.state.time)
            return out.state, (out.obs, out.reward, out.terminated, out.truncated, *times)

        return jax.lax.scan(body, st, jax.random.split(key, 160))[1]

    obs, rew, term, trunc, next_time, time = map(np.asarray, run(jax.random.PRNGKey(1)))
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rew))
    assert trunc.any() and term.any()
    assert not np.any(term & trunc)
    assert np.all(next_time[trunc] == 75) and np.all(next_time[term] <= 75)
    done = term | trunc
    assert np.all(time[done] == 0)  # the continuing state is a fresh episode
    assert np.all(time[~done] == next_time[~done])
    assert set(np.unique(rew[term])) <= {-100.0, 100.0}


@pytest.mark.slow
def test_batched_lanes_match_single_environment_steps(discrete, rollout, trans):
    _, params = discrete
    cases = [lander_bodies(6.0 + i, 9.0, 0.1 * i - 0.3, (0.3 * i - 1.0, -1.0)) for i in range(4)]
    actions = np.tile(np.arange(4, dtype=np.int32), (3, 1))
    obs, _, _ = rollout(cases, actions)
    for lane, bodies in enumerate(cases):
        st = LL.state_from_bodies(params, terrain_heights=flat_heights(), **bodies)
        for t in range(3):
            o, st, *_ = trans(st, jnp.int32(lane), jnp.zeros(2), params)
            assert np.allclose(obs[t, lane], np.asarray(o), atol=1e-5)
    assert len({tuple(np.round(obs[2, i], 5)) for i in range(4)}) == 4


@pytest.mark.slow
def test_single_environment_step_matches_batched_near_a_slope(discrete, rollout, trans):
    """A spinning lander with a leg 0.02 m from a sloped edge (a state taken from Box2D). The
    single-environment path once went wrong here (an XLA:CPU miscompile with a batch of one)."""
    _, params = discrete
    heights = np.array(
        [5.5742745, 5.568472, 4.765917, 3.9842515, 3.3, 3.3, 3.3, 4.2028956, 5.2694635, 4.799316, 4.5864744],
        np.float32,
    )
    bodies = dict(
        origin=np.array([[4.8687844, 5.5639424], [5.5627956, 6.1320925], [4.7857156, 4.67089]], np.float32),
        angle=np.array([1.1045902, 1.4188232, 0.74523085], np.float32),
        velocity=np.array(
            [[-2.1956415, 0.040822066], [-4.9217005, 5.6435623], [4.082422, 0.035764057]], np.float32
        ),
        angular_velocity=np.full(3, 6.6083617, np.float32),
    )
    st = LL.state_from_bodies(params, terrain_heights=heights, **bodies)
    obs, nxt, *_ = trans(st, jnp.int32(0), jnp.zeros(2), params)
    batched = jax.jit(jax.vmap(E.transition, in_axes=(0, None, None, None)))
    pair = jax.tree.map(lambda x: jnp.stack([x, x]), st)
    obs_b, nxt_b, *_ = batched(pair, jnp.int32(0), jnp.zeros(2), params)
    assert np.allclose(np.asarray(obs), np.asarray(obs_b[0]), atol=1e-5)
    assert np.allclose(np.asarray(nxt.mech.position), np.asarray(nxt_b.mech.position[0]), atol=1e-5)
    assert np.asarray(obs)[6:].tolist() == [0.0, 0.0]  # the leg swings away: no contact


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"gravity": -12.0}, ["gravity", "-12"]),
        ({"gravity": 0.0}, ["gravity"]),
        ({"wind_power": 20.5}, ["wind_power", "20.5", "[0, 20]"]),
        ({"wind_power": -1}, ["wind_power"]),
        ({"turbulence_power": 2.5}, ["turbulence_power", "[0, 2]"]),
        ({"velocity_iterations": 0}, ["velocity_iterations", "[1, inf)"]),
        ({"position_iterations": -2}, ["position_iterations"]),
        ({"velocity_iterations": 2.5}, ["velocity_iterations"]),
        ({"max_steps_in_episode": 0}, ["max_steps_in_episode"]),
        ({"enable_wind": "yes"}, ["enable_wind"]),
        ({"leg_motor_torque": 0.0}, ["leg_motor_torque"]),
        ({"wind": 3}, ["wind", "choose from"]),
    ],
)
def test_bad_parameters_fail_before_compiling(kwargs, words):
    with pytest.raises(ValueError) as err:
        jaxq.make("LunarLander-v3", **kwargs)
    for w in words:
        assert w in str(err.value)


def test_bad_actions_fail_clearly(discrete, continuous):
    env, params = discrete
    key = jax.random.PRNGKey(0)
    _, st = env.reset(key, params)
    for bad in (4, -1, 2.5):
        with pytest.raises(ValueError, match=r"\{0, 1, 2, 3\}"):
            env.step(key, st, bad, params)
    with pytest.raises(ValueError, match="shape"):
        env.step(key, st, jnp.array([1, 2]), params)
    cenv, cparams = continuous
    _, cst = cenv.reset(key, cparams)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cenv.step(key, cst, jnp.zeros(3), cparams)
    with pytest.raises(ValueError, match="shape"):
        jax.jit(cenv.step_env)(key, cst, jnp.zeros((2, 2)), cparams)


def test_traced_out_of_range_actions_are_clipped(discrete, trans):
    _, params = discrete
    bodies = lander_bodies(10.0, 9.0, 0.1, (0.5, -1.0))
    st = LL.state_from_bodies(params, terrain_heights=flat_heights(), **bodies)
    d = jnp.array([0.01, -0.02])
    step = lambda a: np.asarray(trans(st, jnp.int32(a), d, params)[0])  # noqa: E731
    assert np.array_equal(step(7), step(3))
    assert np.array_equal(step(-5), step(0))


# --- numerical safety ----------------------------------------------------------------------------


@pytest.mark.slow
def test_no_nan_under_extreme_random_actions_for_1e5_steps(continuous):
    env, _ = continuous
    params = LL.make_params(enable_wind=True, wind_power=20.0, turbulence_power=2.0)
    n, t = 256, 400

    @jax.jit
    def run(key):
        _, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)

        def body(carry, k):
            s, ok = carry
            ka, ks = jax.random.split(k)
            a = 50.0 * jax.random.normal(ka, (n, 2))  # far outside [-1, 1]
            keys = jax.random.split(ks, n)
            o, s2, r, te, tr, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, s, a, params)
            leaves = [o, r] + [x for x in jax.tree.leaves(s2) if jnp.issubdtype(x.dtype, jnp.floating)]
            ok = ok & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
            return (s2, ok), (te | tr).sum()

        (s, ok), ends = jax.lax.scan(body, (st, jnp.ones((), bool)), jax.random.split(key, t))
        return ok, ends.sum()

    ok, episodes = run(jax.random.PRNGKey(7))
    assert bool(ok)
    assert int(episodes) > n  # plenty of resets happened along the way


# --- physics ------------------------------------------------------------------------------------


def composite_step(bodies, impulse, point, gravity=-10.0):
    """One step of hull and extended legs as one rigid body, in float64: the observation entries
    0-5 after a linear impulse ``impulse`` at ``point`` (spec: flight is a single rigid body)."""
    masses = np.array([C.LANDER_MASS, C.LEG_MASS, C.LEG_MASS])
    inertias = np.array([C.LANDER_INERTIA, C.LEG_INERTIA, C.LEG_INERTIA])
    th = float(bodies["angle"][0])
    up = lambda a: np.array([-math.sin(a), math.cos(a)])  # noqa: E731  R(a) (0, 1)
    rot = lambda a: np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # noqa: E731
    com_l = np.asarray(bodies["origin"][0], np.float64) + C.LANDER_COM_Y * up(th)
    centres = np.stack([com_l, *np.asarray(bodies["origin"][1:], np.float64)])
    m = masses.sum()
    c = (masses[:, None] * centres).sum(0) / m
    inertia = (inertias + masses * ((centres - c) ** 2).sum(1)).sum()
    vc = (masses[:, None] * np.asarray(bodies["velocity"], np.float64)).sum(0) / m + impulse / m
    r = np.asarray(point) - c
    w = float(bodies["angular_velocity"][0]) + (r[0] * impulse[1] - r[1] * impulse[0]) / inertia
    vc = vc + np.array([0.0, gravity * C.DT])
    c_new, th_new = c + C.DT * vc, th + C.DT * w
    offset = rot(th_new) @ rot(th).T @ (com_l - c)  # the hull's centre rides along rigidly
    com_new = c_new + offset
    origin = com_new - C.LANDER_COM_Y * up(th_new)
    v_l = vc + w * np.array([-offset[1], offset[0]])
    return np.array([(origin[0] - 10) / 10, (origin[1] - (C.HELIPAD_Y + C.LEG_DOWN)) / (C.H / 2),
                     v_l[0] * 10 / C.FPS, v_l[1] * (C.H / 2) / C.FPS, th_new, 20 * w / C.FPS])


def test_flight_matches_the_composite_rigid_body(discrete, trans):
    _, params = discrete
    rng = np.random.default_rng(0)
    step = lambda s, a, d: trans(s, a, d, params)  # noqa: E731
    for _ in range(6):
        bodies = lander_bodies(rng.uniform(6, 14), rng.uniform(8, 11), rng.uniform(-0.5, 0.5),
                               tuple(rng.uniform(-2, 2, 2)), rng.uniform(-1, 1))
        st = LL.state_from_bodies(params, terrain_heights=flat_heights(), **bodies)
        for action in range(4):
            d = rng.uniform(-1, 1, 2).astype(np.float32) / 30
            impulse, _ = E.engine_impulse(st, jnp.int32(action), jnp.asarray(d), params)
            # The hull impulse (J, L about the hull's centre) as J applied at a point.
            j = np.asarray(impulse[:2], np.float64)
            com_l = np.asarray(st.mech.position[:2], np.float64)
            lever = np.array([j[1], -j[0]]) / max(j @ j, 1e-30)
            point = com_l + float(impulse[2]) * lever
            expect = composite_step(bodies, j, point)
            obs = np.asarray(step(st, jnp.int32(action), d)[0])
            assert np.allclose(obs[:6], expect, atol=2e-4), (action, obs[:6] - expect)


def test_landing_envelope_on_the_pad(rollout):
    cases = [drop(0.6), drop(2.0), drop(2.1)] + [drop(0.5, a) for a in (0.15, -0.15, 0.3, -0.3)]
    obs, rew, term = rollout(cases)
    res = outcome(rew, term)
    kinds = [k for k, _ in res]
    assert kinds == ["land", "land", "crash", "land", "land", "crash", "crash"], res
    assert 30 <= res[0][1] <= 40  # steps to sleep after a 0.6 m/s drop
    # At rest the body origin sits about 0.6286 m above the pad (Box2D: 0.626-0.633 after drops).
    rest_y = obs[res[0][1] - 1, 0, 1] * (C.H / 2) + C.HELIPAD_Y + C.LEG_DOWN
    assert 0.622 < rest_y - PAD_Y < 0.634
    assert obs[res[0][1] - 1, 0, 6:].tolist() == [1.0, 1.0]


def test_contact_flags_lag_one_step(rollout):
    obs, _, _ = rollout([drop(0.2, gap=0.0205)])  # the feet start 0.0205 m above: no contact yet
    flags = obs[:, 0, 6:]
    # Step 1 ends inside the contact distance; the flags appear only after step 2.
    assert flags[0].tolist() == [0.0, 0.0] and flags[1].tolist() == [1.0, 1.0]


def _lowest_leg_points(state) -> np.ndarray:
    """Per leg, the height of its lowest core vertex above the pad, in the pinned pose."""
    poses = {k: np.asarray(v) for k, v in E.body_poses(state).items()}
    return np.array([lowest_point(poses, (k,)) for k in (1, 2)]) - PAD_Y


def test_a_leg_stopped_within_a_step_opens_its_joint_for_one_step(discrete, trans):
    """Feet 0.05 m above the pad at 5 m/s would end the step about 0.05 m inside it. Box2D's
    time-of-impact sub-step stops each leg on its own, reports the contact in that step and lets
    the hull move on (the joint opens); the port keeps the pinned pose and records each leg's
    shortfall ``TOI_DISTANCE - s_end`` along the pad's normal as its joint gap. The next step's
    push-out starts from the pinned pose and closes the gap."""
    _, params = discrete
    state = LL.state_from_bodies(params, terrain_heights=flat_heights(), joint_impulses=SETTLED_IMPULSES,
                                 **drop(5.0, gap=0.05))
    obs, state, *_ = trans(state, 0, jnp.zeros(2), params)
    gap, low = np.asarray(state.mech.gap), _lowest_leg_points(state)
    assert np.asarray(obs[6:]).tolist() == [1.0, 1.0]
    assert np.all(low < -0.04)  # the pinned legs ended inside the pad
    np.testing.assert_allclose(gap[0], 0.0, atol=1e-6)  # straight up, along the flat pad's normal
    np.testing.assert_allclose(gap[1], physics.TOI_DISTANCE - low, atol=2e-4)
    obs, state, *_ = trans(state, 0, jnp.zeros(2), params)
    assert np.all(np.asarray(state.mech.gap) == 0.0) and np.all(_lowest_leg_points(state) > 0.0)
    assert np.asarray(obs[6:]).tolist() == [1.0, 1.0]


@pytest.mark.slow
def test_velocity_iterations_matter_only_on_the_ground(rollout):
    """The original's 180 sweeps have converged in flight but not on the ground: in flight the
    port gives the same states with 1000 sweeps, after touchdown it does not (as Box2D with more
    iterations does not), and the legs then hold the hull differently."""
    cases = [drop(1.2, gap=0.3), drop(0.6, 0.12, gap=0.3), drop(1.8, -0.05, gap=0.3),
             drop(0.5, -0.2, gap=0.3)]
    more = LL.make_params(velocity_iterations=1000)
    obs_a, _, _ = rollout(cases)
    obs_b, _, _ = rollout(cases, params=more)
    assert not obs_a[:5, :, 6:].any()  # the first five steps are in flight
    assert np.max(np.abs(obs_a[:5] - obs_b[:5])) < 1e-5
    assert obs_a[20, :, 6:].all() and np.max(np.abs(obs_a[5:30] - obs_b[5:30])) > 1e-2


# --- rewards ------------------------------------------------------------------------------------


def test_terminal_rewards_replace_the_step_reward():
    r = jnp.array([3.0, 3.0, 3.0, 3.0])
    crashed = jnp.array([False, True, False, True])
    asleep = jnp.array([False, False, True, True])
    assert np.asarray(E.terminal_reward(r, crashed, asleep)).tolist() == [3.0, -100.0, 100.0, 100.0]


def test_step_reward_is_shaping_difference_minus_fuel(continuous, trans):
    _, params = continuous
    bodies = lander_bodies(9.0, 9.0, 0.2, (1.0, -2.0), 0.3)
    st = LL.state_from_bodies(params, terrain_heights=flat_heights(), **bodies)
    for action, fuel in [((0.0, 0.0), 0.0), ((1.0, 0.0), 0.3), ((0.5, -0.8), 0.3 * 0.75 + 0.03 * 0.8)]:
        d = jnp.array([0.02, -0.01])
        obs, nxt, reward, term, info = trans(st, jnp.asarray(action, jnp.float32), d, params)
        assert not bool(term)
        expect = float(E.shaping(obs) - st.prev_shaping) - fuel
        assert float(reward) == pytest.approx(expect, abs=1e-4)
        assert float(nxt.prev_shaping) == pytest.approx(float(E.shaping(obs)), abs=1e-5)
    assert float(info["main_power"]) == pytest.approx(0.75) and float(info["side_direction"]) == -1.0


def test_crash_and_landing_end_with_minus_and_plus_100(rollout):
    _, rew, term = rollout([drop(0.6), drop(3.0)])
    res = outcome(rew, term)
    assert [k for k, _ in res] == ["land", "crash"]
    assert rew[res[0][1] - 1, 0] == 100.0 and rew[res[1][1] - 1, 1] == -100.0


def test_out_of_bounds_terminates(discrete, trans):
    _, params = discrete
    bodies = lander_bodies(19.99, 8.0, 0.0, (2.0, 0.0))
    st = LL.state_from_bodies(params, terrain_heights=flat_heights(1.0), **bodies)
    obs, _, reward, term, _ = trans(st, jnp.int32(0), jnp.zeros(2), params)
    assert float(obs[0]) >= 1.0 and bool(term) and float(reward) == -100.0


# --- wind and contract helpers --------------------------------------------------------------------


def test_wind_pushes_in_flight_and_indices_advance(discrete, trans):
    _, params = discrete
    windy = LL.make_params(enable_wind=True, wind_power=20.0, turbulence_power=2.0)
    bodies = lander_bodies(10.0, 9.0, 0.0, (0.0, 0.0))
    st = LL.state_from_bodies(params, terrain_heights=flat_heights(), wind_idx=1234, torque_idx=-77, **bodies)
    step = lambda s, p: trans(s, jnp.int32(0), jnp.zeros(2), p)  # noqa: E731
    calm_obs, _, _, _, _ = step(st, params)
    obs, nxt, _, _, _ = step(st, windy)
    k = 1234.0
    force = 20.0 * math.tanh(math.sin(0.02 * k) + math.sin(0.01 * math.pi * k))
    mass = C.LANDER_MASS + 2 * C.LEG_MASS
    assert float(obs[2] - calm_obs[2]) == pytest.approx(0.2 * C.DT * force / mass, rel=0.02)
    assert int(nxt.wind_idx) == 1235 and int(nxt.torque_idx) == -76
    landed = st.replace(leg_contact=jnp.array([True, False]))
    _, nxt2, _, _, _ = step(landed, windy)
    assert int(nxt2.wind_idx) == 1234  # no wind while a leg touches


def test_contract_helpers_round_trip(discrete, trans):
    env, params = discrete
    _, st = env.reset(jax.random.PRNGKey(5), params)
    for _ in range(30):
        _, st, *_ = trans(st, jnp.int32(0), jnp.zeros(2), params)
    poses = LL.body_poses(st)
    assert poses["origin"].shape == (3, 2) and poses["velocity"].shape == (3, 2)
    assert poses["angle"].shape == (3,) and poses["angular_velocity"].shape == (3,)
    assert float(poses["origin"][1, 0]) > float(poses["origin"][0, 0])  # legs[0] is on the +x side
    assert LL.terrain_heights(st).shape == (11,)
    heights = LL.terrain_heights(st)
    back = LL.state_from_bodies(params, terrain_heights=heights, leg_contact=st.leg_contact, **poses)
    assert np.allclose(LL.observation(back), LL.observation(st), atol=2e-6)
    assert np.allclose(back.mech.velocity, st.mech.velocity, atol=1e-5)
    o1 = trans(st, jnp.int32(2), jnp.array([0.01, 0.02]), params)
    o2 = trans(back, jnp.int32(2), jnp.array([0.01, 0.02]), params)
    assert np.allclose(o1[0], o2[0], atol=1e-5)
    flags = LL.engine_flags(o1[1])
    assert float(flags["main_power"]) == 1.0 and float(flags["side_power"]) == 0.0


def test_push_out_stops_early_with_the_result_of_every_pass():
    """The position correction's loop ends once every lane is solved; lanes solved early, lanes
    that need many passes and lanes without contact give what running all passes gives."""
    from jaxq.envs.lunar_lander import physics

    rng = np.random.default_rng(0)
    lanes, passes = 16, 60
    a = rng.normal(size=(4, 4, lanes)) * 0.3
    w = np.einsum("ikb,jkb->ijb", a, a) + np.eye(4)[:, :, None]  # symmetric positive definite
    sep = rng.uniform(-0.6, 0.05, size=(4, lanes)).astype(np.float32)
    valid = rng.uniform(size=(4, lanes)) < 0.7
    valid[:, :3] = False  # lanes in flight
    w = w.astype(np.float32)

    def reference(w, sep, valid, passes):
        sep, push, done = sep.copy(), np.zeros_like(sep), np.zeros(lanes, bool)
        for _ in range(passes):
            min_sep = np.full(lanes, np.inf, np.float32)
            for s in range(4):
                min_sep = np.where(valid[s], np.minimum(min_sep, sep[s]), min_sep)
                corr = np.clip(C.BAUMGARTE * (sep[s] + C.LINEAR_SLOP), -C.MAX_LINEAR_CORRECTION, 0.0)
                imp = np.where(valid[s] & ~done, -corr / w[s, s], 0.0).astype(np.float32)
                push[s] += imp
                sep = sep + w[:, s] * imp[None]
            done = done | (min_sep >= -3.0 * C.LINEAR_SLOP)
        return push, done

    push, done = jax.jit(physics._push_out, static_argnums=3)(w, sep, valid, passes)
    want_push, want_done = reference(w, sep, valid, passes)
    assert np.array_equal(np.asarray(done), want_done)
    assert not reference(w, sep, valid, 1)[1].all()  # some lanes need more than one pass
    assert np.allclose(np.asarray(push), want_push, rtol=1e-5, atol=1e-6)
    assert want_done[:3].all() and np.all(np.asarray(push)[:, :3] == 0)


def test_a_step_holds_one_copy_of_each_phase(discrete, monkeypatch):
    """The lanes near the ground rerun only the velocity sweeps: tracing one step traces the
    step's start, the sweeps and its end once each (a second copy of the whole step for the lanes
    near the ground made the program half as large again and slower to compile)."""
    from jaxq.envs.lunar_lander import physics

    env, params = discrete
    calls = dict.fromkeys(("begin_step", "swept_velocities", "finish_step"), 0)
    for name in calls:
        def counted(*args, _phase=getattr(physics, name), _name=name):
            calls[_name] += 1
            return _phase(*args)

        monkeypatch.setattr(physics, name, counted)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    jax.make_jaxpr(partial(env.step, params=params))(jax.random.PRNGKey(1), state, 0)
    assert calls == {"begin_step": 1, "swept_velocities": 1, "finish_step": 1}, calls


@pytest.mark.slow
def test_nested_vmaps_join_their_lanes_and_match_one_flat_batch(discrete):
    """Agents over their environments (a vmap of a vmap) are stepped as one batch of lanes, so the
    full velocity iteration stays conditional; the result equals the flat batch's."""
    env, params = discrete
    agents, envs, steps = 2, 3, 40
    flat = jax.vmap(partial(env_step, env), in_axes=(0, 0, 0, None))
    nested = jax.vmap(flat, in_axes=(0, 0, 0, None))
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), agents * envs), params)
    actions = jax.random.randint(jax.random.PRNGKey(1), (steps, agents * envs), 0, 4)
    keys = jax.random.split(jax.random.PRNGKey(2), (steps, agents * envs))

    def rollout(step, state, actions, keys):
        return jax.lax.scan(lambda s, x: (step(x[1], s, x[0], params).state,) * 2, state, (actions, keys))[1]

    grid = (jax.tree.map(lambda x: x.reshape((agents, envs) + x.shape[1:]), state),
            actions.reshape(steps, agents, envs), keys.reshape((steps, agents, envs) + keys.shape[2:]))
    # the conditional survives the outer vmap (batched with a batched predicate it becomes a select)
    conds = [str(jax.make_jaxpr(partial(rollout, f))(*a)).count(" cond[") for f, a in
             ((flat, (state, actions, keys)), (nested, grid))]
    assert conds[0] >= 1 and conds[1] == conds[0], conds
    want = jax.jit(partial(rollout, flat))(state, actions, keys)
    got = jax.jit(partial(rollout, nested))(*grid)
    for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        assert np.array_equal(np.asarray(w).reshape(np.shape(g)), np.asarray(g))
