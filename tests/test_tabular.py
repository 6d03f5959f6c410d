"""Tabular learners converge to the exact answers they should converge to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq import exact, td
from jaxq.learners import TabularLearner, make_learner
from jaxq.learners.exploration import epsilon_greedy_probs
from jaxq.sweep import sweep


def final_tables(learner, hp, seeds):
    """Run ``seeds`` lanes directly and return their final tables ``[seeds, E, S, A]``."""
    hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in {**learner.defaults(), **hp}.items()}
    keys = jax.random.split(jax.random.PRNGKey(7), seeds)

    @jax.jit
    def run(keys):
        carry = jax.vmap(learner.init, in_axes=(0, None))(keys, hp)
        carry, _ = jax.vmap(lambda c: learner.run(c, hp, 1, learner.num_logs))(carry)
        return carry.q

    return np.asarray(run(keys))


def epsilon_soft_fixed_point(mdp, gamma, epsilon, rounds=200):
    """The Q that on-policy TD with epsilon-greedy behaviour converges to: Q = Q^{eps-greedy(Q)}."""
    q = exact.q_star(mdp, gamma)
    for _ in range(rounds):
        q = exact.policy_evaluation(mdp, epsilon_greedy_probs(q, epsilon), gamma)
    return np.asarray(q)


def test_q_learning_with_inverse_count_converges_on_branching():
    env, params = jaxq.make("Branching")
    learner = make_learner("q", env, params, steps=20_000, log_every=2_000)
    result = sweep(learner, {"gamma": [0.9], "epsilon": [0.3]}, seeds=256)
    error = result.logs["error"][0, 0]  # [seeds, t]
    assert error[:, 0].min() > 0.5  # starts far (Q_0 = 0, Q*(s4, a0) = 1)
    assert error[:, -1].max() < 0.06
    assert error[:, -1].mean() < 0.7 * error[:, 5].mean()  # still shrinking
    v_star = float(exact.v_star(env.tabular(params), 0.9)[0])
    np.testing.assert_allclose(result.logs["policy_value"][0, 0, :, -1], v_star, rtol=1e-5)


def test_q_learning_with_inverse_count_converges_on_gridworld():
    env, params = jaxq.make("GridWorld")
    learner = make_learner("q", env, params, steps=100_000, log_every=10_000)
    result = sweep(learner, {"slip": [0.0, 0.2], "gamma": [0.5], "epsilon": [1.0]}, seeds=128)
    error = result.logs["error"][:, 0, 0]  # [slip, seeds, t]
    assert error[0, :, -1].max() < 0.3 and error[1, :, -1].mean() < 0.4
    assert np.all(error[:, :, -1].mean(-1) < 0.8 * error[:, :, 3].mean(-1))
    values = result.logs["policy_value"][:, 0, 0, :, -1]  # [slip, seeds]
    v0 = [float(exact.v_star(env.tabular(env.make_params(slip=s)), 0.5)[env.start]) for s in (0.0, 0.2)]
    np.testing.assert_allclose(values[0], v0[0], rtol=1e-4)  # every greedy policy is optimal
    assert v0[1] - values[1].mean() < 0.02  # on slippery ice, nearly so on average


def test_double_q_learning_converges_on_branching():
    env, params = jaxq.make("Branching")
    learner = make_learner("double_q", env, params, steps=20_000, log_every=2_000, step_size="constant")
    result = sweep(learner, {"gamma": [0.9], "epsilon": [0.3], "alpha": [0.1]}, seeds=64)
    assert result.logs["error"][..., -1].max() < 1e-2


@pytest.mark.parametrize("variant, n_steps", [("sarsa", 1), ("expected_sarsa", 1), ("sarsa", 3)])
def test_on_policy_targets_converge_to_the_epsilon_soft_fixed_point(variant, n_steps):
    env, params = jaxq.make("Branching", noise=0.1)
    gamma, epsilon = 0.9, 0.3
    learner = make_learner(variant, env, params, steps=30_000, log_every=30_000, step_size="constant",
                           n_steps=n_steps)
    q = final_tables(learner, {"gamma": gamma, "epsilon": epsilon, "alpha": 0.02}, seeds=64)[:, 0]
    target = epsilon_soft_fixed_point(env.tabular(params), gamma, epsilon)
    scored = np.asarray(env.tabular(params).scored)
    np.testing.assert_allclose(q.mean(0)[scored], target[scored], atol=0.02)
    # ... and not to Q*, which is different here.
    assert np.abs(target - np.asarray(exact.q_star(env.tabular(params), gamma)))[scored].max() > 0.1


class _TimeLimitAsTerminal:
    """A control: the same chain, but hitting the time limit *terminates* the episode."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        return obs, state, reward, terminated | (state.time >= params.max_steps_in_episode), info

    def is_truncated(self, state, params):
        return jnp.bool_(False)


@pytest.mark.parametrize("variant, n_steps", [("q", 1), ("sarsa", 3)])
def test_truncated_episodes_bootstrap(variant, n_steps):
    """Chain 'stay', depth 3, time limit 3: most episodes end by truncation, yet each learner reaches
    its exact fixed point (Q* for Q-learning, the epsilon-soft one for n-step SARSA)."""
    env, params = jaxq.make("Chain", depth=3, variant="stay", max_steps_in_episode=3)
    gamma, epsilon = 0.9, 0.5
    hp = {"gamma": gamma, "epsilon": epsilon, "alpha": 0.05}
    mdp = env.tabular(params)
    reference = (np.asarray(exact.q_star(mdp, gamma)) if variant == "q"
                 else epsilon_soft_fixed_point(mdp, gamma, epsilon))[:3]
    options = dict(steps=20_000, log_every=20_000, step_size="constant", n_steps=n_steps)
    learned = final_tables(make_learner(variant, env, params, **options), hp, seeds=32).mean(0)[0, :3]
    np.testing.assert_allclose(learned, reference, atol=0.03)
    # The control that treats the time limit as a terminal state learns something else.
    control = make_learner(variant, env, params, **options)
    control.env = _TimeLimitAsTerminal(env)
    wrong = final_tables(control, hp, seeds=32).mean(0)[0, :3]
    assert np.abs(wrong - reference).max() > 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"estimators": 3}, "estimators=3 is not allowed"),
        ({"n_steps": 0}, "n_steps=0 is not allowed"),
        ({"step_size": "adam"}, "step_size='adam' is not allowed"),
        ({"exploration": "boltzmann"}, "exploration='boltzmann' is not allowed"),
        ({"steps": 1000, "log_every": 300}, "steps=1000 is not a multiple of log_every=300"),
        ({"steps": -5}, "steps=-5 is not allowed"),
    ],
)
def test_learner_configuration_errors(kwargs, message):
    env, params = jaxq.make("Chain", depth=4)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        TabularLearner(env, params, **{"steps": 100, "log_every": 10, **kwargs})


def test_tabular_learner_needs_a_finite_env():
    env, params = jaxq.make("CartPole-v1")
    with pytest.raises(ValueError, match="env=.CartPole-v1. is not allowed; tabular learners need a finite environment"):
        TabularLearner(env, params, steps=10, log_every=10)


def test_a_new_target_is_one_function():
    """Bring your own target: a 'pessimistic' Q-learning that bootstraps from the mean of max and min."""
    def pessimistic(reward, discount, successor: td.Bootstrap):
        return reward + discount * 0.5 * (successor.q_target.max() + successor.q_target.min())

    env, params = jaxq.make("Branching")
    learner = TabularLearner(env, params, steps=5_000, log_every=5_000, target=pessimistic)
    result = sweep(learner, {"gamma": [0.9]}, seeds=8)
    assert np.isfinite(result.logs["error"]).all() and result.config["learner"]["target"] == "pessimistic"
