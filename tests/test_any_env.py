"""The learner contract on every environment: finite ones (exact metrics), gymnax's CartPole and the
LunarLander port (returns only), through ``jaxq.sweep`` and the command line; and the defects a new
user hit (each test names the one it guards against)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.cli import main
from jaxq.envs import make_params
from jaxq.learners import LEARNERS, learners_for, make_learner
from jaxq.learners.episodes import EpisodeStats, evaluate
from jaxq.sweep import sweep

FA_LEARNERS = [name for name, spec in LEARNERS.items() if not spec.finite_only]
# small settings for learners whose defaults do not fit a few hundred steps
SMALL = {"dqn": {"learning_starts": 32, "batch_size": 32, "buffer_size": 512, "widths": (16,), "train_freq": 2}}
SMALL_FLAGS = {"dqn": ["--learning-starts", "32", "--batch-size", "32", "--buffer-size", "512", "--widths", "16",
                       "--train-freq", "2"]}
TABULAR = [name for name, spec in LEARNERS.items() if spec.finite_only]
RETURN_LOGS = {"train_return", "train_length", "episodes", "terminations", "eval_return", "eval_length"}


# -- episodes and evaluation ---------------------------------------------------------------------
def test_episode_stats_equal_a_direct_count():
    rewards = np.array([1.0, 2.0, 0.5, 0.0, 3.0, 1.0, 1.0])
    terminated = np.array([0, 1, 0, 0, 0, 1, 0], bool)
    truncated = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    stats = EpisodeStats.zeros()
    for r, te, tr in zip(rewards, terminated, truncated):
        stats = stats.record(jnp.float32(r), jnp.bool_(te), jnp.bool_(tr))
    logs = stats.logs()
    # episodes: [1, 2] -> 3 (2 steps), [0.5, 0, (trunc)] -> 0.5 (2 steps), [3, 1] -> 4 (2 steps)
    assert int(logs["episodes"]) == 3 and int(logs["terminations"]) == 2
    assert float(logs["train_return"]) == pytest.approx((3 + 0.5 + 4) / 3)
    assert float(logs["train_length"]) == pytest.approx(2.0)
    nxt = stats.next_interval().record(jnp.float32(2.0), jnp.bool_(True), jnp.bool_(False)).logs()
    # the episode running across the log point: 1 step before it, 1 after, return 1 + 2
    assert int(nxt["episodes"]) == 1 and float(nxt["train_return"]) == 3.0 and float(nxt["train_length"]) == 2.0
    assert np.isnan(float(stats.next_interval().logs()["train_return"]))  # nothing ended yet


def test_evaluation_plays_whole_episodes_to_termination_or_time_limit():
    env, params = jaxq.make("Chain", depth=3, max_steps_in_episode=20)
    forward = evaluate(env, params, lambda obs, s: jnp.array([0.0, 1.0]), jax.random.PRNGKey(0), 4)
    assert float(forward["eval_return"]) == 1.0 and float(forward["eval_length"]) == 3.0
    back = evaluate(env, params, lambda obs, s: jnp.array([1.0, 0.0]), jax.random.PRNGKey(0), 4)
    assert float(back["eval_return"]) == 0.0 and float(back["eval_length"]) == 20.0  # truncated
    # epsilon = 1: uniform actions, so some of 64 episodes run out of time and others finish
    noisy = evaluate(env, params, lambda obs, s: jnp.array([0.0, 1.0]), jax.random.PRNGKey(0), 64, 1.0)
    assert 0.0 < float(noisy["eval_return"]) < 1.0


# -- every function-approximation learner on every kind of environment -------------------------
@pytest.fixture(scope="module")
def cartpole_runs():
    env, params = jaxq.make("CartPole-v1")
    runs = {}
    for name in FA_LEARNERS:
        learner = make_learner(name, env, params, steps=300, log_every=50, eval_every=150, eval_episodes=3,
                               **SMALL.get(name, {}))
        runs[name] = (learner, sweep(learner, {"gamma": [0.9, 0.99]}, seeds=3, seed=1))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", FA_LEARNERS)
def test_fa_learners_run_on_cartpole_with_returns_and_evaluations_only(cartpole_runs, name):
    learner, result = cartpole_runs[name]
    assert set(result.logs) - {"loss", "q_mean", "epsilon"} == RETURN_LOGS  # no exact metrics on a non-finite env
    assert result.logs["eval_return"].shape == (2, 3, 7)
    evaluated = np.isfinite(result.logs["eval_return"][0, 0])
    np.testing.assert_array_equal(evaluated, [True, False, False, True, False, False, True])
    assert np.all(result.logs["eval_return"][..., evaluated] >= 8)  # CartPole: at least 8 steps of +1
    assert np.all(result.logs["episodes"][..., 1:].sum(-1) > 300 / 500)
    ended = result.logs["train_return"][np.isfinite(result.logs["train_return"])]
    assert ended.size and np.all(ended >= 8)
    # independent seeds explore differently
    assert len({result.logs["train_return"][0, s].tobytes() for s in range(3)}) == 3


def test_evaluation_does_not_disturb_training(cartpole_runs):
    learner, result = cartpole_runs["mlp"]
    env, params = jaxq.make("CartPole-v1")
    quiet = make_learner("mlp", env, params, steps=300, log_every=50, eval_every=0)
    other = sweep(quiet, {"gamma": [0.9, 0.99]}, seeds=3, seed=1)
    assert "eval_return" not in other.logs
    for name in ("train_return", "train_length", "episodes"):
        np.testing.assert_array_equal(other.logs[name], result.logs[name])


def test_fa_learners_on_chain_keep_exact_metrics():
    env, params = jaxq.make("Chain", depth=4)
    for name in FA_LEARNERS:
        learner = make_learner(name, env, params, steps=200, log_every=100, **SMALL.get(name, {}))
        result = sweep(learner, {"gamma": [0.9]}, seeds=2)
        assert {"error", "bias", "policy_value"} <= set(result.logs)
        assert "eval_return" not in result.logs  # the exact policy value replaces sampled evaluation
        assert np.all(np.isfinite(result.logs["error"]))


def test_mlp_refuses_an_observation_that_is_not_a_vector():
    env, params = jaxq.make("Breakout-MinAtar")
    with pytest.raises(ValueError, match=r"learner 'mlp' reads a flat observation vector; .* shape \(10, 10, 4\)"):
        make_learner("mlp", env, params, steps=10, log_every=10)


def test_exact_metrics_are_refused_on_a_non_finite_env():
    env, params = jaxq.make("CartPole-v1")
    with pytest.raises(ValueError, match="exact_metrics=True is not allowed on CartPole-v1"):
        make_learner("mlp", env, params, steps=10, log_every=10, exact_metrics=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", FA_LEARNERS)
def test_fa_learners_on_lunar_lander_through_the_cli_sweep_gravity_and_wind(name, tmp_path, capsys):
    """Defects 2 and 3: LunarLander's params were all traced (static iteration counts too), and no
    learner ran on a non-finite environment."""
    out = tmp_path / name
    argv = ["sweep", "LunarLander-v3", "--learner", name, "--gravity", "-10", "-5", "--wind-power", "0", "15",
            "--env-option", "enable_wind=true", "--seeds", "2", "--steps", "200", "--log-every", "100",
            "--eval-every", "0", "--out", str(out)] + SMALL_FLAGS.get(name, [])  # evaluation: on CartPole
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["axes"] == ["gravity", "wind_power", "seed", "t"]
    assert summary["config"]["learner"]["env_static"]["velocity_iterations"] == 180
    curves = np.load(out / "curves.npz")
    assert curves["episodes"].shape == (2, 2, 2, 3)
    returns = curves["train_return"]  # the same seeds under another gravity, or another wind, fly differently
    assert not np.allclose(returns[0], returns[1], equal_nan=True)
    assert not np.allclose(returns[:, 0], returns[:, 1], equal_nan=True)
    assert "eval_return" not in curves and "training return" in capsys.readouterr().out
    assert (out / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", FA_LEARNERS)
def test_fa_learners_through_the_cli_on_cartpole_and_branching(name, tmp_path):
    """Defect 1: `jaxq sweep branching --learner mlp|linear` crashed on a tabular-only option."""
    for env in ("CartPole-v1", "branching"):
        out = tmp_path / env
        argv = ["sweep", env, "--learner", name, "--seeds", "2", "--steps", "100", "--out", str(out)]
        assert main(argv + SMALL_FLAGS.get(name, [])) == 0
        assert (out / "summary.json").exists()


# -- refusals and validation -----------------------------------------------------------------------
@pytest.mark.parametrize("env_name", ["CartPole-v1", "LunarLander-v3"])
@pytest.mark.parametrize("name", TABULAR)
def test_tabular_learners_are_refused_naming_the_env_and_its_learners(env_name, name):
    """Defect 4: the message printed the env object and no alternative."""
    env, params = jaxq.make(env_name)
    with pytest.raises(ValueError) as error:
        make_learner(name, env, params, steps=10, log_every=10)
    message = str(error.value)
    assert f"learner={name!r} needs a finite environment" in message and env_name in message
    assert f"Learners for {env_name}: {', '.join(learners_for(env))}" in message
    assert "object at 0x" not in message


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_learners_run_on_every_finite_env(name):
    for env_name in ("Chain", "Branching", "GridWorld"):
        env, params = jaxq.make(env_name)
        result = sweep(make_learner(name, env, params, steps=40, log_every=20), {}, seeds=2)
        assert np.all(np.isfinite(result.logs["error"]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "LunarLander-v3", "--learner", "q"], "learner='q' needs a finite environment with a tabular "
         "model; LunarLander-v3 is not one. Learners for LunarLander-v3: linear, mlp, dqn"),
        (["sweep", "chain", "--depth", "0"], "depth=0 is not allowed"),  # defect 5: it said max_depth=0
        (["sweep", "LunarLander-v3", "--gravity", "-20"], "gravity=-20.0 is not allowed"),
        (["sweep", "LunarLander-v3", "--velocity-iterations", "3", "4"],
         "--velocity-iterations sets a static parameter of LunarLander-v3"),
        (["sweep", "chain", "--learner", "mlp", "--step-size", "constant"],
         "--step-size is not an option of learner 'mlp'"),
        (["sweep", "chian"], "env='chian' is not a known environment (did you mean 'Chain'?)"),
        (["sweep", "chain", "--learner", "mpl"], "learner='mpl' is not allowed (did you mean 'mlp'?)"),
        (["sweep", "LunarLanderContinuous-v3"], "has a Box action space"),
    ],
)
def test_command_line_errors_name_what_was_typed(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_learners_options_and_sweepable_names(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "LunarLander-v3", "--learner", "mlp", "--help"])
    out = capsys.readouterr().out
    for flag in ("--width", "--activation", "--target-network", "--eval-every", "--gravity", "--wind-power",
                 "--alpha", "--epsilon"):
        assert flag in out
    assert "--step-size" not in out and "--velocity-iterations" not in out


def test_a_static_env_field_is_refused_as_an_axis_before_compiling(monkeypatch):
    env, params = jaxq.make("LunarLander-v3")
    learner = make_learner("linear", env, params, steps=10, log_every=10)
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match="'velocity_iterations' is a static parameter of LunarLander-v3"):
        sweep(learner, {"velocity_iterations": [60, 180]})
    with pytest.raises(ValueError, match="wind_power=25.0 is not allowed"):
        sweep(learner, {"wind_power": [5.0, 25.0]})


@pytest.mark.parametrize("env_name, good, bad, message", [
    ("Chain", {"depth": 3}, {"depth": 0}, "depth=0 is not allowed"),
    ("LunarLander-v3", {"gravity": -3.0}, {"turbulence_power": 3.0}, "turbulence_power=3.0 is not allowed"),
    ("CartPole-v1", {"gravity": 5.0}, {"max_steps_in_episode": 0}, "max_steps_in_episode=0 is not allowed"),
    ("CartPole-v1", {"length": 0.7}, {"masscart": "heavy"}, "masscart='heavy' is not numeric"),
])
def test_every_env_validates_its_params_through_one_function(env_name, good, bad, message):
    """Defect 6: LunarLander had no make_params method, so swept values were never checked."""
    env, _ = jaxq.make(env_name)
    params = make_params(env, **good)
    assert all(getattr(params, k) == v for k, v in good.items())
    with pytest.raises(ValueError, match=message):
        make_params(env, **bad)
    with pytest.raises(ValueError, match="no option|not a LunarLander parameter"):
        make_params(env, colour=1)
