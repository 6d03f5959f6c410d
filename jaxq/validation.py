"""Argument checks that run in Python, before anything is traced or compiled.

Every public entry point (``jaxq.make``, learner configs, ``jaxq.sweep``, the CLI) validates its
inputs with these helpers so that a bad value fails with a ``ValueError`` that names the argument,
the offending value and what is allowed, instead of a NaN or an XLA trace later on.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Check that every element of ``value`` is a finite number in the given interval.

    ``value`` may be a scalar or any array-like (a sweep axis). Returns it as a NumPy array.

    Raises:
        ValueError: naming ``name``, the first offending element and the allowed interval.
    """
    kind = "an integer" if integer else "a number"
    allowed = f"{name} must be {kind} in {_interval(low, high, low_open, high_open)}"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not numeric; {allowed}") from None
    for v in arr.reshape(-1):
        bad = (
            not math.isfinite(v)
            or (integer and v != round(v))
            or (low is not None and (v <= low if low_open else v < low))
            or (high is not None and (v >= high if high_open else v > high))
        )
        if bad:
            shown = int(v) if integer and math.isfinite(v) and v == round(v) else float(v)
            raise ValueError(f"{name}={shown!r} is not allowed; {allowed}")
    return arr.astype(np.int64) if integer else arr


def check_gamma(value: Any, name: str = "gamma") -> np.ndarray:
    """Discount factors must lie in [0, 1) so that every Bellman operator is a contraction."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_probability(value: Any, name: str) -> np.ndarray:
    return check_range(name, value, 0.0, 1.0)


def check_positive(value: Any, name: str) -> np.ndarray:
    return check_range(name, value, 0.0, None, low_open=True)


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """A single integer ``>= minimum`` (steps, seeds, widths, ...)."""
    if isinstance(value, bool) or np.ndim(value) != 0:
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be an integer >= {minimum}")
    return int(check_range(name, value, minimum, None, integer=True))


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice to a mistyped string, else ``""``."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6) if isinstance(value, str) else []
    if not close:
        lowered = {n.lower(): n for n in names}
        close = [lowered[str(value).lower()]] if str(value).lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    options = list(choices)
    if value not in options:
        shown = ", ".join(repr(c) for c in options)
        raise ValueError(f"{name}={value!r} is not allowed{did_you_mean(value, options)}; choose one of: {shown}")
    return value


def check_axis(name: str, values: Any) -> list:
    """A sweep axis: a non-empty list of values without duplicates."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        values = [values]
    values = list(np.asarray(values).reshape(-1).tolist()) if isinstance(values, np.ndarray) else list(values)
    if not values:
        raise ValueError(f"axis {name!r} is empty; give at least one value")
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"axis {name!r} has repeated values {values!r}; give each value once")
    return values


def command_line_value(text: str) -> Any:
    """A command-line value as bool (true/false), int, float or (failing all) string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def key_values(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """``{"key": value}`` from ``KEY=VALUE`` words (values by :func:`command_line_value`, dashes in keys
    as underscores); a word without ``=`` is a ValueError naming ``flag``."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{flag} {pair!r} is not KEY=VALUE")
        key, text = pair.split("=", 1)
        options[key.replace("-", "_")] = command_line_value(text)
    return options
