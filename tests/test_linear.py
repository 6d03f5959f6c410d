"""Linear function approximation: error floors, semi- vs full-gradient updates, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq import exact
from jaxq.learners import ApproxLearner, linear_q, make_learner, one_hot_features
from jaxq.studies.cosine_fa import exact_references
from jaxq.sweep import sweep

GAMMA, EPSILON, ALPHA = 0.9, 0.3, 0.05


@pytest.fixture(scope="module")
def branching():
    env, params = jaxq.make("Branching")
    mdp = env.tabular(params)
    q_star = np.asarray(exact.q_star(mdp, GAMMA), np.float64)
    mask = np.broadcast_to(np.asarray(mdp.scored)[:, None], q_star.shape)
    return env, params, mdp, q_star, mask


@pytest.fixture(scope="module")
def cosine_floors(branching):
    """The cosine feature table, the visitation distribution, the three floors and the fixed points."""
    env, params, mdp, *_ = branching
    learner = make_learner("linear", env, params, steps=10, log_every=10, features="cosine")
    ref = exact_references(mdp, learner.q_function, GAMMA, EPSILON)
    return ref["features"], ref["visitation"], ref["floors"], ref["fixed_points"]


# -- floors and fixed points ------------------------------------------------------------------------


def test_cosine_features_are_the_seed_documents_map(branching, cosine_floors):
    env, *_ = branching
    features = cosine_floors[0]
    expected = np.stack(np.broadcast_arrays(1.0, np.cos(np.pi * env.depths / 3)[:, None], np.arange(2.0)), -1)
    np.testing.assert_allclose(features, expected, atol=1e-6)


def test_minimax_floor_is_the_least_sup_norm_error_of_any_theta(branching, cosine_floors):
    _, _, _, q_star, mask = branching
    features, _, floors, _ = cosine_floors
    assert 0.1 < floors["minimax"] <= min(floors["unweighted"], floors["weighted"]) + 1e-6
    # No parameter vector does better than the linear program's optimum.
    rng = np.random.default_rng(0)
    thetas = rng.normal(scale=2.0, size=(20_000, features.shape[-1]))
    sup_errors = np.abs(features[mask] @ thetas.T - q_star[mask][:, None]).max(0)
    assert sup_errors.min() >= floors["minimax"] - 1e-6


def test_visitation_is_a_distribution_over_non_terminal_pairs(branching, cosine_floors):
    _, _, mdp, _, mask = branching
    d = cosine_floors[1]
    assert np.isclose(d.sum(), 1.0) and np.all(d >= 0) and np.all(d[~mask] == 0)
    assert d[0].sum() == pytest.approx(d.sum(1).max())  # the start state is visited most


def test_expected_updates_vanish_at_the_fixed_points(branching, cosine_floors):
    """``E_d[delta phi] = 0`` (TD) and ``E_d[delta (phi - gamma phi(s', a*))] = 0`` (residual), with
    ``delta = T Q - Q`` from the library's Bellman backup: an independent check of the linear algebra."""
    _, _, mdp, q_star, _ = branching
    features, d, _, fixed = cosine_floors
    successor = np.asarray(mdp.P).argmax(-1)  # deterministic tree
    for name in ("semi", "full"):
        assert fixed[name]["greedy_policy_optimal"]
        q = features @ np.asarray(fixed[name]["theta"])
        delta = np.asarray(exact.bellman_backup(mdp, jnp.asarray(q, jnp.float32), GAMMA)) - q
        direction = features.copy()
        if name == "full":
            best = q.argmax(-1)
            live = ~np.asarray(mdp.terminal)[successor]
            direction -= GAMMA * (features[successor, best[successor]] * live[..., None])
        np.testing.assert_allclose(np.einsum("sa,sa,sak->k", d, delta, direction), 0.0, atol=1e-5)
        assert fixed[name]["error"] == pytest.approx(np.abs(q - q_star)[np.asarray(mdp.scored)].max())


def test_learned_cosine_error_stays_above_the_floors(branching, cosine_floors):
    env, params, *_ = branching
    _, _, floors, fixed = cosine_floors
    learner = make_learner("linear", env, params, steps=4_000, log_every=40, features="cosine",
                           log_bias=False, log_policy_value=False)
    result = sweep(learner, {"alpha": [ALPHA], "gamma": [GAMMA], "epsilon": [EPSILON]}, seeds=64)
    error = result.logs["error"].reshape(64, -1)
    assert np.isfinite(error).all()
    # A theorem: no parameter vector, learned or not, gets below the minimax floor.
    assert error.min() >= floors["minimax"] - 1e-5
    # The seed document's claim, per seed: the plateau (second-half mean) sits above the L2 floors ...
    plateau = error[:, error.shape[1] // 2:].mean(1)
    assert plateau.min() >= floors["unweighted"]
    assert np.mean(plateau >= floors["weighted"]) >= 0.95
    # ... at the error of the TD fixed point of the expected update.
    assert plateau.mean() == pytest.approx(fixed["semi"]["error"], abs=0.03)


# -- semi- vs full-gradient updates -----------------------------------------------------------------


def one_update(learner: ApproxLearner, theta: np.ndarray, state: int, action: int) -> np.ndarray:
    """The parameter change of one learner step from ``theta`` in ``state`` taking ``action``."""
    values = {**learner.defaults(), "gamma": GAMMA, "alpha": 0.5, "epsilon": 0.0}
    hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in values.items()}
    carry = learner.init(jax.random.PRNGKey(0), hp)
    env_state = learner.env.state_at(state)
    carry = carry.replace(params=jnp.asarray(theta, jnp.float32), env_state=env_state,
                          obs=learner.env.get_obs(env_state, learner.params_for(hp)), action=jnp.int32(action))
    new = learner.step(carry, hp, jnp.zeros(2, jnp.uint32), jax.random.PRNGKey(1))
    return np.asarray(new.params) - np.asarray(carry.params)


def learners(env, params, features):
    q_function = linear_q(features, env, params)
    return [ApproxLearner(env, params, 10, 10, q_function=q_function, gradient=g) for g in ("semi", "full")]


@pytest.mark.parametrize(
    "state, action, successor, reward",
    [(1, 0, 3, 0.0),  # s1 -> s3: a non-terminal transition
     (0, 1, 2, 0.0),  # s0 -> s2
     (4, 0, None, 1.0)],  # s4 -> leaf: terminal, no bootstrap
)
def test_one_hot_semi_and_full_gradient_coincide_at_the_predicted_entry(state, action, successor, reward):
    env, params = jaxq.make("Branching")
    S, A = env.num_states, env.num_actions
    theta = np.random.default_rng(state).normal(size=S * A).astype(np.float32)
    table = theta.reshape(S, A)
    best = None if successor is None else int(table[successor].argmax())
    delta = reward + (0.0 if successor is None else GAMMA * table[successor, best]) - table[state, action]
    assert abs(delta) > 0.1
    semi, full = (one_update(learner, theta, state, action).reshape(S, A)
                  for learner in learners(env, params, one_hot_features(env)))
    expected_semi = np.zeros((S, A))
    expected_semi[state, action] = 0.5 * delta
    np.testing.assert_allclose(semi, expected_semi, atol=1e-6)
    expected_full = expected_semi.copy()
    if successor is not None:  # the full gradient also moves the target entry by -alpha gamma delta
        expected_full[successor, best] = -0.5 * GAMMA * delta
    np.testing.assert_allclose(full, expected_full, atol=1e-6)
    assert full[state, action] == pytest.approx(semi[state, action])


def test_one_hot_full_gradient_differs_on_a_self_loop():
    """Where ``(s', a*) = (s, a)`` the full gradient's two terms meet: ``alpha delta (1 - gamma)``."""
    env, params = jaxq.make("Chain", depth=3, variant="stay")
    S, A = env.num_states, env.num_actions
    theta = np.zeros((S, A), np.float32)
    theta[1] = (0.2, -0.4)  # "stay" (action 0) is greedy in s1, so (s', a*) = (s1, stay)
    semi, full = (one_update(learner, theta.ravel(), 1, 0).reshape(S, A)
                  for learner in learners(env, params, one_hot_features(env)))
    delta = GAMMA * 0.2 - 0.2
    assert semi[1, 0] == pytest.approx(0.5 * delta)
    assert full[1, 0] == pytest.approx(0.5 * delta * (1 - GAMMA), abs=1e-6)


def test_cosine_semi_and_full_gradient_differ(branching):
    env, params, *_ = branching
    cosine = make_learner("linear", env, params, steps=10, log_every=10, features="cosine").q_function.features
    phi = lambda s, a: np.array([1.0, np.cos(np.pi * env.depths[s] / 3), a])  # noqa: E731
    theta = np.array([0.3, -0.5, 0.2], np.float32)
    q = lambda s: np.array([phi(s, a) @ theta for a in range(2)])  # noqa: E731
    state, action, successor = 1, 0, 3
    best = int(q(successor).argmax())
    delta = GAMMA * q(successor)[best] - q(state)[action]
    semi, full = (one_update(learner, theta, state, action) for learner in learners(env, params, cosine))
    np.testing.assert_allclose(semi, 0.5 * delta * phi(state, action), atol=1e-6)
    np.testing.assert_allclose(full, 0.5 * delta * (phi(state, action) - GAMMA * phi(successor, best)), atol=1e-6)
    assert np.abs(full - semi).max() > 0.05  # shared parameters: the target's gradient matters
    # ... and one update moves Q at pairs other than the one updated.
    moved = np.array([[phi(s, a) @ semi for a in range(2)] for s in range(env.num_states - 1)])
    assert np.count_nonzero(np.abs(moved) > 1e-6) > 1


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "features",
    [lambda obs, a: obs.sum(),  # a scalar
     lambda obs, a: jnp.outer(obs, obs),  # a matrix
     lambda obs, a: jnp.zeros(0)],  # an empty vector
    ids=["scalar", "matrix", "empty"],
)
def test_feature_maps_of_the_wrong_shape_are_refused(features):
    env, params = jaxq.make("Branching")
    with pytest.raises(ValueError, match=r"returned shapes .* must return one vector \[K\], K >= 1"):
        linear_q(features, env, params)


def test_feature_maps_that_branch_on_the_action_in_python_are_refused():
    env, params = jaxq.make("Branching")
    with pytest.raises(ValueError, match="cannot be traced .*jnp.where"):
        linear_q(lambda obs, a: jnp.ones(3) if a == 0 else jnp.ones(2), env, params)


@pytest.mark.parametrize("alpha", [0.0, -0.1])
def test_non_positive_step_sizes_are_refused_before_compiling(alpha, monkeypatch):
    env, params = jaxq.make("Branching")
    learner = make_learner("linear", env, params, steps=10, log_every=10, features="cosine")
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=f"alpha={alpha} is not allowed; alpha must be a number in \\(0, inf\\)"):
        sweep(learner, {"alpha": [0.05, alpha]}, seeds=2)


def test_cosine_features_need_state_depths():
    env, params = jaxq.make("Chain", depth=4)
    with pytest.raises(ValueError, match="features='cosine' needs state depths"):
        make_learner("linear", env, params, steps=10, log_every=10, features="cosine")
    with pytest.raises(ValueError, match="features='fourier' is not allowed"):
        make_learner("linear", env, params, steps=10, log_every=10, features="fourier")
