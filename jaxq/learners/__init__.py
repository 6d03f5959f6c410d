"""Learners by name: tabular TD control and Q-learning with linear or MLP function approximation.

``make_learner(name, env, env_params, steps=..., log_every=..., **options)`` creates one (these are
the names the CLI accepts with ``--learner``); the classes can also be used directly. Each entry of
:data:`LEARNERS` declares its static options (:class:`Option`), which the command line offers, and
whether it needs a finite environment.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

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
from jaxq.learners.exploration import SCHEDULES
from jaxq.learners.tabular import STEP_SIZES, TabularLearner
from jaxq.validation import check_choice


@dataclasses.dataclass(frozen=True)
class Option:
    """A static option of a learner (it sets a shape, a loop or a code path, so it is not swept).

    ``kind`` is the Python type a command-line value is read as; ``choices`` the allowed values.
    """

    default: Any
    help: str
    kind: type = str
    choices: tuple[Any, ...] | None = None


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


def _tabular(target: str, **fixed: Any) -> Callable[..., OnlineLearner]:
    def build(env, params, **options):
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
    q_function = MLPQ(discrete_actions(env, params), width, layers, activation)
    return ApproxLearner(env, params, q_function=q_function, target=td.get(target), **options)


TABULAR_OPTIONS = {
    "step_size": Option("inverse_count", "constant (alpha), inverse_time 1/(t+1), inverse_count 1/(1+N(s,a))",
                        str, STEP_SIZES),
    **EXPLORATION,
    **CONTRACT_OPTIONS,
}


def _tabular_spec(description: str, target: str, n_steps: int = 1, **fixed: Any) -> LearnerSpec:
    options = {**TABULAR_OPTIONS, "n_steps": Option(n_steps, "n of the n-step return", int)}
    return LearnerSpec(description, _tabular(target, **fixed), options, finite_only=True)


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
}


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
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an option of learner {name!r}; its options: "
                         f"{', '.join(spec.options)}")
    defaults = {k: o.default for k, o in spec.options.items() if o.default is not None}
    return spec.build(env, env_params, steps=steps, log_every=log_every, **{**defaults, **options})


__all__ = [
    "ApproxLearner", "FEATURES", "HParam", "LEARNERS", "LearnerSpec", "LinearQ", "MLPQ", "OnlineLearner",
    "Option", "TabularLearner", "affine_features", "cosine_features", "learners_for", "linear_q",
    "make_learner", "num_parameters", "one_hot_features",
]
