"""The pieces of the LunarLander parity harness that need no Box2D: stored learned pilots, on-ground
statistics, where paired runs part, contact events and the exact velocity solve in flight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq.envs.lunar_lander import constants as C
from jaxq.envs.lunar_lander import flight, impulses, physics
from jaxq.envs.lunar_lander import kinematics as K
from jaxq.envs.lunar_lander.parity import compare, ground, pilots

PILOTS = pilots.available()


def test_pilots_are_stored():
    assert {"dqn_100k", "dqn_200k"} <= set(PILOTS), PILOTS


@pytest.mark.parametrize("name", PILOTS)
def test_pilot_forward_pass_equals_the_stored_network(name):
    """NumPy and JAX forward passes reproduce the training library's own outputs and greedy
    actions on the check set stored with the weights."""
    pilot = pilots.load(name)
    assert pilot.weights[0].shape[0] == 8 and pilot.weights[-1].shape[1] == 4
    scale = np.abs(pilot.check_scores).max()
    np.testing.assert_allclose(pilots.scores_numpy(pilot, pilot.check_obs), pilot.check_scores,
                               atol=1e-5 * scale)
    np.testing.assert_array_equal(pilots.act_numpy(pilot, pilot.check_obs), pilot.check_actions)
    jax_scores = np.asarray(pilots.scores_jax(pilot.params, pilot.activation, pilot.check_obs))
    np.testing.assert_allclose(jax_scores, pilot.check_scores, atol=1e-5 * scale)
    np.testing.assert_array_equal(np.asarray(pilots.act_jax(pilot.params, pilot.activation,
                                                            pilot.check_obs)), pilot.check_actions)
    # The other activation gives other scores: the stored one is the one that was trained.
    other = "tanh" if pilot.activation == "relu" else "relu"
    wrong = np.asarray(pilots.scores_jax(pilot.params, other, pilot.check_obs))
    assert np.abs(wrong - pilot.check_scores).max() > 1e-3 * scale


def test_unknown_pilot_and_activation_fail_clearly():
    with pytest.raises(ValueError, match="pilot='nope'.*dqn_200k"):
        pilots.load("nope")
    with pytest.raises(ValueError, match="activation='gelu'"):
        pilots.scores_jax((), "gelu", np.zeros(8))


def _trajectory():
    """Two hand-made episodes. Episode 0 (5 steps, lands): flight, right leg alone, both legs
    (sliding at 0.5 m/s, right engine firing: the hull tilts to -0.1), both legs (left engine,
    tilt +0.2), both. Episode 1 (3 steps, leaves the screen): both legs at rest, then flight."""
    obs = np.zeros((5, 2, 8), np.float32)
    nxt = np.zeros((5, 2, 8), np.float32)
    side = np.zeros((5, 2))
    alive = np.zeros((5, 2), bool)
    alive[:, 0] = True
    alive[:3, 1] = True
    obs[1, 0, 6] = 1.0
    obs[2:, 0, 6:] = 1.0
    obs[2, 0, 2] = 0.1  # v_x = 0.5 m/s
    side[2, 0], nxt[2, 0, 4] = 1.0, -0.1
    side[3, 0], nxt[3, 0, 4] = -1.0, 0.2
    obs[0, 1, 6:] = 1.0
    return obs, nxt, side, alive, np.array(["sleep", "out"])


def test_ground_statistics_on_a_hand_made_trajectory():
    stats = ground.ground_statistics(*_trajectory())
    assert stats["both_legs"] == pytest.approx(4 / 8)
    assert stats["one_leg"] == pytest.approx(1 / 8)
    assert stats["right_leg_alone"] == pytest.approx(1 / 8) and stats["left_leg_alone"] == 0.0
    assert stats["landed_speed"] == pytest.approx(0.5 / 4)
    assert stats["tilt_right_engine"] == pytest.approx(-0.1)
    assert stats["tilt_left_engine"] == pytest.approx(0.2)
    assert stats["crash_after_landing"] == pytest.approx(0.5)  # episode 1 left after landing
    assert stats["out"] == pytest.approx(0.5)
    assert stats["ground_steps"] == pytest.approx((4 + 1) / 2)
    assert stats["counts"]["right_engine_on_ground"] == 1
    assert stats["counts"]["both_legs_episodes"] == 2 and stats["counts"]["left_engine_on_ground_episodes"] == 1


def test_pad_lays_out_episode_records():
    obs = [np.arange(4 * 8, dtype=np.float32).reshape(4, 8), np.ones((2, 8), np.float32)]
    actions = [np.array([3, 1, 0]), np.array([2])]
    laid = ground.pad(obs, actions, continuous=False)
    assert laid["obs"].shape == (3, 2, 8)
    np.testing.assert_array_equal(laid["alive"], [[True, True], [True, False], [True, False]])
    np.testing.assert_array_equal(laid["next_obs"][:, 0], obs[0][1:])
    np.testing.assert_array_equal(laid["side"][:, 0], [1.0, -1.0, 0.0])
    cont = ground.side_directions(np.array([[0.0, 0.6], [1.0, -0.9], [0.0, 0.4]]), continuous=True)
    np.testing.assert_array_equal(cont, [1.0, -1.0, 0.0])


def test_compare_ground_judges_relative_differences():
    box = {k: 1.0 for k in ground.GROUND_KEYS}
    port = dict(box, both_legs=1.19, one_leg=0.75)
    rows = ground.compare_ground(port, box)
    assert rows["both_legs"]["pass"] and not rows["one_leg"]["pass"]
    assert rows["one_leg"]["relative_difference"] == pytest.approx(0.25)
    # Near zero, an absolute floor decides; no such steps on either side is not applicable.
    box = dict(box, tilt_right_engine=0.002, tilt_left_engine=float("nan"), out=0.01)
    port = dict(box, tilt_right_engine=-0.004, tilt_left_engine=float("nan"), out=0.02)
    rows = ground.compare_ground(port, box)
    assert rows["tilt_right_engine"]["pass"] and rows["tilt_left_engine"]["pass"]
    assert not rows["out"]["pass"]


def test_a_mean_over_few_episodes_is_reported_but_not_judged():
    box = {k: 1.0 for k in ground.GROUND_KEYS}
    port = dict(box, tilt_left_engine=-0.33, landed_speed=2.0)
    enough = {f"{s}_episodes": ground.MIN_EPISODES for s in ground.CONDITIONED_ON.values()}
    few = dict(enough, left_engine_on_ground_episodes=ground.MIN_EPISODES - 1)
    rows = ground.compare_ground({**port, "counts": enough}, {**box, "counts": few})
    assert rows["tilt_left_engine"]["few"] and rows["tilt_left_engine"]["pass"]
    assert compare._pair({"ground": rows}, "tilt_left_engine", "+.3f") == "-0.330 / +1.000 (few)"  # still reported
    assert compare.ground_judged(rows) == "8/9 within 20 % (1 on fewer than 20 episodes a side, not judged)"
    assert not rows["landed_speed"]["few"] and not rows["landed_speed"]["pass"]  # enough episodes: judged
    rows = ground.compare_ground({**port, "counts": enough}, {**box, "counts": enough})
    assert not rows["tilt_left_engine"]["few"] and not rows["tilt_left_engine"]["pass"]
    # a share over all steps or episodes is judged whatever the counts
    rows = ground.compare_ground(dict(port, out=0.5, counts=few), dict(box, out=0.1, counts=few))
    assert not rows["out"]["few"] and not rows["out"]["pass"]


def test_parting_finds_the_first_step_that_differs():
    steps, n = 6, 3
    a = np.zeros((steps, n, 8), np.float32)
    b = a.copy()
    alive = np.ones((steps, n), bool)
    b[3, 0, 1] = 0.02  # state differs after step 4, in flight
    b[1, 1, 7] = 1.0  # a contact flag differs after step 2 (a leg touches: on the ground)
    b[4, 2, 0] = 0.005  # within tolerance: together to the end
    out = ground.parting(a, alive, b, alive)
    np.testing.assert_array_equal(out["steps"], [4, 2, 0])
    assert out["parted"] == pytest.approx(2 / 3)
    assert out["median_parting_step"] == 3.0
    assert out["parted_on_ground"] == pytest.approx(0.5)


def test_touchdown_compares_the_step_after_the_first_contact():
    steps, n = 5, 5
    a = np.zeros((steps, n, 8), np.float32)
    a[:, :, 3] = -1.5 + 0.1 * np.arange(steps)[:, None]  # v_y entry: +0.1 a step in the port
    b = a.copy()
    alive = np.ones((steps, n), bool)
    a[1:, :, 6] = b[1:, :, 6] = 1.0  # every episode touches down after step 2 on both sides ...
    b[2, 0, 3] += 0.5  # ... and Box2D's hull answers +0.6 in episode 0, +0.1 elsewhere
    b[1:, 1, 6] = 0.0
    b[2:, 1, 7] = 1.0  # episode 1: Box2D touches down a step later: not compared
    b_alive = alive.copy()
    b_alive[2:, 2] = False  # episode 2: Box2D's run ends with the touchdown step: not compared
    b_alive[3:, 3] = False  # episode 3: it ends with the next step (the hull stopped dead) ...
    b[2, 3, 3] = 0.0  # ... whose velocity is the crash's, not the legs': not compared
    out = ground.touchdown(a, alive, b, b_alive)
    assert out["touchdown_episodes"] == 2
    assert out["touchdown_dvy_port"] == pytest.approx(0.1)
    assert out["touchdown_dvy_box2d"] == pytest.approx((0.6 + 0.1) / 2)
    none = ground.touchdown(a[:, 1:2], alive[:, 1:2], b[:, 1:2], alive[:, 1:2])
    assert none["touchdown_episodes"] == 0 and np.isnan(none["touchdown_dvy_port"])


def test_contact_events_follow_the_listener():
    """A leg sliding from edge 4 onto edge 5 gets a begin (edge 5) and then, when it leaves edge 4,
    an end: its flag drops while it still touches edge 5, as Box2D's listener does."""
    none = -np.ones((2, 3), np.float32)

    def events(before, touched, reached=none):
        begin, end, after = physics.contact_events(jnp.asarray(before, jnp.float32),
                                                   jnp.asarray(touched, jnp.float32),
                                                   jnp.asarray(reached, jnp.float32))
        return np.asarray(begin).tolist(), np.asarray(end).tolist(), np.asarray(after)

    empty = -np.ones((2, 5), np.float32)
    begin, end, after = events(empty, [[4, -1], [-1, -1]])
    assert begin == [True, False] and end == [False, False]
    begin, end, after = events(after, [[4, 5], [-1, -1]])  # now straddling x = 10
    assert begin == [True, False] and end == [False, False]
    begin, end, after = events(after, [[5, -1], [-1, -1]])  # off edge 4
    assert begin == [False, False] and end == [True, False]
    begin, end, after = events(after, [[5, -1], [-1, -1]])  # resting on edge 5: nothing happens
    assert begin == [False, False] and end == [False, False]
    begin, end, _ = events(after, [[-1, -1], [-1, -1]], [[-1, -1, -1], [3, -1, -1]])
    assert begin == [False, True] and end == [True, False]  # lift-off; the other leg hits edge 3
    flag = np.array([True, False])
    flag = (flag | np.array(begin)) & ~np.array(end)
    assert flag.tolist() == [False, True]


def test_flight_solve_is_what_the_sweeps_converge_to():
    """Off the ground the exact two-row solve (:mod:`flight`) gives the velocities the sequential
    impulses converge to, and the joint impulses the engine's 180 sweeps leave (the motor/limit
    split keeps moving at a limit, so 180 sweeps, not convergence, decide it)."""
    rng = np.random.default_rng(0)
    b = 6
    position = np.zeros((5, b), np.float32)
    position[:2] = rng.uniform(5, 10, (2, b))
    position[2] = rng.uniform(-0.5, 0.5, b)
    position[3] = np.where(np.arange(b) < 3, 0.3995, rng.uniform(0.45, 0.8, b))  # at limit / swinging
    position[4] = -np.where(np.arange(b) % 2 == 0, 0.3995, rng.uniform(0.45, 0.8, b))
    u = jnp.asarray(rng.normal(0, [[1.0], [1.0], [0.5], [0.3], [0.3]], (5, b)), jnp.float32)
    position = jnp.asarray(position)
    p = K.pose(position)
    minv = physics.solve_arrow_inverse(K.mass_matrix(p))
    hull_impulse = jnp.asarray(rng.normal(0, [[1.0], [1.0], [0.2]], (3, b)), jnp.float32)
    g = -0.2
    u_star = (u + K.matvec(minv[:, :3], hull_impulse)).at[1].add(g)
    fold = K.expand(flight.FOLD_SIGN, position, 1) * position[3:]
    u_exact, lam = flight.solve_rows(minv, u_star, fold, jnp.float32(0.8))
    ra = p.origin - p.com
    joints = tuple(impulses.joint_constants(ra[0], ra[1], p.origin[0] - p.leg_com[0, k],
                                            p.origin[1] - p.leg_com[1, k], position[3 + k], k)
                   for k in range(2))
    warm = jnp.asarray(np.tile([[0.0, 0.0, 0.3, -0.3], [0.0, 0.0, -0.3, 0.3]], (b, 1, 1)).transpose(1, 2, 0),
                       jnp.float32)
    vel, ang = K.body_velocities(p, u)
    hull = (vel[0, 0] + hull_impulse[0] / C.LANDER_MASS, vel[1, 0] + hull_impulse[1] / C.LANDER_MASS + g,
            ang[0] + hull_impulse[2] / C.LANDER_INERTIA)
    legs = [(vel[0, k + 1], vel[1, k + 1] + g, ang[k + 1]) for k in range(2)]
    point = impulses.Point(*(jnp.zeros(b),) * 6)
    off = jnp.zeros(b, bool)
    none = impulses.Manifold(point, point, off, off, off, *(jnp.ones(b),) * 3, (jnp.ones(b),) * 3)
    sweeps = lambda n: impulses.solve((hull, *legs), joints, (none, none),  # noqa: E731
                                      impulses.Impulses(warm, jnp.zeros((4, 2, b))), 0.14, 0.8, n)
    bodies, _ = sweeps(2000)
    swept = K.project_velocities(p, jnp.stack([jnp.stack([x[0], x[1]]) for x in bodies], 1),
                                 jnp.stack([x[2] for x in bodies]))
    np.testing.assert_allclose(np.asarray(u_exact), np.asarray(swept), atol=2e-4)
    bodies_180, acc = sweeps(180)
    mine = flight.engine_impulses(p, u, u_exact, lam, joints, warm, g, 180, jnp.float32(0.8))
    np.testing.assert_allclose(np.asarray(mine), np.asarray(acc.joints), atol=3e-3)
    # one lane alone (0-d arrays) is solved as it is in the batch, to float32 rounding
    lane = jax.tree.map(lambda x: x[..., 3], ((hull, *legs), joints, (none, none), impulses.Impulses(
        warm, jnp.zeros((4, 2, b)))))
    alone_bodies, alone = impulses.solve(*lane, 0.14, 0.8, 180)
    np.testing.assert_allclose(np.asarray(alone.joints), np.asarray(acc.joints[..., 3]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(alone_bodies), np.asarray(bodies_180)[..., 3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nan", [float("nan"), "nan", None])  # in memory; as summary.json stores it
def test_an_on_ground_statistic_never_seen_reads_as_a_dash(nan):
    row = {"ground": {"never": {"port": nan, "box2d": nan, "pass": True},
                      "one_side": {"port": nan, "box2d": -0.046, "pass": False}}}
    assert compare._pair(row, "never", "+.3f") == "--"
    assert compare._pair(row, "one_side", "+.3f") == "-- / -0.046 ✗"
