"""Exact solvers against closed forms and the theory they rest on."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxq
from jaxq import exact
from jaxq.envs.chain import q_star_closed_form
from jaxq.exact.linalg import solve

GAMMAS = (0.0, 0.5, 0.9, 0.99, 0.999)


class ExactTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(depth=(1, 2, 5, 16, 64), variant=("reset", "stay"))
    def test_chain_q_star_matches_closed_form(self, depth, variant):
        env, params = jaxq.make("Chain", depth=depth, max_depth=64, variant=variant)
        q_star = self.variant(lambda m, g: exact.q_star(m, g))
        mdp = env.tabular(params)
        for gamma in GAMMAS:
            q = np.asarray(q_star(mdp, gamma))
            np.testing.assert_allclose(q[:depth], q_star_closed_form(depth, gamma, variant), rtol=2e-5, atol=1e-7)
            assert np.all(q[depth:] == 0.0)  # padding states and the terminal are worth zero

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        ("Branching", {}), ("Branching", {"noise": 0.2}), ("GridWorld", {}),
        ("GridWorld", {"preset": "FrozenLake-4x4"}), ("Chain", {"depth": 7}),
    )
    def test_value_iteration_contracts_at_every_k(self, name, kwargs):
        env, params = jaxq.make(name, **kwargs)
        mdp = env.tabular(params)
        vi = self.variant(lambda m, g, q0: exact.value_iteration(m, g, 60, q0))
        for gamma in (0.5, 0.9, 0.99):
            for q0 in (jnp.zeros_like(mdp.R), 5.0 * jax.random.normal(jax.random.PRNGKey(0), mdp.R.shape)):
                q0 = jnp.where(mdp.terminal[:, None], 0.0, q0)
                path = np.asarray(vi(mdp, gamma, q0))
                q_star = np.asarray(exact.q_star(mdp, gamma))
                err = np.abs(path - q_star).max(axis=(1, 2))
                bound = gamma ** np.arange(61) * err[0]
                assert np.all(err <= bound + 1e-5), (gamma, err, bound)

    def test_value_iteration_reaches_q_star(self):
        env, params = jaxq.make("GridWorld", preset="FrozenLake-4x4")
        mdp = env.tabular(params)
        path = exact.value_iteration(mdp, 0.9, 400)
        np.testing.assert_allclose(path[-1], exact.q_star(mdp, 0.9), atol=1e-5)
        # Q* is a fixed point of the Bellman optimality operator.
        q = exact.q_star(mdp, 0.9)
        np.testing.assert_allclose(exact.bellman_backup(mdp, q, 0.9), q, atol=1e-5)

    def test_backups_on_chain5_fix_exactly_the_last_k_states(self):
        gamma, depth = 0.9, 5
        env, params = jaxq.make("Chain", depth=depth)
        mdp = env.tabular(params)
        path = np.asarray(exact.value_iteration(mdp, gamma, depth + 2))
        v_star = gamma ** (depth - 1 - np.arange(depth))
        for k in range(depth + 1):
            v_k = path[k, :depth].max(axis=1)
            exact_states = np.isclose(v_k, v_star, rtol=1e-6, atol=0)
            expected = np.arange(depth) >= depth - k
            np.testing.assert_array_equal(exact_states, expected, err_msg=f"after {k} backups")
            assert np.all(v_k[~expected] == 0.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_policy_evaluation_solves_the_linear_bellman_equation(self):
        env, params = jaxq.make("GridWorld", preset="FrozenLake-4x4")
        mdp = env.tabular(params)
        policy = jax.random.randint(jax.random.PRNGKey(0), (env.num_states,), 0, 4)
        q = self.variant(lambda m, p: exact.policy_evaluation(m, p, 0.95))(mdp, policy)
        v = jnp.take_along_axis(q, policy[:, None], axis=1)[:, 0]
        backed_up = mdp.R + 0.95 * mdp.P @ jnp.where(mdp.terminal, 0.0, v)
        np.testing.assert_allclose(q, jnp.where(mdp.terminal[:, None], 0.0, backed_up), atol=1e-5)
        # A stochastic policy given as probabilities: uniform random.
        uniform = jnp.full(mdp.R.shape, 0.25)
        v_uniform = exact.policy_value(mdp, uniform, 0.95)
        assert np.all(np.asarray(v_uniform) <= np.asarray(exact.v_star(mdp, 0.95)) + 1e-6)

    def test_occupancy_counts_expected_visits(self):
        env, params = jaxq.make("Chain", depth=4)
        mdp = env.tabular(params)
        forward = jnp.ones(env.num_states, jnp.int32)
        d = np.asarray(exact.occupancy(mdp, forward))
        np.testing.assert_allclose(d[:4, 1], 1.0, atol=1e-6)  # each state visited once per episode
        np.testing.assert_allclose(d[:, 0], 0.0, atol=1e-6)

    def test_projection_is_exact_for_one_hot_features_and_a_floor_otherwise(self):
        env, params = jaxq.make("Branching")
        mdp = env.tabular(params)
        q = exact.q_star(mdp, 0.9)
        one_hot = jnp.eye(env.num_states * 2).reshape(env.num_states, 2, -1)
        mask = jnp.broadcast_to(mdp.scored[:, None], q.shape)
        assert float(exact.projection_floor(q, one_hot, mask=mask)) < 1e-4
        depth = jnp.asarray(env.depths, jnp.float32)
        cosine = jnp.stack([jnp.ones((env.num_states, 2)), jnp.broadcast_to(jnp.cos(jnp.pi * depth / 3)[:, None], (env.num_states, 2)),
                            jnp.broadcast_to(jnp.arange(2.0), (env.num_states, 2))], axis=-1)
        projected, theta = exact.project(q, cosine, mask=mask)
        # Least squares: the residual is orthogonal to every feature column on the masked pairs.
        residual = jnp.where(mask, projected - q, 0.0)
        np.testing.assert_allclose(jnp.einsum("sa,sak->k", residual, cosine), 0.0, atol=1e-4)
        assert float(exact.projection_floor(q, cosine, mask=mask)) > 0.05


def test_solve_matches_numpy_and_vmaps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 20, 20)).astype(np.float32) + 5 * np.eye(20, dtype=np.float32)
    b = rng.normal(size=(8, 20)).astype(np.float32)
    x = jax.jit(jax.vmap(solve))(a, b)
    np.testing.assert_allclose(x, np.linalg.solve(a.astype(np.float64), b[..., None].astype(np.float64))[..., 0], atol=1e-4)


@pytest.mark.parametrize("gamma", [0.9, 0.9999])
def test_q_star_of_the_deep_chain_in_float32(gamma):
    env, params = jaxq.make("Chain", depth=64)
    q = np.asarray(exact.q_star(env.tabular(params), gamma))
    np.testing.assert_allclose(q[:64], q_star_closed_form(64, gamma), rtol=1e-4)
