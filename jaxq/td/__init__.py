"""TD targets: ``target(reward, discount, successor) -> y`` (see :mod:`jaxq.td.targets`)."""

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

__all__ = [
    "Bootstrap", "TDTarget", "double_q_learning", "expected_sarsa", "n_step_return", "q_learning",
    "sarsa", "soft_q_learning",
]
