"""Exact solutions of finite MDPs: value iteration paths, Q*, policy evaluation, projections."""

from jaxq.exact.dynamic_programming import (
    bellman_backup,
    greedy_policy,
    occupancy,
    policy_evaluation,
    policy_value,
    q_star,
    state_values,
    v_star,
    value_iteration,
)
from jaxq.exact.projection import project, projection_floor

__all__ = [
    "bellman_backup", "greedy_policy", "occupancy", "policy_evaluation", "policy_value", "project",
    "projection_floor", "q_star", "state_values", "v_star", "value_iteration",
]
