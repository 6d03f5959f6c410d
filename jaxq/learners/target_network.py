"""Target networks: when and how the bootstrap copy follows the online parameters.

Time is counted in environment steps. Between steps ``t`` and ``t'`` (``t' - t`` may be any number
of env steps, e.g. one step of ``E`` parallel environments) a hard refresh fires when a multiple of
``period`` was crossed, ``floor(t' / period) > floor(t / period)``, so it keeps its own period
whatever the number of environments or the training frequency. A Polyak update moves the target
by ``tau`` towards the online parameters every time it is called:
``target <- tau * online + (1 - tau) * target`` (``tau = 1``: a copy).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def periods_crossed(t_before: jax.Array, t_after: jax.Array, period: jax.Array) -> jax.Array:
    """How many multiples of ``period`` (>= 1, rounded down to an integer) lie in ``(t_before, t_after]``,
    ``t_after // period - t_before // period``, in integers (exact at any step count)."""
    period = jnp.maximum(jnp.asarray(period).astype(jnp.int32), 1)
    return t_after // period - t_before // period


def period_crossed(t_before: jax.Array, t_after: jax.Array, period: jax.Array) -> jax.Array:
    """True when a multiple of ``period`` lies in ``(t_before, t_after]`` (see :func:`periods_crossed`)."""
    return periods_crossed(t_before, t_after, period) > 0


def hard_refresh(online: Any, target: Any, refresh: jax.Array) -> Any:
    """``online`` where ``refresh`` holds, else ``target`` (leaf by leaf, exact copies)."""
    return jax.tree.map(lambda new, old: jnp.where(refresh, new, old), online, target)


def polyak(online: Any, target: Any, tau: jax.Array, times: jax.Array) -> Any:
    """``times`` Polyak updates towards fixed ``online`` parameters, each
    ``target <- tau * online + (1 - tau) * target`` (``optax.incremental_update``'s weighting), in one:
    ``online + (1 - tau)^times (target - online)``; ``target`` itself, bit for bit, when ``times`` is 0
    (with ``tau = 1`` and ``times > 0``: an exact copy)."""
    keep = (1.0 - tau) ** times
    return jax.tree.map(lambda new, old: jnp.where(times > 0, new + keep * (old - new), old), online, target)
