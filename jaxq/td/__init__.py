"""TD targets: ``target(reward, discount, successor) -> y`` (see :mod:`jaxq.td.targets`).

:data:`TARGETS` is the one registry of TD variants by name; every learner takes a ``target`` (a
name from it, or your own function with the same signature) and the command line offers the names.
"""

from __future__ import annotations

from jaxq.td.targets import (
    Bootstrap,
    TDTarget,
    double_q_learning,
    expected_sarsa,
    n_step_return,
    q_learning,
    sarsa,
    soft_q_learning,
)
from jaxq.validation import check_choice

TARGETS: dict[str, tuple[TDTarget, str]] = {
    "q": (q_learning, "Q-learning: r + discount max_a Q_target(s', a)"),
    "double_q": (double_q_learning, "Double Q: r + discount Q_target(s', argmax_a Q_online(s', a))"),
    "sarsa": (sarsa, "SARSA: r + discount Q_target(s', a'), a' the behaviour's next action"),
    "expected_sarsa": (expected_sarsa, "expected SARSA: r + discount sum_a pi(a|s') Q_target(s', a)"),
    "soft_q": (soft_q_learning(0.1), "soft Q: r + discount tau logsumexp(Q_target(s', .) / tau), tau 0.1"),
}


def get(target: str | TDTarget) -> TDTarget:
    """The TD target called ``target`` in :data:`TARGETS`, or ``target`` itself if it is a function."""
    if callable(target):
        return target
    return TARGETS[check_choice("target", target, TARGETS)][0]


__all__ = [
    "Bootstrap", "TARGETS", "TDTarget", "double_q_learning", "expected_sarsa", "get", "n_step_return",
    "q_learning", "sarsa", "soft_q_learning",
]
