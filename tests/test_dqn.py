"""DQN: independent agents, targets that bootstrap through time limits but not through terminations,
n-step returns, target updates on their own period, Double DQN as a swept leaf, learning on
CartPole, policies that leave JAX, and every bad argument refused before compiling."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import jaxq
from jaxq import training
from jaxq.cli import main
from jaxq.learners import make_learner
from jaxq.learners.dqn import Transition
from jaxq.learners.networks import QNetwork
from jaxq.sweep import sweep

SMALL = dict(learning_starts=64, batch_size=32, buffer_size=1024, widths=(16,), train_freq=2, eval_every=0)


def encoded(learner, **overrides):
    return {k: jnp.asarray(learner.encode(k, v)) for k, v in {**learner.defaults(), **overrides}.items()}


# -- an environment that makes bootstrapping through a time limit visible -------------------------
@struct.dataclass
class TickState(environment.EnvState):
    pass


class Ticker(environment.Environment):
    """One action, reward 1 every step; after 5 steps the episode is truncated (``limit="truncate"``,
    a gymnax time limit) or terminates (``limit="terminate"``). The observation is the step count / 5
    (``observe="time"``) or the one-hot phase ``t mod 5`` (``observe="phase"``: the final state of a
    truncated episode is then a visited one, the start).

    With gamma = 0.9 and phases observed, the exact values are ``Q* = 1 / (1 - gamma) = 10`` in every
    state when the limit truncates, and ``Q*(s_t) = (1 - gamma^(5 - t)) / (1 - gamma)`` (4.0951 at the
    start, 1 at the last step) when it terminates."""

    def __init__(self, limit: str, observe: str = "time"):
        super().__init__()
        self.limit, self.observe = limit, observe

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=5)

    def step_env(self, key, state, action, params):
        state = TickState(time=state.time + 1)
        terminated = jnp.logical_and(self.limit == "terminate", state.time >= 5)
        return self.get_obs(state), state, jnp.float32(1.0), terminated, {}

    def is_truncated(self, state, params):
        return jnp.logical_and(self.limit == "truncate", state.time >= params.max_steps_in_episode)

    def reset_env(self, key, params):
        state = TickState(time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        if self.observe == "phase":
            return jax.nn.one_hot(state.time % 5, 5, dtype=jnp.float32)
        return jnp.array([state.time / 5.0], jnp.float32)

    @property
    def num_actions(self):
        return 1

    def action_space(self, params=None):
        return spaces.Discrete(1)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (5 if self.observe == "phase" else 1,), jnp.float32)


def test_a_truncated_step_is_stored_with_its_true_final_observation():
    env = Ticker("truncate")
    learner = make_learner("dqn", env, env.default_params, steps=8, log_every=8, **{**SMALL, "train_freq": 1})
    hp = encoded(learner)
    carry = learner.init(jax.random.PRNGKey(0), hp)
    items = []
    for _ in range(6):
        carry, (item, episode, last) = learner.collect(carry, hp)
        items.append((item, episode, last))
    item, episode, last = items[4]  # the 5th step hits the time limit
    assert bool(item.truncated[0]) and not bool(item.terminated[0]) and bool(last[0])
    assert float(item.next_obs[0, 0]) == 1.0  # the final observation, not the reset one
    assert float(carry.obs[0, 0]) == pytest.approx(0.2) and int(items[5][1][0]) == int(episode[0]) + 1  # next episode


@pytest.mark.parametrize("limit, q_star", [("truncate", [10.0] * 5), ("terminate", [4.0951, 3.439, 2.71, 1.9, 1.0])])
def test_values_bootstrap_through_time_limits_and_not_through_terminations(limit, q_star):
    env = Ticker(limit, observe="phase")
    learner = make_learner("dqn", env, env.default_params, steps=3000, log_every=3000, learning_starts=64,
                           batch_size=64, buffer_size=512, widths=(), train_freq=1, gradient_steps=2,
                           eval_every=0, hparam_defaults={"gamma": 0.9, "lr": 3e-2, "target_period": 50})
    result = sweep(learner, {}, seeds=2)
    q = jax.vmap(lambda p: jax.vmap(lambda o: learner.q_values(p, o)[0])(jnp.eye(5)))(result.finals)
    np.testing.assert_allclose(np.asarray(q), np.broadcast_to(q_star, (2, 5)), rtol=0.03)


# -- targets ---------------------------------------------------------------------------------------
def linear_learner(**options):
    """DQN with a linear Q-network (no hidden layer) on CartPole, whose values a test can set."""
    env, params = jaxq.make("CartPole-v1")
    return make_learner("dqn", env, params, **{"steps": 8, "log_every": 8, **SMALL, "widths": (), **options})


def test_double_is_a_leaf_that_switches_the_selecting_network():
    learner = linear_learner()
    obs = jnp.ones((1, 4))
    online = {"params": {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.array([0.0, 1.0])}}}
    target = {"params": {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.array([5.0, 2.0])}}}
    batch = (obs, jnp.array([0]), jnp.array([1.0]), jnp.array([0.5]), obs)
    errors = {}
    for double in (0.0, 1.0):
        hp = encoded(learner, double=double)
        _, (error, _) = learner.loss_fn(online, target, batch, jnp.ones(1), hp, jnp.float32(0.0),
                                        jnp.zeros(2, jnp.uint32))
        errors[double] = float(error[0])
    # Q_online(s, 0) = 0. DQN: y = 1 + 0.5 max_a Q_target = 3.5; Double: y = 1 + 0.5 Q_target(s, argmax Q_online = 1) = 2
    assert errors == {0.0: 3.5, 1.0: 2.0}


def test_each_item_of_a_batch_draws_its_own_exploring_successor():
    """SARSA with epsilon = 1 bootstraps from a uniformly random next action: over 64 copies of one
    transition both next actions appear (one draw shared by the whole batch gave 64 equal targets)."""
    learner = linear_learner(target="sarsa")
    params = {"params": {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.array([0.0, 1.0])}}}
    obs = jnp.ones((64, 4))
    batch = (obs, jnp.zeros(64, jnp.int32), jnp.zeros(64), jnp.ones(64), obs)
    _, (error, _) = learner.loss_fn(params, params, batch, jnp.ones(64), encoded(learner), jnp.float32(1.0),
                                    jnp.asarray([1, 2], jnp.uint32))
    assert set(np.unique(np.asarray(error)).tolist()) == {0.0, 1.0}  # y = Q(s', a') with a' in {0, 1}


def test_train_refuses_bad_final_episodes_and_threshold_before_running(monkeypatch):
    learner = linear_learner()
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match="final_episodes=0 is not allowed"):
        training.train(learner, final_episodes=0)
    with pytest.raises(ValueError, match="threshold=nan is not allowed"):
        training.train(learner, threshold=float("nan"))


def test_double_on_and_off_run_in_one_sweep():
    env, params = jaxq.make("CartPole-v1")
    learner = make_learner("dqn", env, params, steps=400, log_every=200, **SMALL)
    result = sweep(learner, {"double": [0, 1]}, seeds=2)
    final = jax.tree.leaves(result.finals)[0]  # [double, seed, ...]
    assert not np.allclose(final[0], final[1])  # same seeds, different targets -> different networks


def test_hard_and_polyak_target_updates_follow_their_own_period():
    learner = linear_learner()
    hp = encoded(learner)
    carry = learner.init(jax.random.PRNGKey(1), hp)
    online = jax.tree.map(lambda x: x + 1.0, carry.params)
    carry = carry.replace(params=online)
    # hard copy (tau = 1) when a multiple of the period lies in the interval, exactly
    hard = encoded(learner, tau=1.0, target_period=10)
    chex.assert_trees_all_equal(learner.follow(carry, hard, jnp.int32(6), jnp.int32(12)), online)
    chex.assert_trees_all_equal(learner.follow(carry, hard, jnp.int32(12), jnp.int32(18)), carry.target_params)
    # Polyak: k crossings are k updates with the online network fixed (optax weights online by tau)
    soft = encoded(learner, tau=0.3, target_period=2)
    expected = carry.target_params
    for _ in range(3):
        expected = optax.incremental_update(online, expected, 0.3)
    chex.assert_trees_all_close(learner.follow(carry, soft, jnp.int32(0), jnp.int32(6)), expected, rtol=1e-6)


def test_target_updates_do_not_depend_on_rounds_dividing_the_period():
    """Rounds of 3 envs x 2 steps = 6 env steps against a period of 10: over 60 steps exactly 6
    updates fire (CleanRL #322 updated only on training steps)."""
    learner = linear_learner(num_envs=3, steps=6, log_every=6)
    hp = encoded(learner, tau=0.5, target_period=10)
    carry = learner.init(jax.random.PRNGKey(1), hp)
    carry = carry.replace(params=jax.tree.map(lambda x: x + 1.0, carry.params))
    target = carry.target_params
    for r in range(10):
        target = learner.follow(carry.replace(target_params=target), hp, jnp.int32(6 * r), jnp.int32(6 * r + 6))
    gap = jax.tree.map(lambda a, b: a - b, carry.params, target)
    chex.assert_trees_all_close(gap, jax.tree.map(lambda x: jnp.full_like(x, 0.5**6), gap), rtol=1e-5)


def test_n_step_returns_equal_a_direct_computation():
    gamma, n, envs = 0.9, 3, 2
    learner = linear_learner(n_steps=n, num_envs=envs, buffer_size=16, batch_size=4, learning_starts=4)
    # 7 vector steps of 2 envs, written step-major: env 0 terminates at step 2, env 1 is truncated at step 4
    rewards = np.arange(14, dtype=np.float32).reshape(7, 2)
    terminated = np.zeros((7, 2), bool)
    truncated = np.zeros((7, 2), bool)
    terminated[2, 0], truncated[4, 1] = True, True
    next_obs = np.arange(14 * 4, dtype=np.float32).reshape(7, 2, 4)
    items = Transition(obs=jnp.asarray(next_obs - 100), action=jnp.zeros((7, 2), jnp.int32),
                       reward=jnp.asarray(rewards), terminated=jnp.asarray(terminated),
                       truncated=jnp.asarray(truncated), next_obs=jnp.asarray(next_obs))
    flat = jax.tree.map(lambda x: x.reshape(14, *x.shape[2:]), items)
    state = learner.buffer.init(jax.tree.map(lambda x: x[0], flat))
    state = learner.buffer.add(state, flat, jnp.zeros(14, jnp.int32), jnp.zeros(14, bool))
    indices = jnp.arange(14)
    _, _, G, D, boot = learner.n_step_batch(state, indices, learner.buffer.read(state, indices), jnp.float32(gamma))
    for i in range(14):
        step, env = divmod(i, envs)
        g, d, b = 0.0, 1.0, None
        for k in range(n):
            s = step + k
            if s >= 7:
                break  # not written yet: the return stops at the newest transition
            g += d * rewards[s, env]
            d *= gamma * (1.0 - terminated[s, env])
            b = next_obs[s, env]
            if terminated[s, env] or truncated[s, env]:
                break
        assert float(G[i]) == pytest.approx(g, rel=1e-6), i
        assert float(D[i]) == pytest.approx(d, rel=1e-6, abs=1e-7), i
        np.testing.assert_array_equal(np.asarray(boot[i]), b)


# -- many agents in one call -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cartpole():
    env, params = jaxq.make("CartPole-v1")
    learner = make_learner("dqn", env, params, steps=800, log_every=400, **{**SMALL, "eval_every": 800,
                                                                            "eval_episodes": 2})
    return learner, sweep(learner, {"lr": [1e-3]}, seeds=3, seed=5)


def test_lanes_are_independent_agents(cartpole):
    _, result = cartpole
    kernels = jax.tree.leaves(result.finals)[0][0]  # [seeds, ...]
    assert len({kernels[s].tobytes() for s in range(3)}) == 3
    assert len({result.logs["train_return"][0, s].tobytes() for s in range(3)}) == 3


def test_a_lane_equals_a_single_run_with_its_key(cartpole):
    learner, result = cartpole
    hp = encoded(learner, lr=1e-3)
    key = jax.random.fold_in(jax.random.PRNGKey(5), 1)
    carry = jax.jit(learner.init)(key, hp)
    carry, logs = jax.jit(learner.run, static_argnums=3)(carry, hp, 1, learner.num_logs)
    np.testing.assert_allclose(result.logs["loss"][0, 1, 1:], np.asarray(logs["loss"]), rtol=1e-5)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0, 1], result.finals), carry.params, rtol=1e-5, atol=1e-6)


def test_the_compiled_loop_holds_no_copy_of_the_buffer():
    """One batched write per round: XLA updates the donated buffer in place (several single-row writes
    and a sample in one iteration made it copy the whole buffer every iteration)."""
    env, params = jaxq.make("CartPole-v1")
    capacity = 3072
    learner = make_learner("dqn", env, params, steps=64, log_every=32, **{**SMALL, "buffer_size": capacity,
                                                                          "n_steps": 3})
    hp = jax.tree.map(lambda x: jnp.stack([x] * 2), encoded(learner))
    carry = jax.jit(jax.vmap(learner.init))(jax.random.split(jax.random.PRNGKey(0), 2), hp)
    run = jax.jit(jax.vmap(lambda c, h: learner.run(c, h, 1, 2)), donate_argnums=0)
    assert buffer_copies(run.lower(carry, hp).compile().as_text(), capacity) == []

    def keeps_old(buf, x):  # the control: reading the old buffer after writing forces a copy
        return buf.at[0].set(x), buf[1:3]
    control = jax.jit(keeps_old, donate_argnums=0).lower(jnp.zeros((capacity, 4)), jnp.ones(4)).compile()
    assert buffer_copies(control.as_text(), capacity)


def buffer_copies(hlo: str, capacity: int) -> list[str]:
    """The HLO instructions that copy an array with a ``capacity``-long axis."""
    found = []
    for line in hlo.splitlines():
        match = re.search(r"=\s*(\S+\[[^\]]*\]\S*)\s+copy(-start)?\(", line)
        if match and re.search(rf"[\[,]{capacity}[,\]]", match.group(1)):
            found.append(line.strip())
    return found


def test_short_training_improves_the_greedy_return_on_cartpole():
    env, params = jaxq.make("CartPole-v1")
    learner = make_learner("dqn", env, params, steps=6000, log_every=3000, learning_starts=500, batch_size=64,
                           buffer_size=6000, widths=(64, 64), train_freq=4, gradient_steps=2, eval_every=3000,
                           eval_episodes=5, hparam_defaults={"lr": 2e-3, "target_period": 200,
                                                             "epsilon_fraction": 0.3})
    result = sweep(learner, {}, seeds=4)
    start, end = result.logs["eval_return"][:, 0].mean(), result.logs["eval_return"][:, -1].mean()
    assert end > max(3 * start, 100), (start, end)


# -- the command line and its policies ------------------------------------------------------------
def test_train_writes_summary_curves_figure_and_policies_that_fly_in_gymnasium(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "dqn", "CartPole-v1", "--seeds", "2", "--steps", "1000", "--double", "0", "1",
            "--widths", "16", "--train-freq", "2", "--gradient-steps", "1", "--learning-starts", "64",
            "--eval-every", "500", "--eval-episodes", "2", "--final-episodes", "3", "--out", str(out)]
    assert main(argv) == 0
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["axes"] == ["double", "seed", "t"] and summary["threshold"] == 475.0
    for row in summary["grid"]:
        assert row["final_greedy_return"]["n"] == 2 and 0.0 <= row["solved_fraction"] <= 1.0
        assert len(row["steps_to_threshold"]["per_seed"]) == 2
    assert "final greedy return" in capsys.readouterr().out
    curves = np.load(out / "curves.npz")
    assert curves["final_return"].shape == (2, 2) and (out / "sweep.png").stat().st_size > 10_000

    policy = jaxq.load_policy(out, lane=3)
    assert policy.point == {"double": 1, "seed": 1}
    gym = pytest.importorskip("gymnasium")
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        action = policy(obs)
        assert action in (0, 1)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    # the NumPy policy computes the flax network's values
    network = QNetwork((16,), 2, "relu")
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_allclose(policy.q_values(obs), jax.vmap(lambda o: network.apply(policy.params, o))(obs),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lane=4 is not allowed; .* holds lanes 0 .. 3"):
        jaxq.load_policy(out, lane=4)
    with pytest.raises(ValueError, match="holds no policies"):
        jaxq.load_policy(tmp_path)


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"batch_size": 64, "buffer_size": 32}, "batch_size=64 is not allowed; it must be <= buffer_size=32"),
    ({"learning_starts": 10, "batch_size": 32}, "learning_starts=10 is not allowed"),
    ({"n_steps": 0}, "n_steps=0 is not allowed"),
    ({"widths": (0,)}, "widths=0 is not allowed"),
    ({"train_freq": 3}, "log_every=8 is not a multiple of train_freq x num_envs = 3"),
    ({"network": __import__("flax").linen.Dense(3)}, r"network returns shape \(3,\)"),
    ({"hparam_defaults": {"lr": 0.0}}, "lr=0.0 is not allowed"),
    ({"replay": "prioritized"}, "replay='prioritized' is not allowed"),
])
def test_bad_options_are_refused_before_compiling(options, message, monkeypatch):
    env, params = jaxq.make("CartPole-v1")
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=message):
        make_learner("dqn", env, params, steps=8, log_every=8, **{**SMALL, **options})


@pytest.mark.parametrize("axes, message", [
    ({"lr": [1e-3, -1.0]}, "lr=-1.0 is not allowed"),
    ({"gamma": [1.0]}, "gamma=1.0 is not allowed"),
    ({"tau": [0.0]}, "tau=0.0 is not allowed"),
    ({"tau": [1.5]}, "tau=1.5 is not allowed"),
    ({"target_period": [0.5]}, "target_period=0.5 is not allowed"),
    ({"double": [2]}, "double=2 is not allowed"),
])
def test_bad_hyperparameters_are_refused_before_compiling(axes, message, monkeypatch):
    learner = linear_learner()
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=message):
        sweep(learner, axes)


@pytest.mark.parametrize("argv, message", [
    (["train", "dqn", "CartPol-v1"], "env='CartPol-v1' is not a known environment (did you mean 'CartPole-v1'?)"),
    (["train", "dqn", "LunarLanderContinuous-v3"], "has a Box action space"),
    (["train", "dqm", "CartPole-v1"], "algorithm='dqm' is not allowed (did you mean 'dqn'?)"),
    (["train", "dqn", "CartPole-v1", "--widths", "64,x"], "widths='64,x' is not allowed"),
    (["train", "dqn", "CartPole-v1", "--replay", "per-rank", "--replay-options", "rerank_every=0"],
     "rerank_every=0 is not allowed"),
    (["train", "dqn", "CartPole-v1", "--replay", "per-rank", "--replay-options", "rerank=5"],
     "'rerank' is not an option of replay 'per-rank'; allowed: weights, rerank_every"),
    (["train", "dqn", "CartPole-v1", "--replay-options", "5"], "--replay-options '5' is not KEY=VALUE"),
])
def test_train_command_errors_name_what_was_typed(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exit for a value its type rejects
        code = stop.code
    assert code == 2
    assert message in capsys.readouterr().err
