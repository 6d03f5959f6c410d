"""Learners by name: tabular TD control and Q-learning with linear or MLP function approximation.

``make_learner(name, env, env_params, steps=..., log_every=..., **options)`` creates one (these are
the names the CLI accepts with ``--learner``); the classes can also be used directly. Each entry of
:data:`LEARNERS` declares its static options (:class:`Option`), which the command line offers, and
whether it needs a finite environment.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax

from jaxq import td
from jaxq.envs.core import FiniteEnv
from jaxq.hparams import HParam
from jaxq.learners.approx import (
    GRADIENTS,
    OPTIMIZERS,
    ACTIVATIONS,
    ApproxLearner,
    LinearQ,
    MLPQ,
    affine_features,
    cosine_features,
    linear_q,
    num_parameters,
    one_hot_features,
)
from jaxq.learners.base import OnlineLearner, discrete_actions
from jaxq.learners.dqn import LOSSES, DQNLearner
from jaxq.learners.exploration import SCHEDULES
from jaxq.learners.tabular import STEP_SIZES, TabularLearner
from jaxq.replay import BUFFERS
from jaxq.validation import check_choice, key_values


@dataclasses.dataclass(frozen=True)
class Option:
    """A static option of a learner (it sets a shape, a loop or a code path, so it is not swept).

    ``kind`` reads a command-line value (a type or a parser); ``choices`` the allowed values;
    ``cli=False`` for options only Python can give (functions, dicts).
    """

    default: Any
    help: str
    kind: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    cli: bool = True


def _replay_options(text: str) -> dict[str, Any]:
    """``--replay-options rerank_every=500,weights=memory`` as a dict."""
    return key_values(text.split(","), "--replay-options")


CONTRACT_OPTIONS = {
    "eval_every": Option(None, "env steps between greedy evaluations, a multiple of the log interval; 0: none "
                         "(default: about 10 per run; none on finite envs, whose exact metrics include the "
                         "greedy policy's value)", int),
    "eval_episodes": Option(10, "greedy episodes per evaluation and seed", int),
    "exact_metrics": Option(None, "log ||Q - Q*|| and per-state bias (finite environments only; default on there)", bool),
    "log_bias": Option(True, "with exact metrics: log the per-state bias Q(s, a*) - Q*(s, a*)", bool),
    "log_policy_value": Option(True, "with exact metrics: log the greedy policy's exact value", bool),
}
EXPLORATION = {"exploration": Option("constant", "epsilon schedule: constant, or linear from epsilon to "
                                     "epsilon_final over epsilon_decay_steps", str, SCHEDULES)}
TARGET = {"target": Option("q", "TD target: " + "; ".join(f"{k}: {v[1]}" for k, v in td.TARGETS.items()),
                           str, tuple(td.TARGETS))}
APPROX_OPTIONS = {
    **TARGET,
    "gradient": Option("semi", "semi: semi-gradient TD; full: residual gradient through the bootstrap", str, GRADIENTS),
    "optimizer": Option("sgd", "optimiser, with the learning rate alpha", str, tuple(OPTIMIZERS)),
    "target_network": Option(False, "bootstrap from a copy refreshed every target_period steps", bool),
    **EXPLORATION,
}
FEATURES = ("auto", "cosine", "one_hot", "affine")


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """A learner of the registry: what it is, how to build it, its static options and whether it
    needs a finite environment (a tabular model)."""

    description: str
    build: Callable[..., OnlineLearner]
    options: dict[str, Option]
    finite_only: bool = False
    step_unit: Callable[[dict[str, Any]], int] = lambda options: 1  # env steps per indivisible piece of the loop


def _tabular(**fixed: Any) -> Callable[..., OnlineLearner]:
    def build(env, params, *, target: Any, **options):
        return TabularLearner(env, params, target=td.get(target), **fixed, **options)
    return build


def _feature_map(env: Any, params: Any, features: str) -> Callable[[Any, Any], Any]:
    check_choice("features", features, FEATURES)
    if features == "auto":
        features = "cosine" if hasattr(env, "depths") else ("one_hot" if isinstance(env, FiniteEnv) else "affine")
    if features == "cosine" and not hasattr(env, "depths"):
        raise ValueError(f"features='cosine' needs state depths (the Branching env); {env.name} has none")
    if features == "one_hot" and not isinstance(env, FiniteEnv):
        raise ValueError(f"features='one_hot' needs a finite environment; {env.name} is not one (try 'affine')")
    return {"cosine": lambda: cosine_features(env.depths), "one_hot": lambda: one_hot_features(env),
            "affine": lambda: affine_features(discrete_actions(env, params))}[features]()


def _linear(env: Any, params: Any, *, features: str, target: Any, **options: Any) -> ApproxLearner:
    q_function = linear_q(_feature_map(env, params, features), env, params)
    return ApproxLearner(env, params, q_function=q_function, target=td.get(target), **options)


def _mlp(env: Any, params: Any, *, width: int, layers: int, activation: str, target: Any,
         **options: Any) -> ApproxLearner:
    obs = jax.eval_shape(env.reset_env, jax.random.PRNGKey(0), params)[0]
    if len(obs.shape) != 1:
        raise ValueError(f"learner 'mlp' reads a flat observation vector; {env.name}'s observation has shape "
                         f"{tuple(obs.shape)} (learner 'dqn' takes a network of your own)")
    q_function = MLPQ(discrete_actions(env, params), width, layers, activation)
    return ApproxLearner(env, params, q_function=q_function, target=td.get(target), **options)


TABULAR_OPTIONS = {
    "step_size": Option("inverse_count", "constant (alpha), inverse_time 1/(t+1), inverse_count 1/(1+N(s,a))",
                        str, STEP_SIZES),
    **EXPLORATION,
    **CONTRACT_OPTIONS,
}


def _tabular_spec(description: str, target: str, n_steps: int = 1, **fixed: Any) -> LearnerSpec:
    options = {"target": dataclasses.replace(TARGET["target"], default=target), **TABULAR_OPTIONS,
               "n_steps": Option(n_steps, "n of the n-step return", int)}
    return LearnerSpec(description, _tabular(**fixed), options, finite_only=True)


def widths(text: str | tuple[int, ...]) -> tuple[int, ...]:
    """Hidden layer widths from the command line: ``"256,256"`` -> ``(256, 256)``."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(int(w) for w in str(text).split(","))
    except ValueError:
        raise ValueError(f"widths={text!r} is not allowed; give positive integers separated by commas, "
                         "e.g. 256,256") from None


_DQN = {name: p.default for name, p in inspect.signature(DQNLearner).parameters.items()}  # its own defaults
DQN_OPTIONS = {
    "widths": Option(_DQN["widths"], "hidden layer widths of the Q-network, e.g. 256,256", widths),
    "activation": Option(_DQN["activation"], "hidden activation", str, tuple(ACTIVATIONS)),
    "replay": Option(_DQN["replay"], "replay buffer: " + "; ".join(f"{k}: {v}" for k, v in BUFFERS.items()), str,
                     tuple(BUFFERS)),
    "buffer_size": Option(_DQN["buffer_size"], "replay capacity per agent (transitions)", int),
    "batch_size": Option(_DQN["batch_size"], "transitions per gradient step", int),
    "num_envs": Option(_DQN["num_envs"], "environments per agent, stepped together", int),
    "train_freq": Option(_DQN["train_freq"], "vector steps between rounds of gradient steps", int),
    "gradient_steps": Option(_DQN["gradient_steps"], "gradient steps per round", int),
    "learning_starts": Option(_DQN["learning_starts"], "env steps before the first update (>= batch_size)", int),
    "n_steps": Option(_DQN["n_steps"], "n of the n-step return", int),
    "loss": Option(_DQN["loss"], "huber (delta 1) or mse", str, LOSSES),
    "max_grad_norm": Option(_DQN["max_grad_norm"], "global-norm gradient clipping", float),
    "target": dataclasses.replace(TARGET["target"], default=_DQN["target"]),
    **CONTRACT_OPTIONS,
    "hparam_defaults": Option(None, "other defaults of the hyper-parameters, e.g. a preset's", dict, cli=False),
    "replay_options": Option(None, "static options of the replay buffer as KEY=VALUE[,KEY=VALUE], e.g. "
                             "rerank_every=500 (per-rank), weights=memory", _replay_options),
    "network": Option(None, "a flax module obs -> [A] instead of the MLP of `widths`", object, cli=False),
}


LEARNERS: dict[str, LearnerSpec] = {
    "q": _tabular_spec("tabular Q-learning", "q"),
    "double_q": _tabular_spec("tabular double Q-learning (two tables)", "double_q", estimators=2),
    "sarsa": _tabular_spec("tabular SARSA", "sarsa"),
    "expected_sarsa": _tabular_spec("tabular expected SARSA", "expected_sarsa"),
    "n_step_q": _tabular_spec("tabular n-step Q-learning", "q", n_steps=3),
    "linear": LearnerSpec(
        "linear Q-learning on a feature map (cosine: Branching's 3 features; one_hot: a table; affine: "
        "one affine function of the observation per action)", _linear,
        {"features": Option("auto", "feature map (auto: cosine on Branching, one_hot on other finite envs, "
                            "affine elsewhere)", str, FEATURES), **APPROX_OPTIONS, **CONTRACT_OPTIONS}),
    "mlp": LearnerSpec(
        "MLP semi-gradient Q-learning, one transition a step (257 parameters by default on 1-feature "
        "observations)", _mlp,
        {"width": Option(64, "hidden units per layer", int), "layers": Option(1, "hidden layers", int),
         "activation": Option("relu", "hidden activation", str, tuple(ACTIVATIONS)),
         **APPROX_OPTIONS, **CONTRACT_OPTIONS}),
    "dqn": LearnerSpec(
        "DQN / Double DQN (the leaf `double`) with replay, a target network and Adam; many envs per agent",
        DQNLearner, DQN_OPTIONS, step_unit=lambda options: options["train_freq"] * options["num_envs"]),
}


def learner_options(name: str, **given: Any) -> dict[str, Any]:
    """Learner ``name``'s options: its defaults (those that are not None) overridden by ``given``.

    Raises:
        ValueError: for an unknown learner or an option it does not have (naming the ones it has).
    """
    check_choice("learner", name, LEARNERS)
    spec = LEARNERS[name]
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an option of learner {name!r}; its options: "
                         f"{', '.join(k for k, o in spec.options.items() if o.cli)}")
    return {**{k: o.default for k, o in spec.options.items() if o.default is not None}, **given}


def learners_for(env: Any) -> list[str]:
    """The learner names that run on ``env``."""
    finite = isinstance(env, FiniteEnv)
    return [name for name, spec in LEARNERS.items() if finite or not spec.finite_only]


def make_learner(name: str, env: Any, env_params: Any, *, steps: int, log_every: int,
                 **options: Any) -> OnlineLearner:
    """A learner by name, bound to ``env``; ``options`` are its static settings (see its
    :class:`LearnerSpec`'s ``options``).

    Raises:
        ValueError: for an unknown learner, a learner that cannot run on ``env`` (naming the ones that
            can), or an option the learner does not have (naming the ones it has).
    """
    check_choice("learner", name, LEARNERS)
    spec = LEARNERS[name]
    if spec.finite_only and not isinstance(env, FiniteEnv):
        raise ValueError(f"learner={name!r} needs a finite environment with a tabular model; {env.name} is "
                         f"not one. Learners for {env.name}: {', '.join(learners_for(env))}")
    return spec.build(env, env_params, steps=steps, log_every=log_every, **learner_options(name, **options))


__all__ = [
    "ApproxLearner", "DQNLearner", "FEATURES", "HParam", "LEARNERS", "LearnerSpec", "LinearQ", "MLPQ", "OnlineLearner",
    "Option", "TabularLearner", "affine_features", "cosine_features", "learner_options", "learners_for", "linear_q",
    "make_learner", "num_parameters", "one_hot_features",
]
