"""A pure-JAX port of Gymnasium's LunarLander-v3 (Box2D), vmappable over thousands of episodes.

``make_discrete(**overrides)`` / ``make_continuous(**overrides)`` return ``(env, params)`` with
every override validated before anything is compiled. The physics keeps the hull and both legs in
reduced coordinates and solves their velocities as Box2D does (its warm-started sequential
impulses near the ground, the exact converged solve in flight); see :mod:`.physics`. The parity
harness against the real environment lives in :mod:`.parity` (it needs the optional
``gymnasium[box2d]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxq.envs.lunar_lander.env import (
    EnvParams,
    EnvState,
    LunarLander,
    body_poses,
    engine_flags,
    observation,
    state_from_bodies,
    terrain_heights,
    transition,
)
from jaxq.validation import check_count, check_range

# name -> (low, high, low_open, high_open) for the numeric parameters
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "gravity": (-12.0, 0.0, True, True),
    "wind_power": (0.0, 20.0, False, False),
    "turbulence_power": (0.0, 2.0, False, False),
    "main_engine_power": (0.0, None, False, False),
    "side_engine_power": (0.0, None, False, False),
    "initial_random": (0.0, None, False, False),
    "leg_motor_torque": (0.0, None, True, False),
    "leg_friction": (0.0, None, False, False),
    "terrain_friction": (0.0, None, False, False),
}
_COUNTS = ("max_steps_in_episode", "velocity_iterations", "position_iterations")


def make_params(**overrides: Any) -> EnvParams:
    """Default :class:`EnvParams` with ``overrides`` applied, each checked.

    Raises:
        ValueError: for an unknown name, or a value outside its range (naming both): gravity in
            ``(-12, 0)``, wind_power in ``[0, 20]``, turbulence_power in ``[0, 2]``, powers, forces
            and frictions ``>= 0``, motor torque ``> 0``, iteration counts and the time limit
            positive integers, enable_wind a bool.
    """
    fields = {f.name for f in dataclasses.fields(EnvParams)}
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            choices = ", ".join(sorted(fields))
            raise ValueError(f"{name}={value!r} is not a LunarLander parameter; choose from: {choices}")
        if name == "enable_wind":
            if not isinstance(value, bool):
                raise ValueError(f"enable_wind={value!r} is not allowed; enable_wind must be True or False")
            values[name] = value
        elif name in _COUNTS:
            values[name] = check_count(value, name)
        else:
            low, high, low_open, high_open = _RANGES[name]
            check_range(name, value, low, high, low_open=low_open, high_open=high_open)
            values[name] = float(value)
    return EnvParams(**values)


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
