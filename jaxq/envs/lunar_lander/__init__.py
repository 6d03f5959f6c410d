"""A pure-JAX port of Gymnasium's LunarLander-v3 (Box2D), vmappable over thousands of episodes.

``make_discrete(**overrides)`` / ``make_continuous(**overrides)`` return ``(env, params)`` with
every override validated (:func:`make_params`, also ``env.make_params``) before anything is
compiled. The physics keeps the hull and both legs in reduced coordinates and solves their
velocities as Box2D does (its warm-started sequential impulses near the ground, the exact converged
solve in flight); see :mod:`.physics`. The parity harness against the real environment lives in
:mod:`.parity` (it needs the optional ``gymnasium[box2d]``).
"""

from __future__ import annotations

from typing import Any

from jaxq.envs.lunar_lander.env import (
    EnvParams,
    EnvState,
    LunarLander,
    body_poses,
    engine_flags,
    make_params,
    observation,
    state_from_bodies,
    terrain_heights,
    transition,
)


def make_discrete(**overrides: Any) -> tuple[LunarLander, EnvParams]:
    """``LunarLander-v3``: four discrete actions (no-op, left engine, main engine, right engine)."""
    return LunarLander(continuous=False), make_params(**overrides)


def make_continuous(**overrides: Any) -> tuple[LunarLander, EnvParams]:
    """``LunarLanderContinuous-v3``: actions in ``[-1, 1]^2`` (main throttle, side engine)."""
    return LunarLander(continuous=True), make_params(**overrides)


__all__ = [
    "EnvParams",
    "EnvState",
    "LunarLander",
    "body_poses",
    "engine_flags",
    "make_continuous",
    "make_discrete",
    "make_params",
    "observation",
    "state_from_bodies",
    "terrain_heights",
    "transition",
]
