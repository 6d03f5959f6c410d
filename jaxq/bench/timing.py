"""Timing helpers shared by the benchmarks: compile time apart from run time, device facts."""

from __future__ import annotations

import platform
import time
from typing import Any, Callable

import jax


def block(tree: Any) -> Any:
    """Wait until every array in ``tree`` is computed."""
    return jax.block_until_ready(tree)


def compile_and_time(fn: Callable[..., Any], *args: Any, repeats: int = 3) -> tuple[float, float]:
    """Compile ``jax.jit(fn)`` for ``args`` and time it.

    Returns ``(compile_seconds, best_run_seconds)``: lowering plus compilation measured alone, then
    the fastest of ``repeats`` executions of the compiled function (results blocked on).
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    block(compiled(*args))  # warm-up: first execution allocates buffers
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Fastest wall time of ``fn()`` over ``repeats`` calls (for peers outside JAX)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def environment_info() -> dict[str, Any]:
    """Device, platform and library versions recorded with every benchmark."""
    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "device_count": len(devices),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def report(name: str, rows: list[dict[str, Any]], *, peers: dict[str, str], notes: str = "",
           quick: bool = False, **extra: Any) -> dict[str, Any]:
    """The JSON document every benchmark returns: its table rows, the peers' versions, the device."""
    return {"benchmark": name, "quick": quick, "rows": rows, "peers": peers, "notes": notes,
            "environment": environment_info(), **extra}


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts with the same keys) as an aligned plain-text table."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    cells = [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])
