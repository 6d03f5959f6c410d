"""TD targets: each formula, the n-step fold, shape checks, jitted and un-jitted."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxq import td

SUCCESSOR = td.Bootstrap(
    q_online=jnp.array([1.0, 3.0, 2.0]),
    q_target=jnp.array([4.0, 0.5, 6.0]),
    policy=jnp.array([0.2, 0.5, 0.3]),
    action=jnp.array(2),
)


class TargetsTest(parameterized.TestCase):
    @chex.all_variants(with_pmap=False)
    @parameterized.named_parameters(
        ("q_learning", td.q_learning, 1.0 + 0.9 * 6.0),
        ("double_q_learning", td.double_q_learning, 1.0 + 0.9 * 0.5),  # argmax online = 1
        ("sarsa", td.sarsa, 1.0 + 0.9 * 6.0),
        ("expected_sarsa", td.expected_sarsa, 1.0 + 0.9 * (0.8 + 0.25 + 1.8)),
    )
    def test_formula(self, target, expected):
        y = self.variant(target)(jnp.float32(1.0), jnp.float32(0.9), SUCCESSOR)
        np.testing.assert_allclose(y, expected, rtol=1e-6)

    @chex.all_variants(with_pmap=False)
    def test_terminal_discount_removes_the_bootstrap(self):
        for target in (td.q_learning, td.double_q_learning, td.sarsa, td.expected_sarsa):
            assert float(self.variant(target)(jnp.float32(2.0), jnp.float32(0.0), SUCCESSOR)) == 2.0

    @chex.all_variants(with_pmap=False)
    def test_n_step_return(self):
        rewards, discounts = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.9, 0.9, 0.9])
        g, d = self.variant(td.n_step_return)(rewards, discounts)
        np.testing.assert_allclose(g, 1 + 0.9 * 2 + 0.81 * 3, rtol=1e-6)
        np.testing.assert_allclose(d, 0.729, rtol=1e-6)
        # An episode end in the middle cuts both the sum and the bootstrap.
        g, d = self.variant(td.n_step_return)(rewards, jnp.array([0.9, 0.0, 0.9]))
        np.testing.assert_allclose(g, 1 + 0.9 * 2, rtol=1e-6)
        assert float(d) == 0.0

    def test_soft_q_learning_tends_to_q_learning(self):
        cold = td.soft_q_learning(1e-3)(jnp.float32(0.0), jnp.float32(1.0), SUCCESSOR)
        np.testing.assert_allclose(cold, 6.0, atol=1e-2)
        warm = td.soft_q_learning(1.0)(jnp.float32(0.0), jnp.float32(1.0), SUCCESSOR)
        assert float(warm) > 6.0
        with pytest.raises(ValueError, match="temperature=0"):
            td.soft_q_learning(0.0)

    def test_rank_checks(self):
        with pytest.raises(AssertionError):
            td.q_learning(jnp.ones(2), jnp.float32(0.9), SUCCESSOR)
        with pytest.raises(AssertionError):
            td.q_learning(jnp.float32(1.0), jnp.float32(0.9), SUCCESSOR.replace(policy=jnp.ones(2) / 2))

    def test_targets_vmap_over_a_batch(self):
        batch = jax.tree.map(lambda x: jnp.stack([x, x + 1]), SUCCESSOR)
        y = jax.vmap(td.q_learning)(jnp.zeros(2), jnp.ones(2), batch)
        np.testing.assert_allclose(y, [6.0, 7.0])
