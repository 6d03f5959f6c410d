"""The MLP learner: 257 parameters, the written-out forward pass, convergence on chain-2, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.learners import MLPQ, make_learner, num_parameters
from jaxq.sweep import sweep

ALPHAS = [0.01, 0.03]


def hparams(learner, **overrides):
    return {k: jnp.asarray(learner.encode(k, v)) for k, v in {**learner.defaults(), **overrides}.items()}


@pytest.fixture(scope="module")
def chain2():
    """Semi-gradient MLP learners on chain-2 (both variants) at two learning rates, in one sweep call."""
    env, params = jaxq.make("Chain", depth=2)
    learner = make_learner("mlp", env, params, steps=2_000, log_every=500, log_bias=False, log_policy_value=False)
    result = sweep(learner, {"variant": ["reset", "stay"], "alpha": ALPHAS, "epsilon": [0.5]}, seeds=64)
    return learner, result


def test_default_mlp_on_chain_has_257_parameters():
    env, params = jaxq.make("Chain", depth=8)
    learner = make_learner("mlp", env, params, steps=10, log_every=10)
    carry = jax.eval_shape(learner.init, jax.random.PRNGKey(0), hparams(learner))
    assert num_parameters(carry.params) == 257
    # (obs, action) -> 64 -> 64 -> 1 has 3 * 64 + (64 * 64 + 64) + 65 parameters.
    two_layers = MLPQ(2, width=64, depth=2).init(jax.random.PRNGKey(0), jnp.zeros(1))
    assert num_parameters(two_layers) == 3 * 64 + 64 * 64 + 64 + 65


@pytest.mark.parametrize("depth, activation", [(1, "relu"), (2, "tanh")])
def test_forward_pass_is_the_flax_module(depth, activation):
    """The written-out forward pass and one-action value equal ``module.apply(params, [obs, a])``,
    and so do their gradients."""
    q = MLPQ(2, width=16, depth=depth, activation=activation)
    params = q.init(jax.random.PRNGKey(1), jnp.zeros(1))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(2), x.shape), params)
    obs = jnp.array([[0.0], [0.375], [1.0]])
    actions = jnp.array([0, 1])
    inputs = jnp.stack([jnp.broadcast_to(obs, (3, 2)), jnp.broadcast_to(actions[:, None], (2, 3)).T], -1)

    @jax.jit
    def both(params):
        per_action = lambda f: jax.vmap(jax.vmap(f, (None, 0)), (0, None))(obs, actions)  # noqa: E731
        mine = per_action(lambda o, a: (q.value(params, o, a), jax.grad(q.value)(params, o, a)))
        flax = per_action(lambda o, a: jax.value_and_grad(q.module.apply)(params, jnp.array([o[0], a])))
        return jax.vmap(lambda o: q(params, o))(obs), mine, flax

    table, mine, flax = both(params)
    np.testing.assert_allclose(table, q.module.apply(params, inputs.astype(jnp.float32)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[0], table, rtol=1e-6, atol=1e-7)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), mine, flax)


def test_semi_gradient_mlp_reaches_small_error_on_chain2(chain2):
    _, result = chain2
    error = result.logs["error"][:, ALPHAS.index(0.03), 0]  # [variant, seeds, t]
    assert error[..., 0].min() > 0.3  # the untrained network is far from Q*
    assert error[..., -1].max() < 0.05  # every one of 128 lanes ends close
    assert error[..., -1].mean() < 0.01


def test_learning_rate_is_a_sweepable_leaf(chain2):
    learner, result = chain2
    slow, fast = (result.logs["error"][:, i, 0] for i in range(len(ALPHAS)))
    assert not np.any(np.all(np.isclose(slow, fast), axis=-1))  # every lane's curve differs
    assert fast[..., -1].mean() < 0.5 * slow[..., -1].mean()  # and the larger step learns faster
    carry = jax.eval_shape(learner.init, jax.random.PRNGKey(0), hparams(learner))
    assert carry.opt_state.hyperparams["learning_rate"].shape == ()  # a traced leaf, not a constant


def test_bad_input_is_a_clear_error():
    env, params = jaxq.make("Chain", depth=2)
    for width in (0, -3):
        with pytest.raises(ValueError, match="width"):
            MLPQ(2, width=width)
        with pytest.raises(ValueError, match="width"):
            make_learner("mlp", env, params, steps=10, log_every=10, width=width)
    with pytest.raises(ValueError, match="activation"):
        MLPQ(2, activation="sigmoidal")
    learner = make_learner("mlp", env, params, steps=10, log_every=10)
    for alpha in (0.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            sweep(learner, {"alpha": [0.1, alpha]}, seeds=2)
