"""Q-learning with function approximation: linear features or a small MLP, one transition a step.

``Q_theta(s, .)`` comes from a :class:`QFunction` of the observation. Each step acts
epsilon-greedily, observes ``(s, a, r, s')`` and takes one optimiser step on

    L(theta) = 1/2 (y - Q_theta(s, a))^2,    y = target(r, gamma (1 - terminated), successor)

* ``gradient="semi"``: ``y`` is held fixed (``stop_gradient``): the semi-gradient update
  ``theta += alpha delta grad Q_theta(s, a)`` with plain SGD;
* ``gradient="full"``: ``y`` is differentiated too, through the online parameters (the residual
  gradient ``theta += alpha delta (grad Q_theta(s, a) - gamma grad Q_theta(s', a*))``).

With ``target_network=True`` the bootstrap uses a copy of the parameters refreshed every
``target_period`` steps (a sweepable hyper-parameter). The learning rate ``alpha`` is a pytree leaf of
the optimiser state (``optax.inject_hyperparams``), so one sweep call can vary it.

Runs on any environment with discrete actions; on a finite one it also logs exact metrics of the
approximator's table (``||Q_theta - Q*||_inf``, per-state bias, greedy-policy value).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxq import exact, td
from jaxq.envs.core import FiniteEnv, env_step
from jaxq.hparams import HParam, HParams, gamma_hparam, positive_hparam
from jaxq.learners.base import OnlineLearner
from jaxq.learners.episodes import EpisodeStats
from jaxq.learners.exact_metrics import value_metrics
from jaxq.learners.exploration import EXPLORATION_HPARAMS, SCHEDULES, epsilon_at, epsilon_greedy_action, successor
from jaxq.learners.networks import ACTIVATIONS
from jaxq.learners.target_network import hard_refresh, period_crossed
from jaxq.validation import check_choice, check_count

GRADIENTS = ("semi", "full")
OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


class QFunction(Protocol):
    """Action values from an observation: ``q(params, obs) -> [A]`` and ``q.value(params, obs, a)``,
    the value of one action (``q(params, obs)[a]``, computed without the other actions)."""

    num_actions: int

    def init(self, key: jax.Array, obs: jax.Array) -> Any: ...

    def __call__(self, params: Any, obs: jax.Array) -> jax.Array: ...

    def value(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array: ...


FeatureMap = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class LinearQ:
    """``Q_theta(s, a) = theta . phi(s, a)`` for a feature map ``phi(obs, action) -> [K]``."""

    features: FeatureMap
    num_features: int
    num_actions: int

    def init(self, key: jax.Array, obs: jax.Array) -> jax.Array:
        return jnp.zeros(self.num_features, jnp.float32)

    def __call__(self, params: jax.Array, obs: jax.Array) -> jax.Array:
        return jax.vmap(lambda a: self.value(params, obs, a))(jnp.arange(self.num_actions))

    def value(self, params: jax.Array, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self.features(obs, action) @ params


def linear_q(features: FeatureMap, env: Any, env_params: Any) -> LinearQ:
    """A :class:`LinearQ` whose feature map is checked on the environment's observation.

    Raises:
        ValueError: if ``phi(obs, a)`` is not one vector ``[K]`` of the same length for every action,
            or cannot be traced with the action as an array (write ``jnp.where``, not ``if``).
    """
    obs = env.reset(jax.random.PRNGKey(0), env_params)[0]
    try:
        shapes = [jax.eval_shape(features, obs, jnp.int32(a)).shape for a in range(env.num_actions)]
    except jax.errors.JAXTypeError as error:
        raise ValueError(f"features(obs, action) cannot be traced ({type(error).__name__}): the action "
                         "arrives as an array, so select with jnp.where or array indexing, not Python if") from None
    if len(set(shapes)) != 1 or len(shapes[0]) != 1 or shapes[0][0] < 1:
        raise ValueError(f"features(obs, action) returned shapes {shapes} for actions 0..{env.num_actions - 1} "
                         f"and an observation of shape {tuple(obs.shape)}; it must return one vector [K], "
                         "K >= 1, of the same length for every action")
    return LinearQ(features, shapes[0][0], env.num_actions)


def one_hot_features(env: FiniteEnv) -> FeatureMap:
    """Tabular features: ``phi(s, a)`` is the indicator of the pair, so linear FA is a Q-table.

    The state is recovered from the observation by matching the environment's feature table.
    """
    table = jnp.asarray(env.tabular(env.default_params).features)

    def phi(obs, action):
        state = jnp.argmin(jnp.sum(jnp.abs(table - obs), axis=-1))
        return jnp.outer(jax.nn.one_hot(state, env.num_states), jax.nn.one_hot(action, env.num_actions)).ravel()

    return phi


def affine_features(num_actions: int) -> FeatureMap:
    """One affine function of the observation per action: ``phi(s, a) = e_a (x) [1, obs]``, so
    ``Q_theta(s, a) = w_a . obs + b_a``. Works on any environment with vector observations."""

    def phi(obs, action):
        x = jnp.concatenate([jnp.ones(1, jnp.float32), jnp.ravel(obs).astype(jnp.float32)])
        return jnp.outer(jax.nn.one_hot(action, num_actions), x).ravel()

    return phi


def cosine_features(depths: np.ndarray) -> FeatureMap:
    """The seed blog's 3-feature map ``phi(s, a) = (1, cos(pi depth(s) / 3), a)`` for a state given as
    a one-hot observation (Branching): ``Q = theta_1 + theta_2 cos(pi depth / 3) + theta_3 a``."""
    depth = jnp.asarray(depths, jnp.float32)

    def phi(obs, action):
        return jnp.stack([1.0, jnp.cos(jnp.pi * (obs @ depth) / 3.0), jnp.asarray(action, jnp.float32)])

    return phi


class _MLP(nn.Module):
    hidden: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = ACTIVATIONS[self.activation](nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class MLPQ:
    """``Q(s, a) = MLP([obs, a])``: the observation and the action index in, one value out.

    One hidden layer of 64 ReLU units on a 1-feature observation has exactly 257 parameters
    ((1 + 1) * 64 + 64 weights and biases in, 64 + 1 out).

    The parameters are those of a flax ``Dense`` stack (``params["params"]["Dense_i"]``). The forward
    pass is written out so that the action, the last input, enters the first layer as
    ``h_1 = act(obs @ K_obs + a * K_act + b)``: all actions share ``obs @ K_obs``, and
    :meth:`value` evaluates one action alone (no gather, and no gradient through the other actions).
    Same function as ``module.apply(params, [obs, a])``.
    """

    num_actions: int
    width: int = 64
    depth: int = 1
    activation: str = "relu"

    def __post_init__(self):
        check_count(self.width, "width")
        check_count(self.depth, "depth")
        check_choice("activation", self.activation, ACTIVATIONS)

    @property
    def module(self) -> _MLP:
        return _MLP((self.width,) * self.depth, self.activation)

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        return self.module.init(key, jnp.concatenate([obs, jnp.zeros(1)]))

    def _first_layer(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Pre-activation ``obs @ K_obs + action * K_act + b`` of the first hidden layer
        (``action`` a scalar, or ``[n]`` for ``[n, width]`` rows)."""
        layer = params["params"]["Dense_0"]
        kernel = layer["kernel"]
        action = jnp.asarray(action, obs.dtype)[..., None]
        return (obs @ kernel[:-1] + action * kernel[-1]) + layer["bias"]

    def _head(self, params: Any, pre: jax.Array) -> jax.Array:
        """The rest of the network from the first layer's pre-activation ``[..., width]``."""
        act = ACTIVATIONS[self.activation]
        layers = params["params"]
        x = act(pre)
        for i in range(1, self.depth):
            x = act(x @ layers[f"Dense_{i}"]["kernel"] + layers[f"Dense_{i}"]["bias"])
        out = layers[f"Dense_{self.depth}"]
        return x @ out["kernel"][:, 0] + out["bias"][0]

    def __call__(self, params: Any, obs: jax.Array) -> jax.Array:
        actions = jnp.arange(self.num_actions)
        return self._head(params, self._first_layer(params, obs, actions))

    def value(self, params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self._head(params, self._first_layer(params, obs, action))


def num_parameters(params: Any) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@struct.dataclass
class ApproxCarry:
    params: Any
    target_params: Any  # the target network's parameters; () without a target network
    opt_state: Any
    q_star: jax.Array  # [S, A] for exact metrics; () without them
    env_state: Any
    obs: jax.Array
    action: jax.Array
    key: jax.Array
    t: jax.Array
    episodes: EpisodeStats


class ApproxLearner(OnlineLearner):
    """Online Q-learning (or any TD target) with a function approximator, one transition a step.

    Args:
        env, env_params, steps, log_every: as for every online learner (and ``eval_every``,
            ``eval_episodes``, ``exact_metrics``: see :class:`~jaxq.learners.base.OnlineLearner`).
        q_function: a :class:`LinearQ` (see :func:`linear_q`) or :class:`MLPQ`.
        target: TD target function from :mod:`jaxq.td` or your own.
        gradient: "semi" or "full" (residual; not with a target network).
        optimizer: "sgd" (the update rule of the seed studies) or "adam".
        target_network: bootstrap from a periodically refreshed copy (``target_period`` steps).
        exploration: epsilon schedule, "constant" or "linear".
        log_bias, log_policy_value: with exact metrics, also log the per-state bias and the greedy
            policy's value.
    """

    hyperparameters: dict[str, HParam] = {
        "gamma": gamma_hparam(0.9),
        "alpha": positive_hparam("alpha", 5e-4, "learning rate (> 0)"),
        "target_period": positive_hparam("target_period", 100.0, "steps between target-network refreshes"),
        **EXPLORATION_HPARAMS,
    }

    def __init__(self, env: Any, env_params: Any, steps: int, log_every: int, *,
                 q_function: QFunction, target: td.TDTarget = td.q_learning, gradient: str = "semi",
                 optimizer: str = "sgd", target_network: bool = False, exploration: str = "constant",
                 log_bias: bool = True, log_policy_value: bool = True, **contract: Any):
        super().__init__(env, env_params, steps, log_every, **contract)
        if q_function.num_actions != self.num_actions:
            raise ValueError(f"q_function has {q_function.num_actions} actions; {env.name} has {self.num_actions}")
        self.q_function, self.target = q_function, target
        self.gradient = check_choice("gradient", gradient, GRADIENTS)
        self.optimizer_name = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.optimizer = optax.inject_hyperparams(OPTIMIZERS[optimizer])(learning_rate=1.0)
        if target_network and gradient == "full":
            raise ValueError("gradient='full' differentiates through the online bootstrap; it takes no target network")
        self.target_network = target_network
        self.exploration = check_choice("exploration", exploration, SCHEDULES)
        self.log_bias, self.log_policy_value = log_bias, log_policy_value

    def static_config(self) -> dict[str, Any]:
        return {
            "q_function": repr(self.q_function) if isinstance(self.q_function, MLPQ) else (
                f"LinearQ({getattr(self.q_function.features, '__name__', 'features')}, K={self.q_function.num_features})"),
            "target": getattr(self.target, "__name__", repr(self.target)),
            "gradient": self.gradient,
            "optimizer": self.optimizer_name,
            "target_network": self.target_network,
            "exploration": self.exploration,
        }

    def init(self, key: jax.Array, hp: HParams) -> ApproxCarry:
        env_params = self.params_for(hp)
        key, init_key, reset_key, action_key = jax.random.split(key, 4)
        obs, env_state = self.env.reset_env(reset_key, env_params)
        params = self.q_function.init(init_key, obs)
        opt_state = self.optimizer.init(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(hp["alpha"], jnp.float32)
        bits = jax.random.bits(action_key, (2,), jnp.uint32)
        action = epsilon_greedy_action(self.q_function(params, obs), hp["epsilon"], bits)
        return ApproxCarry(
            params=params, target_params=params if self.target_network else (), opt_state=opt_state,
            q_star=exact.q_star(self.env.tabular(env_params), hp["gamma"]) if self.exact_metrics else (),
            env_state=env_state, obs=obs, action=action, key=key,
            t=jnp.int32(0), episodes=EpisodeStats.zeros(),
        )

    def _loss(self, params: Any, obs: jax.Array, action: jax.Array,
              reward: jax.Array, discount: jax.Array, next_obs: jax.Array, successor: td.Bootstrap) -> jax.Array:
        """``1/2 (y - Q_params(s, a))^2`` with ``y`` frozen (semi) or differentiable (full)."""
        if self.gradient == "full":
            q_next = self.q_function(params, next_obs)
            successor = successor.replace(q_online=q_next, q_target=q_next)
            y = self.target(reward, discount, successor)
        else:
            y = jax.lax.stop_gradient(self.target(reward, discount, successor))
        return 0.5 * (y - self.q_function.value(params, obs, action)) ** 2

    def step(self, carry: ApproxCarry, hp: HParams, bits: jax.Array, env_key: jax.Array) -> ApproxCarry:
        env_params = self.params_for(hp)
        epsilon = epsilon_at(carry.t, hp, self.exploration)
        out = env_step(self.env, env_key, carry.env_state, carry.action, env_params)
        # One batched forward pass for the successor (bootstrap) and where the agent goes on (a fresh
        # reset when the episode ended): the restart action is drawn from the pre-update parameters.
        q_next, q_restart = jax.vmap(self.q_function, in_axes=(None, 0))(
            carry.params, jnp.stack([out.next_obs, out.obs]))
        q_next_target = self.q_function(carry.target_params, out.next_obs) if self.target_network else q_next
        after = successor(q_next, q_next_target, epsilon, bits)
        discount = hp["gamma"] * (1.0 - out.terminated)
        grads = jax.grad(self._loss)(carry.params, carry.obs, carry.action, out.reward, discount,
                                     out.next_obs, after)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        t = carry.t + 1
        target_params = carry.target_params
        if self.target_network:
            target_params = hard_refresh(params, target_params, period_crossed(carry.t, t, hp["target_period"]))
        restart_action = epsilon_greedy_action(q_restart, epsilon, bits)
        return carry.replace(
            params=params, target_params=target_params, opt_state=opt_state,
            env_state=out.state, obs=out.obs,
            action=jnp.where(out.done, restart_action, after.action),
            t=t, episodes=carry.episodes.record(out.reward, out.terminated, out.truncated),
        )

    def q_table(self, params: Any, hp: HParams) -> jax.Array:
        """``[S, A]`` values of every state of a finite environment, from its observation table."""
        mdp = self.env.tabular(self.params_for(hp))
        return jax.vmap(lambda obs: self.q_function(params, obs))(mdp.features)

    def metrics(self, carry: ApproxCarry, hp: HParams) -> dict[str, jax.Array]:
        """With exact metrics: :func:`~jaxq.learners.exact_metrics.value_metrics` of the
        approximator's table."""
        if not self.exact_metrics:
            return {}
        mdp = self.env.tabular(self.params_for(hp))
        return value_metrics(mdp, self.q_table(carry.params, hp), carry.q_star, hp["gamma"],
                             bias=self.log_bias, policy_value=self.log_policy_value)

    def policy_values(self, carry: ApproxCarry, hp: HParams, obs: Any, env_state: Any) -> jax.Array:
        return self.q_function(carry.params, obs)
