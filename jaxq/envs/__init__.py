"""Environments: gymnax ``Environment`` subclasses, created by name with :func:`make`.

``make(name, **kwargs)`` returns ``(env, params)`` exactly like ``gymnax.make``. jaxq's own
environments are looked up case-insensitively; any other name is passed to gymnax, so every gymnax
environment ("CartPole-v1", "Breakout-MinAtar", ...) works with jaxq's learners.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import gymnax

from jaxq.envs.core import EnvStep, FiniteEnv, env_step, make_params
from jaxq.validation import did_you_mean

# name -> "module:factory"; imported lazily so that `import jaxq` stays cheap.
_REGISTRY: dict[str, str] = {
    "Chain": "jaxq.envs.chain:make_chain",
    "Branching": "jaxq.envs.branching:make_branching",
    "GridWorld": "jaxq.envs.gridworld:make_gridworld",
    "LunarLander-v3": "jaxq.envs.lunar_lander:make_discrete",
    "LunarLanderContinuous-v3": "jaxq.envs.lunar_lander:make_continuous",
}


def register(name: str, factory: str | Callable[..., tuple[Any, Any]]) -> None:
    """Register ``factory(**kwargs) -> (env, params)`` under ``name`` (a callable or "module:attr")."""
    if _lookup(name) is not None:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = factory  # type: ignore[assignment]


def registered() -> list[str]:
    """jaxq's own environment names followed by every gymnax id."""
    return list(_REGISTRY) + [n for n in gymnax.registered_envs if n not in _REGISTRY]


def _lookup(name: str) -> str | None:
    for key in _REGISTRY:
        if key.lower() == name.lower():
            return key
    return None


def _resolve(factory: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(factory):
        return factory
    module, attr = factory.split(":")
    return getattr(importlib.import_module(module), attr)


def make(name: str, **kwargs: Any) -> tuple[Any, Any]:
    """Create an environment and its default (or overridden) parameters.

    Args:
        name: a jaxq environment ("Chain", "Branching", "GridWorld", "LunarLander-v3",
            "LunarLanderContinuous-v3"; case-insensitive) or any gymnax id.
        **kwargs: environment options, e.g. ``depth=8`` for Chain. Shape-setting options
            (``max_depth``, a GridWorld ``layout``) configure the env; numeric options become
            fields of the returned params, so they can later be swept with ``vmap``.

    Raises:
        ValueError: for an unknown name or an option outside its allowed range.
    """
    key = _lookup(name)
    if key is not None:
        return _resolve(_REGISTRY[key])(**kwargs)
    if name in gymnax.registered_envs:
        return gymnax.make(name, **kwargs)
    raise ValueError(f"env={name!r} is not a known environment{did_you_mean(name, registered())}; "
                     f"choose one of: {', '.join(registered())}")


__all__ = ["EnvStep", "FiniteEnv", "env_step", "make", "make_params", "register", "registered"]
