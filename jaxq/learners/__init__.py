"""Learners by name: tabular TD control and Q-learning with linear or MLP function approximation.

``make_learner(name, env, env_params, steps=..., log_every=..., **options)`` creates one (these are
the names the CLI accepts with ``--learner``); the classes can also be used directly.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxq.learners.approx import (
    ApproxLearner,
    LinearQ,
    MLPQ,
    cosine_features,
    linear_q,
    num_parameters,
    one_hot_features,
)
from jaxq.learners.base import HParam, OnlineLearner
from jaxq.learners.tabular import VARIANTS as TABULAR_VARIANTS
from jaxq.learners.tabular import TabularLearner
from jaxq.validation import check_choice

FEATURES: dict[str, Callable[[Any], Any]] = {
    "cosine": lambda env: cosine_features(env.depths),
    "one_hot": one_hot_features,
}


def _tabular(variant: str) -> Callable[..., OnlineLearner]:
    return lambda env, params, **options: TabularLearner(env, params, **{**TABULAR_VARIANTS[variant], **options})


def _linear(env: Any, params: Any, features: str = "cosine", **options: Any) -> ApproxLearner:
    check_choice("features", features, FEATURES)
    if features == "cosine" and not hasattr(env, "depths"):
        raise ValueError(f"features='cosine' needs state depths (the Branching env); {env.name} has none")
    return ApproxLearner(env, params, q_function=linear_q(FEATURES[features](env), env, params), **options)


def _mlp(env: Any, params: Any, width: int = 64, layers: int = 1, activation: str = "relu",
         **options: Any) -> ApproxLearner:
    return ApproxLearner(env, params, q_function=MLPQ(env.num_actions, width, layers, activation), **options)


LEARNERS: dict[str, tuple[str, Callable[..., OnlineLearner]]] = {
    "q": ("tabular Q-learning", _tabular("q")),
    "double_q": ("tabular double Q-learning (two tables)", _tabular("double_q")),
    "sarsa": ("tabular SARSA", _tabular("sarsa")),
    "expected_sarsa": ("tabular expected SARSA", _tabular("expected_sarsa")),
    "n_step_q": ("tabular n-step Q-learning (n_steps, default 3)", _tabular("n_step_q")),
    "linear": ("linear Q-learning on a feature map (features: cosine, one_hot)", _linear),
    "mlp": ("MLP semi-gradient Q-learning (width, layers, activation; 257 parameters by default)", _mlp),
}


def make_learner(name: str, env: Any, env_params: Any, **options: Any) -> OnlineLearner:
    """A learner by name, bound to ``env``; ``options`` are its static settings (steps, ...)."""
    check_choice("learner", name, LEARNERS)
    return LEARNERS[name][1](env, env_params, **options)


__all__ = [
    "ApproxLearner", "FEATURES", "HParam", "LEARNERS", "LinearQ", "MLPQ", "OnlineLearner", "TabularLearner",
    "cosine_features", "linear_q", "make_learner", "num_parameters", "one_hot_features",
]
