"""Learners: tabular TD control now; function approximation builds on the same loop.

``make_learner(name, env, env_params, steps=..., log_every=..., **options)`` creates one by name
(the names the CLI accepts with ``--learner``).
"""

from __future__ import annotations

from typing import Any

from jaxq.learners.base import HParam, OnlineLearner
from jaxq.learners.tabular import VARIANTS as TABULAR_VARIANTS
from jaxq.learners.tabular import TabularLearner
from jaxq.validation import check_choice

LEARNERS: dict[str, str] = {
    "q": "tabular Q-learning",
    "double_q": "tabular double Q-learning (two tables)",
    "sarsa": "tabular SARSA",
    "expected_sarsa": "tabular expected SARSA",
    "n_step_q": "tabular n-step Q-learning (--n-steps, default 3)",
}


def make_learner(name: str, env: Any, env_params: Any, **options: Any) -> OnlineLearner:
    """A learner by name, bound to ``env``; ``options`` are its static settings (steps, ...)."""
    check_choice("learner", name, LEARNERS)
    return TabularLearner(env, env_params, **{**TABULAR_VARIANTS[name], **options})


__all__ = ["HParam", "LEARNERS", "OnlineLearner", "TabularLearner", "make_learner"]
