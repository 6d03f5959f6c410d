"""Environments: the registry, bad input, gymnax behaviour, and tabular models that agree with step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxq
from jaxq.envs import env_step
from jaxq.envs.gridworld import parse_layout

FINITE = [
    ("Chain", {"depth": 5}),
    ("Chain", {"depth": 3, "max_depth": 6, "variant": "stay"}),
    ("Branching", {}),
    ("Branching", {"noise": 0.3}),
    ("Branching", {"depth": 2, "branching": 3}),
    ("GridWorld", {}),
    ("GridWorld", {"preset": "FrozenLake-4x4"}),
]


def test_make_lists_and_passes_through_gymnax():
    names = jaxq.registered()
    assert names[:3] == ["Chain", "Branching", "GridWorld"] and "CartPole-v1" in names
    env, params = jaxq.make("CartPole-v1")
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (4,)
    env, _ = jaxq.make("chain", depth=4)  # case-insensitive
    assert env.name == "Chain"


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("NoSuchEnv", {}, "env='NoSuchEnv' is not a known environment"),
        ("Chain", {"depth": 0}, "depth=0 is not allowed; depth must be an integer in [1, inf)"),
        ("Chain", {"depth": 9, "max_depth": 8}, "depth=9 is not allowed; depth must be an integer in [1, 8]"),
        ("Chain", {"depth": 2.5}, "depth=2.5 is not allowed"),
        ("Chain", {"variant": "jump"}, "variant='jump' is not allowed; choose one of: 'reset', 'stay'"),
        ("Chain", {"colour": 1}, "Chain has no option 'colour'"),
        ("Branching", {"noise": 1.5}, "noise=1.5 is not allowed; noise must be a number in [0, 1]"),
        ("Branching", {"leaf_rewards": [1.0, 2.0]}, "leaf_rewards has shape (2,); this tree has 6 leaves"),
        ("Branching", {"branching": 1}, "branching=1 is not allowed"),
        ("GridWorld", {"slip": -0.1}, "slip=-0.1 is not allowed"),
        ("GridWorld", {"preset": "8x8"}, "preset='8x8' is not allowed"),
    ],
)
def test_bad_options_raise_before_compiling(name, kwargs, message):
    with pytest.raises(ValueError) as error:
        jaxq.make(name, **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "layout, message",
    [
        (["S..", ".#P"], "no goal 'G'"),
        (["S.G", ".x."], "unknown character 'x' at row 1, column 1"),
        (["S.G", "..", "..."], "ragged"),
        (["..G", "..."], "0 start cells"),
        (["S.G", "S.."], "2 start cells"),
        ([], "empty"),
    ],
)
def test_malformed_gridworld_layouts(layout, message):
    with pytest.raises(ValueError, match=message):
        parse_layout(layout)
    with pytest.raises(ValueError, match=message):
        jaxq.make("GridWorld", layout=layout)


@pytest.mark.parametrize("name, kwargs", FINITE)
def test_tabular_model_is_well_formed(name, kwargs):
    env, params = jaxq.make(name, **kwargs)
    mdp = env.tabular(params)
    mdp.check()
    assert mdp.P.shape == (env.num_states, env.num_actions, env.num_states)
    # Terminal states are absorbing.
    term = np.flatnonzero(np.asarray(mdp.terminal))
    np.testing.assert_allclose(np.asarray(mdp.P)[term, :, term], 1.0)


@pytest.mark.parametrize("name, kwargs", FINITE)
def test_tabular_model_agrees_with_step(name, kwargs):
    """Sample 4000 transitions from every scored (s, a) with `step` and compare with P and R."""
    env, params = jaxq.make(name, **kwargs)
    mdp = jax.tree.map(np.asarray, env.tabular(params))
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(1), n)

    @jax.jit
    def sample(s, a):
        def one(key):
            _, state, reward, terminated, _ = env.step_env(key, env.state_at(s), a, params)
            obs = env.get_obs(state, params)
            return env.state_index(state), reward, terminated, obs
        return jax.vmap(one)(keys)

    for s in np.flatnonzero(mdp.valid & ~mdp.terminal):
        for a in range(env.num_actions):
            nxt, reward, terminated, obs = map(np.asarray, sample(s, a))
            freq = np.bincount(nxt, minlength=env.num_states) / n
            sigma = np.sqrt(mdp.P[s, a] * (1 - mdp.P[s, a]) / n)
            assert np.all(np.abs(freq - mdp.P[s, a]) <= 5 * sigma + 1e-6), (s, a, freq, mdp.P[s, a])
            reward_sd = max(np.std(reward), 1e-6)
            assert abs(reward.mean() - mdp.R[s, a]) <= 5 * reward_sd / np.sqrt(n) + 1e-6
            np.testing.assert_array_equal(terminated, mdp.terminal[nxt])
            np.testing.assert_allclose(obs, mdp.features[nxt], atol=1e-6)


class StepVariantsTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*FINITE)
    def test_step_matches_gymnax_and_keeps_successor(self, name, kwargs):
        env, params = jaxq.make(name, **kwargs)
        key = jax.random.PRNGKey(3)
        _, state = env.reset(key, params)
        step = self.variant(lambda k, s, a: env_step(env, k, s, a, params))
        gym_step = self.variant(lambda k, s, a: env.step(k, s, a, params))
        for t in range(12):
            key, sub = jax.random.split(key)
            out = step(sub, state, t % env.num_actions)
            obs, gstate, reward, terminated, truncated, info = gym_step(sub, state, t % env.num_actions)
            chex.assert_trees_all_close(out.state, gstate)
            chex.assert_trees_all_close(out.obs, obs)
            chex.assert_trees_all_close(out.next_obs, info["final_observation"])
            assert bool(out.terminated) == bool(terminated) and float(out.reward) == float(reward)
            state = out.state


def test_truncation_is_reported_apart_from_termination():
    env, params = jaxq.make("Chain", depth=4, max_steps_in_episode=3)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    flags = []
    for _ in range(4):  # forward x3 hits the time limit before the terminal (4 steps away)
        out = env_step(env, jax.random.PRNGKey(0), state, 1, params)
        flags.append((bool(out.terminated), bool(out.truncated), int(env.state_index(out.next_state))))
        state = out.state
    assert flags[:3] == [(False, False, 1), (False, False, 2), (False, True, 3)]
    assert flags[3] == (False, False, 1)  # restarted at s_0 after the truncation


def test_chain_depth_is_a_traced_parameter():
    env, params = jaxq.make("Chain", depth=8, max_depth=8)
    depths = jnp.array([2, 5, 8])
    mdps = jax.vmap(lambda d: env.tabular(params.replace(depth=d)))(depths)
    assert mdps.P.shape == (3, 9, 2, 9)
    # Forward from s_{D-1} reaches the terminal (index 8) with reward 1.
    for i, d in enumerate([2, 5, 8]):
        assert float(mdps.P[i, d - 1, 1, 8]) == 1.0 and float(mdps.R[i, d - 1, 1]) == 1.0
        assert int(np.asarray(mdps.valid[i]).sum()) == d + 1
