"""Sweepable hyper-parameters: a default, a validating check and a line of documentation.

Learners and replay buffers declare their numeric settings as ``name -> HParam``; ``jaxq.sweep``
turns any of them into a ``vmap``-ed axis. Every value passes ``check`` in Python before anything is
compiled, so a bad value is a ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from jaxq.validation import check_gamma, check_probability, check_range

HParams = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class HParam:
    """A sweepable hyper-parameter: its default and a check ``value -> value`` raising ValueError.

    ``flag``: the value a bare command-line flag stands for (``--double`` alone is ``double=1``),
    for on/off switches; None for hyper-parameters that always take values.
    """

    default: float
    check: Callable[[Any], Any]
    doc: str
    flag: float | None = None


def switch_hparam(name: str, default: bool, doc: str) -> HParam:
    """An on/off switch as a leaf: 0 or 1 (False or True), swept like any number."""
    def check(value: Any) -> float:
        if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)) and value in (0, 1):
            return float(value)
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be 0 or 1 (false or true)")
    return HParam(float(default), check, doc, flag=1.0)


def gamma_hparam(default: float = 0.9) -> HParam:
    return HParam(default, lambda v: check_gamma(v), "discount factor, in [0, 1)")


def probability_hparam(name: str, default: float, doc: str) -> HParam:
    return HParam(default, lambda v: check_probability(v, name), doc)


def positive_hparam(name: str, default: float, doc: str, high: float | None = None) -> HParam:
    return HParam(default, lambda v: check_range(name, v, 0.0, high, low_open=True), doc)


def real_hparam(name: str, default: float, doc: str) -> HParam:
    return HParam(default, lambda v: check_range(name, v), doc)


def range_hparam(name: str, default: float, doc: str, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> HParam:
    """A number in an interval, e.g. ``range_hparam("beta", 0.4, "...", 0.0, 1.0)`` for ``[0, 1]``."""
    return HParam(default, lambda v: check_range(name, v, low, high, low_open=low_open, high_open=high_open), doc)
