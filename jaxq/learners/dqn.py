"""DQN and Double DQN: one agent per lane, with its own replay buffer, optimiser and target network.

Each agent runs ``num_envs`` environments. Its loop, one *round* at a time:

1. ``train_freq`` vector steps: every environment acts epsilon-greedily on the online network and
   steps (auto-reset, terminated kept apart from truncated, the true final observation kept);
2. ONE batched write of the round's ``train_freq * num_envs`` transitions into the buffer;
3. the target network follows on its own period: for the ``k`` multiples of ``target_period`` env
   steps crossed in the round, ``theta' <- theta + (1 - tau)^k (theta' - theta)`` (``k`` Polyak
   updates with the online network fixed during collection; ``tau = 1`` is a hard copy);
4. once more than ``learning_starts`` env steps were taken, ``gradient_steps`` updates, each on a
   sampled batch: ``L = mean_i w_i huber(y_i - Q_theta(s_i, a_i))`` (or the squared error) with
   importance weights ``w_i`` from the buffer (1 for uniform replay), global-norm gradient
   clipping, then the sampled items' priorities from ``|y_i - Q_theta(s_i, a_i)|``.

The TD target comes from :mod:`jaxq.td` (default: ``double_q``,
``y = G + D Q_theta'(s', argmax_a Q_sel(s', a))``). Its selecting estimate is the online network
when the leaf ``double`` is 1 (Double DQN) and the target network when it is 0 (DQN:
``max_a Q_theta'``), so one sweep runs both. n-step returns are formed when a batch is sampled:
item ``i`` and the next ``n - 1`` transitions of the same environment (``num_envs`` slots apart in
the ring) give ``G = sum_{k<m} gamma^k r_k`` and ``D = gamma^m`` (0 if the episode terminated),
``m <= n`` cut at the episode's end or at the newest written transition.

Every numeric hyper-parameter is a pytree leaf (sweepable): ``gamma``, ``lr`` (Adam's learning
rate, ``optax.inject_hyperparams``), ``tau``, ``target_period``, ``double``, the epsilon schedule
(``epsilon`` -> ``epsilon_final`` linearly over the first ``epsilon_fraction`` of the run), the
buffer's own (PER ``alpha``, ``beta``, ...). Shapes and loop lengths are static: ``widths``,
``buffer_size``, ``batch_size``, ``num_envs``, ``train_freq``, ``gradient_steps``,
``learning_starts``, ``n_steps``.

Schedule decisions (collect, train, target period) read the global env step, which is derived from
the un-batched log index, so under ``vmap`` the training branch is a real branch, not a select.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxq import exact, td
from jaxq.envs.core import env_step
from jaxq.hparams import (
    HParam, HParams, gamma_hparam, positive_hparam, probability_hparam, range_hparam, switch_hparam,
)
from jaxq.learners.base import OnlineLearner
from jaxq.learners.episodes import EpisodeStats
from jaxq.learners.exact_metrics import value_metrics
from jaxq.learners.exploration import epsilon_at, epsilon_greedy_action, successor
from jaxq.learners.networks import ACTIVATIONS, QNetwork, check_network
from jaxq.learners.target_network import periods_crossed, polyak
from jaxq.replay import make as make_buffer
from jaxq.rng import counter_bits
from jaxq.validation import check_choice, check_count, check_positive

LOSSES = ("huber", "mse")
SAMPLE_STREAM, ACT_STREAM = 2, 1  # counter-based randomness streams (0: environment keys)


HYPERPARAMETERS: dict[str, HParam] = {
    "gamma": gamma_hparam(0.99),
    "lr": positive_hparam("lr", 1e-4, "Adam learning rate (> 0)"),
    "tau": range_hparam("tau", 1.0, "target update weight: target <- tau online + (1 - tau) target, in (0, 1] "
                        "(1: a hard copy)", 0.0, 1.0, low_open=True),
    "target_period": range_hparam("target_period", 1000.0, "env steps between target updates (>= 1)", 1.0),
    "double": switch_hparam("double", True, "Double DQN (1): the online network picks the bootstrap action; "
                            "0: the target network does (DQN)"),
    "epsilon": probability_hparam("epsilon", 1.0, "exploration rate at the start"),
    "epsilon_final": probability_hparam("epsilon_final", 0.05, "exploration rate after the decay"),
    "epsilon_fraction": range_hparam("epsilon_fraction", 0.1, "fraction of the run over which epsilon decays "
                                     "linearly, in (0, 1]", 0.0, 1.0, low_open=True),
}


@struct.dataclass
class Transition:
    """One environment step as stored: ``next_obs`` is the true successor, also after a truncation."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array


@struct.dataclass
class TrainStats:
    """Sums over the gradient steps since the last log point."""

    loss: jax.Array
    q: jax.Array
    updates: jax.Array

    @classmethod
    def zeros(cls) -> "TrainStats":
        return cls(jnp.float32(0.0), jnp.float32(0.0), jnp.int32(0))


@struct.dataclass
class DQNCarry:
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Any
    q_star: jax.Array  # [S, A] for exact metrics on a finite environment; () without them
    env_state: Any  # [E] environment states
    obs: jax.Array  # [E, ...]
    episode: jax.Array  # [E] int32 id of each environment's running episode (e, e + E, e + 2E, ...)
    key: jax.Array
    t: jax.Array  # env steps taken (all environments)
    updates: jax.Array  # gradient steps taken
    episodes: EpisodeStats  # [E]
    train: TrainStats


class DQNLearner(OnlineLearner):
    """DQN / Double DQN with replay (see the module docstring).

    Args:
        env, env_params, steps, log_every, eval_every, eval_episodes, exact_metrics: as for every
            learner (:class:`~jaxq.learners.base.OnlineLearner`); ``log_every`` is a multiple of
            ``train_freq * num_envs``. log_bias, log_policy_value: with exact metrics, also log the
            per-state bias and the greedy policy's value.
        widths, activation: the hidden layers of the default :class:`QNetwork`.
        network: any flax module ``obs -> [A]`` instead (checked against the observation).
        replay: buffer name from :data:`jaxq.replay.BUFFERS`; ``replay_options``: its static options
            (``streams``, for buffers that follow episodes, defaults to ``num_envs``).
        buffer_size, batch_size: replay capacity and batch (static).
        num_envs: environments per agent. train_freq: vector steps per round. gradient_steps:
            updates per round. learning_starts: env steps before the first update (>= batch_size).
        n_steps: length of the n-step return. loss: "huber" (delta 1) or "mse". max_grad_norm:
            global-norm clipping of the gradient (None: none). target: a :mod:`jaxq.td` target name or
            function. hparam_defaults: other defaults for the hyper-parameters (e.g. a preset's).
    """

    hyperparameters = HYPERPARAMETERS

    def __init__(self, env: Any, env_params: Any, steps: int, log_every: int, *,
                 widths: tuple[int, ...] = (64, 64), activation: str = "relu", network: nn.Module | None = None,
                 replay: str = "uniform", replay_options: dict[str, Any] | None = None,
                 buffer_size: int = 100_000, batch_size: int = 64, num_envs: int = 1, train_freq: int = 4,
                 gradient_steps: int = 1, learning_starts: int = 1000, n_steps: int = 1, loss: str = "huber",
                 max_grad_norm: float | None = 10.0, target: Any = "double_q",
                 hparam_defaults: dict[str, float] | None = None, eval_every: int | None = None,
                 eval_episodes: int = 10, exact_metrics: bool | None = None, log_bias: bool = True,
                 log_policy_value: bool = True):
        self.num_envs = check_count(num_envs, "num_envs")
        self.train_freq = check_count(train_freq, "train_freq")
        self.round_steps = self.num_envs * self.train_freq
        if check_count(log_every, "log_every") % self.round_steps:
            raise ValueError(f"log_every={log_every} is not a multiple of train_freq x num_envs = "
                             f"{self.round_steps} env steps (one round of collection)")
        super().__init__(env, env_params, steps, log_every, eval_every=eval_every, eval_episodes=eval_episodes,
                         exact_metrics=exact_metrics)
        self.log_bias, self.log_policy_value = log_bias, log_policy_value
        self.batch_size = check_count(batch_size, "batch_size")
        self.buffer_size = check_count(buffer_size, "buffer_size")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size={batch_size} is not allowed; it must be <= buffer_size={buffer_size}")
        self.learning_starts = check_count(learning_starts, "learning_starts", minimum=0)
        if self.learning_starts < self.batch_size:
            raise ValueError(f"learning_starts={learning_starts} is not allowed; learning starts once the buffer "
                             f"holds a batch, so it must be >= batch_size={batch_size}")
        self.gradient_steps = check_count(gradient_steps, "gradient_steps")
        self.n_steps = check_count(n_steps, "n_steps")
        if self.n_steps > 1 and (self.n_steps - 1) * self.num_envs >= self.buffer_size:
            raise ValueError(f"n_steps={n_steps} does not fit a buffer of {buffer_size} slots with {num_envs} envs")
        self.loss = check_choice("loss", loss, LOSSES)
        self.max_grad_norm = None if max_grad_norm is None else float(check_positive(max_grad_norm, "max_grad_norm"))
        self.target = td.get(target)
        self.replay_name = replay
        self.buffer = make_buffer(replay, capacity=self.buffer_size, **(replay_options or {}))
        if "streams" in {f.name for f in dataclasses.fields(self.buffer)} and "streams" not in (replay_options or {}):
            self.buffer = dataclasses.replace(self.buffer, streams=self.num_envs)  # items interleave the envs
        obs = jax.eval_shape(env.reset_env, jax.random.PRNGKey(0), env_params)[0]
        if network is None:
            self.widths = tuple(check_count(w, "widths") for w in widths)
            self.activation = check_choice("activation", activation, ACTIVATIONS)
            network = QNetwork(self.widths, self.num_actions, self.activation)
        else:
            self.widths, self.activation = None, None
        check_network(network, obs, self.num_actions)
        self.network = network
        self.optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
        self.hyperparameters = {**self.hyperparameters, **self.buffer.hyperparameters}
        for name, value in (hparam_defaults or {}).items():
            if name not in self.hyperparameters:
                raise ValueError(f"hparam_defaults has {name!r}, which is not a hyper-parameter of dqn")
            h = self.hyperparameters[name]
            self.hyperparameters[name] = dataclasses.replace(h, default=float(h.check(value)))
        self._env_names = self._env_hparam_names()

    def static_config(self) -> dict[str, Any]:
        return {
            "network": ({"widths": list(self.widths), "activation": self.activation} if self.widths is not None
                        else repr(self.network)),
            "replay": self.replay_name, "buffer_size": self.buffer_size, "batch_size": self.batch_size,
            "num_envs": self.num_envs, "train_freq": self.train_freq, "gradient_steps": self.gradient_steps,
            "learning_starts": self.learning_starts, "n_steps": self.n_steps, "loss": self.loss,
            "max_grad_norm": self.max_grad_norm, "target": getattr(self.target, "__name__", repr(self.target)),
        }

    # -- set-up -------------------------------------------------------------------------------------
    def q_values(self, params: Any, obs: jax.Array) -> jax.Array:
        return self.network.apply(params, obs)

    def init(self, key: jax.Array, hp: HParams) -> DQNCarry:
        env_params = self.params_for(hp)
        key, init_key, reset_key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset_env, in_axes=(0, None))(
            jax.random.split(reset_key, self.num_envs), env_params)
        params = self.network.init(init_key, obs[0])
        opt_state = self.optimizer.init(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(hp["lr"], jnp.float32)
        example = Transition(obs=obs[0], action=jnp.int32(0), reward=jnp.float32(0.0), terminated=jnp.bool_(False),
                             truncated=jnp.bool_(False), next_obs=obs[0])
        return DQNCarry(
            params=params, target_params=params, opt_state=opt_state, buffer=self.buffer.init(example),
            q_star=exact.q_star(self.env.tabular(env_params), hp["gamma"]) if self.exact_metrics else (),
            env_state=env_state, obs=obs, episode=jnp.arange(self.num_envs, dtype=jnp.int32), key=key,
            t=jnp.int32(0), updates=jnp.int32(0), episodes=EpisodeStats.zeros((self.num_envs,)),
            train=TrainStats.zeros(),
        )

    # -- the loop -----------------------------------------------------------------------------------
    def epsilon(self, t: jax.Array, hp: HParams) -> jax.Array:
        """``epsilon + (epsilon_final - epsilon) min(1, t / (epsilon_fraction * steps))``."""
        return epsilon_at(t, {**hp, "epsilon_decay_steps": hp["epsilon_fraction"] * self.steps}, "linear")

    def collect(self, carry: DQNCarry, hp: HParams) -> tuple[DQNCarry, tuple[Transition, jax.Array, jax.Array]]:
        """One vector step: every environment acts and steps; returns the transitions, their episode
        ids and whether each ended its episode."""
        env_params = self.params_for(hp)
        ids = carry.t + jnp.arange(self.num_envs, dtype=jnp.int32)  # one counter per env step
        bits = jax.vmap(lambda i: counter_bits(carry.key, i, ACT_STREAM))(ids)
        env_keys = jax.vmap(lambda i: counter_bits(carry.key, i, 0))(ids)
        q = jax.vmap(self.q_values, in_axes=(None, 0))(carry.params, carry.obs)
        action = jax.vmap(epsilon_greedy_action, in_axes=(0, None, 0))(q, self.epsilon(carry.t, hp), bits)
        out = jax.vmap(env_step, in_axes=(None, 0, 0, 0, None))(self.env, env_keys, carry.env_state, action,
                                                                 env_params)
        item = Transition(obs=carry.obs, action=action, reward=out.reward, terminated=out.terminated,
                          truncated=out.truncated, next_obs=out.next_obs)
        episode = carry.episode
        carry = carry.replace(
            env_state=out.state, obs=out.obs, t=carry.t + self.num_envs,
            episode=jnp.where(out.done, episode + self.num_envs, episode),
            episodes=carry.episodes.record(out.reward, out.terminated, out.truncated),
        )
        return carry, (item, episode, out.done)

    def advance(self, carry: DQNCarry, hp: HParams, index: jax.Array) -> DQNCarry:
        """The rounds up to log point ``index`` (see the module docstring)."""
        rounds = self.steps_per_log // self.round_steps

        def one_round(c: DQNCarry, r: jax.Array) -> tuple[DQNCarry, None]:
            t_end = (index - 1) * self.steps_per_log + (r + 1) * self.round_steps  # the same in every lane
            c, (items, episode, last) = jax.lax.scan(lambda c, _: self.collect(c, hp), c, None,
                                                     length=self.train_freq)
            flat = lambda x: x.reshape(self.round_steps, *x.shape[2:])  # noqa: E731  (step-major, env-minor)
            buffer = self.buffer.add(c.buffer, jax.tree.map(flat, items), flat(episode), flat(last), hp)
            c = c.replace(buffer=buffer, target_params=self.follow(c, hp, t_end - self.round_steps, t_end))
            c = jax.lax.cond(t_end > self.learning_starts, lambda c: self.train(c, hp, t_end), lambda c: c, c)
            return c, None

        return jax.lax.scan(one_round, carry, jnp.arange(rounds, dtype=jnp.int32))[0]

    def follow(self, carry: DQNCarry, hp: HParams, t_start: jax.Array, t_end: jax.Array) -> Any:
        """The target parameters after the target updates due in ``(t_start, t_end]``."""
        times = periods_crossed(t_start, t_end, hp["target_period"])
        return polyak(carry.params, carry.target_params, hp["tau"], times)

    def train(self, carry: DQNCarry, hp: HParams, t_end: jax.Array) -> DQNCarry:
        """``gradient_steps`` updates on sampled batches."""
        progress = jnp.minimum(t_end / self.steps, 1.0).astype(jnp.float32)

        def update(c: DQNCarry, _) -> tuple[DQNCarry, None]:
            sample_key = counter_bits(c.key, c.updates, SAMPLE_STREAM)
            sample = self.buffer.sample(c.buffer, sample_key, self.batch_size, hp, progress)
            batch = self.n_step_batch(c.buffer, sample.indices, sample.experience, hp["gamma"])
            bits = counter_bits(c.key, c.updates, SAMPLE_STREAM + 1)
            (loss, (td_error, q_mean)), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(
                c.params, c.target_params, batch, sample.weights, hp, self.epsilon(c.t, hp), bits)
            if self.max_grad_norm is not None:
                norm = optax.tree.norm(grads)
                grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, self.max_grad_norm / (norm + 1e-12)), grads)
            updates, opt_state = self.optimizer.update(grads, c.opt_state, c.params)
            buffer = self.buffer.set_priorities(c.buffer, sample.indices, td_error, hp, progress)
            stats = TrainStats(c.train.loss + loss, c.train.q + q_mean, c.train.updates + 1)
            return c.replace(params=optax.apply_updates(c.params, updates), opt_state=opt_state, buffer=buffer,
                             updates=c.updates + 1, train=stats), None

        return jax.lax.scan(update, carry, None, length=self.gradient_steps)[0]

    def n_step_batch(self, buffer_state: Any, indices: jax.Array, first: Transition,
                     gamma: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(obs, action, G, D, bootstrap_obs)`` of each sampled item: the n-step return of the item and
        the next ``n - 1`` transitions of its environment, cut at its episode's end and at the newest
        transition written (see the module docstring)."""
        reward = first.reward
        discount = gamma * (1.0 - first.terminated)
        ended = jnp.logical_or(first.terminated, first.truncated)
        bootstrap = first.next_obs
        if self.n_steps > 1:
            newer = self.buffer.newer(buffer_state, indices)  # transitions written after each item
            power = gamma
            for k in range(1, self.n_steps):
                step = self.buffer.read(buffer_state, (indices + k * self.num_envs) % self.buffer_size)
                use = jnp.logical_and(~ended, newer >= k * self.num_envs)
                reward = reward + jnp.where(use, power * step.reward, 0.0)
                discount = jnp.where(use, power * gamma * (1.0 - step.terminated), discount)
                bootstrap = jax.tree.map(lambda new, old: jnp.where(use.reshape(-1, *(1,) * (new.ndim - 1)), new, old),
                                         step.next_obs, bootstrap)
                ended = jnp.logical_or(ended, jnp.logical_and(use, jnp.logical_or(step.terminated, step.truncated)))
                power = power * gamma
        return first.obs, first.action, reward, discount, bootstrap

    def loss_fn(self, params: Any, target_params: Any, batch: tuple, weights: jax.Array, hp: HParams,
                epsilon: jax.Array, bits: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """``mean_i w_i l(y_i - Q_params(s_i, a_i))`` and, as auxiliaries, the TD errors and mean Q."""
        obs, action, reward, discount, bootstrap = batch
        q_all = jax.vmap(self.q_values, in_axes=(None, 0))
        q = jnp.take_along_axis(q_all(params, obs), action[:, None], axis=1)[:, 0]
        q_next_target = q_all(target_params, bootstrap)
        q_next_online = jax.lax.stop_gradient(q_all(params, bootstrap))
        select = jnp.where(hp["double"] > 0.5, q_next_online, q_next_target)
        words = jax.vmap(lambda i: counter_bits(bits, i, 0))(jnp.arange(action.shape[0], dtype=jnp.int32))
        after = jax.vmap(successor, in_axes=(0, 0, None, 0))(select, q_next_target, epsilon, words)
        y = jax.lax.stop_gradient(jax.vmap(self.target)(reward, discount, after))
        error = y - q
        per_item = optax.huber_loss(error, delta=1.0) if self.loss == "huber" else 0.5 * error**2
        return jnp.mean(weights * per_item), (error, jnp.mean(q))

    # -- logs ---------------------------------------------------------------------------------------
    def metrics(self, carry: DQNCarry, hp: HParams) -> dict[str, jax.Array]:
        """``loss``, ``q_mean`` (means over the interval's updates, NaN before learning starts), the
        current ``epsilon`` and, with exact metrics, :func:`~jaxq.learners.exact_metrics.value_metrics`
        of the network's table."""
        n = carry.train.updates
        mean = lambda total: jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan).astype(jnp.float32)  # noqa: E731
        logs = {"loss": mean(carry.train.loss), "q_mean": mean(carry.train.q),
                "epsilon": self.epsilon(carry.t, hp).astype(jnp.float32)}
        if self.exact_metrics:
            mdp = self.env.tabular(self.params_for(hp))
            table = jax.vmap(lambda obs: self.q_values(carry.params, obs))(mdp.features)
            logs.update(value_metrics(mdp, table, carry.q_star, hp["gamma"], bias=self.log_bias,
                                      policy_value=self.log_policy_value))
        return logs

    def next_interval(self, carry: DQNCarry) -> DQNCarry:
        return super().next_interval(carry).replace(train=TrainStats.zeros())

    def policy_values(self, carry: DQNCarry, hp: HParams, obs: Any, env_state: Any) -> jax.Array:
        return self.q_values(carry.params, obs)

    def export(self, carry: DQNCarry) -> Any:
        """What a finished lane hands back: its online network's parameters."""
        return carry.params


def greedy_returns(learner: DQNLearner, params: Any, hp: HParams, key: jax.Array, episodes: int) -> jax.Array:
    """Mean return of ``episodes`` greedy episodes (``eval_epsilon`` from ``hp``) of one lane's network
    ``params`` on fresh evaluation env states (vmap over lanes for many)."""
    values = lambda obs, state: learner.q_values(params, obs)  # noqa: E731
    return learner.evaluate_policy(values, hp, key, episodes)["eval_return"]


# Tuned defaults of `jaxq train dqn ENV` per environment: the learner's options, its hyper-parameters,
# the run length and the return at which the task counts as solved.
PRESETS: dict[str, dict[str, Any]] = {
    # rl-baselines3-zoo's CartPole-v1 DQN (lr 2.3e-3, copies every 10 steps, 128 updates every 256 steps)
    # with rounds of 250 steps (so that 5 x 10^4 steps are whole rounds), 128 units, Double DQN
    "CartPole-v1": {
        "options": {"widths": (128, 128), "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
                    "train_freq": 250, "gradient_steps": 125, "eval_every": 2500, "eval_episodes": 10,
                    "hparam_defaults": {"lr": 2.3e-3, "gamma": 0.99, "target_period": 10, "tau": 1.0,
                                        "epsilon": 1.0, "epsilon_final": 0.04, "epsilon_fraction": 0.16}},
        "steps": 50_000,
        "solved": 475.0,
    },
    # Double DQN with 3-step returns, two updates of 128 transitions every 4 steps, a copy every 500
    "LunarLander-v3": {
        "options": {"widths": (128, 128), "batch_size": 128, "buffer_size": 100_000, "learning_starts": 10_000,
                    "train_freq": 4, "gradient_steps": 2, "n_steps": 3, "eval_every": 10_000, "eval_episodes": 10,
                    "hparam_defaults": {"lr": 3e-4, "gamma": 0.99, "target_period": 500, "tau": 1.0,
                                        "epsilon": 1.0, "epsilon_final": 0.05, "epsilon_fraction": 0.12}},
        "steps": 300_000,
        "solved": 200.0,
    },
}
