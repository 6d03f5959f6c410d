"""``jaxq bench replay``: prioritised replay throughput, jaxq against flashbax, side by side in one run.

Both buffers hold LunarLander-sized transitions (obs and next_obs ``float32[8]``, action, reward,
terminated, truncated: 74 bytes), capacity ``2**17`` per lane (2.5 GB of storage at 256 lanes; one
buffer is alive at a time), and run as one jitted ``lax.scan`` of 20 iterations with the state
donated, ``vmap``-ed over 1 and 256 lanes (independent buffers):

* **sample + update**: draw a batch of 256 (stratified, proportional, alpha 0.6), compute the
  importance weights ``(N P)^-beta / max`` (jaxq returns them; for flashbax the step computes them
  from its probabilities), then write 256 new priorities;
* **add**: write 4 new transitions at the running max priority.

flashbax's prioritised item buffer (the same pure-function design) has two ways to write
priorities: a sequential ``lax.scan`` over the batch (its choice on CPU) and a ``bincount``
(``O(capacity)``, its choice on GPU/TPU). Both are timed; ``vs flashbax`` compares with the
faster. The other jaxq buffers' rows show the price of their ``O(N)`` rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp

from jaxq.bench.timing import block, report

BATCH, ADD, ALPHA, BETA, EPS = 256, 4, 0.6, 0.4, 1e-6
TRANSITION = {"obs": jnp.zeros(8, jnp.float32), "action": jnp.int32(0), "reward": jnp.float32(0.0),
              "next_obs": jnp.zeros(8, jnp.float32), "terminated": jnp.bool_(False), "truncated": jnp.bool_(False)}


@dataclasses.dataclass
class Size:
    capacity: int
    lanes: tuple[int, ...]
    steps: int
    repeats: int


FULL = Size(capacity=2**17, lanes=(1, 256), steps=20, repeats=5)
QUICK = Size(capacity=2**10, lanes=(4,), steps=4, repeats=2)


def _items(k: int, t: jax.Array) -> dict[str, jax.Array]:
    """``k`` distinct transitions made from the counter ``t`` (cheap, so the add itself is timed)."""
    row = (t * k + jnp.arange(k)).astype(jnp.float32)
    return {"obs": jnp.broadcast_to(row[:, None], (k, 8)), "action": (row % 4).astype(jnp.int32), "reward": row,
            "next_obs": jnp.broadcast_to(row[:, None] + 1, (k, 8)), "terminated": row % 97 == 0,
            "truncated": row % 1000 == 0}


def time_loop(init: Callable[[jax.Array], Any], step: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
              lanes: int, size: Size) -> dict[str, float]:
    """Compile ``vmap(scan(step))`` over ``lanes`` states made by ``init`` (donated), then time it.

    Returns compile seconds and the best seconds per iteration over ``size.repeats`` calls.
    """
    keys = jax.random.split(jax.random.PRNGKey(0), lanes)
    state = jax.jit(jax.vmap(init))(keys)

    def run(state, key):
        return jax.lax.scan(step, state, jax.random.split(key, size.steps))

    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(run), donate_argnums=0).lower(state, keys).compile()
    compile_s = time.perf_counter() - t0
    state, out = compiled(state, keys)  # warm-up
    block(out)
    best = float("inf")
    for r in range(size.repeats):
        t0 = time.perf_counter()
        state, out = compiled(state, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, r))
        block(out)
        best = min(best, time.perf_counter() - t0)
    del state, compiled
    gc.collect()
    return {"compile_s": compile_s, "ms_per_step": 1e3 * best / size.steps}


# -- jaxq -------------------------------------------------------------------------------------------
def _jaxq_full(name: str, capacity: int) -> tuple[Any, Callable[[jax.Array], Any]]:
    from jaxq import replay

    buffer = replay.make(name, capacity=capacity)
    hp = buffer.hparams(**{k: v for k, v in {"alpha": ALPHA, "beta": BETA}.items() if k in buffer.hyperparameters})
    chunk = min(capacity, 4096)

    def init(key):
        def fill(i, state):
            return buffer.add(state, _items(chunk, i), i * chunk + jnp.arange(chunk) // 200,
                              jnp.arange(chunk) % 200 == 199, hp)
        return jax.lax.fori_loop(0, capacity // chunk, fill, buffer.init(TRANSITION))

    return (buffer, hp), init


def jaxq_sample_update(name: str, capacity: int) -> tuple[Callable, Callable]:
    (buffer, hp), init = _jaxq_full(name, capacity)

    def step(state, key):
        sample_key, td_key = jax.random.split(key)
        sample = buffer.sample(state, sample_key, BATCH, hp, 0.5)
        td = jax.random.normal(td_key, (BATCH,))
        state = buffer.set_priorities(state, sample.indices, td, hp, 0.5)
        return state, sample.experience["reward"].sum() + sample.weights.sum()

    return init, step


def jaxq_add(name: str, capacity: int) -> tuple[Callable, Callable]:
    (buffer, hp), init = _jaxq_full(name, capacity)

    def step(state, key):
        t = state.ptr
        state = buffer.add(state, _items(ADD, t), t + jnp.arange(ADD), jnp.zeros(ADD, bool), hp)
        return state, state.ptr

    return init, step


# -- flashbax ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def flashbax_update_path(path: str) -> Iterator[None]:
    """Trace flashbax with its ``"scan"`` (CPU) or ``"bincount"`` (GPU/TPU) priority writes."""
    from flashbax.buffers import prioritised_trajectory_buffer as ptb, sum_tree

    chosen = {"scan": sum_tree.set_batch_scan, "bincount": sum_tree.set_batch_bincount}[path]
    saved = dict(ptb.SET_BATCH_FN)
    ptb.SET_BATCH_FN.update({device: chosen for device in saved})
    try:
        yield
    finally:
        ptb.SET_BATCH_FN.update(saved)


def _flashbax_full(capacity: int) -> tuple[Any, Callable[[jax.Array], Any]]:
    import flashbax

    buffer = flashbax.make_prioritised_item_buffer(max_length=capacity, min_length=1, sample_batch_size=BATCH,
                                                   add_batches=True, priority_exponent=ALPHA, device="cpu")
    chunk = min(capacity, 4096)

    def init(key):
        def fill(i, state):
            return buffer.add(state, _items(chunk, i))
        with flashbax_update_path("bincount"):  # fills fast whatever path is timed
            return jax.lax.fori_loop(0, capacity // chunk, fill, buffer.init(TRANSITION))

    return buffer, init


def flashbax_sample_update(capacity: int) -> tuple[Callable, Callable]:
    buffer, init = _flashbax_full(capacity)

    def step(state, key):
        sample_key, td_key = jax.random.split(key)
        sample = buffer.sample(state, sample_key)
        weights = (capacity * sample.probabilities) ** -BETA
        weights = weights / weights.max()
        td = jax.random.normal(td_key, (BATCH,))
        state = buffer.set_priorities(state, sample.indices, jnp.abs(td) + EPS)
        return state, sample.experience["reward"].sum() + weights.sum()

    return init, step


def flashbax_add(capacity: int) -> tuple[Callable, Callable]:
    buffer, init = _flashbax_full(capacity)

    def step(state, key):
        t = state.running_index
        return buffer.add(state, _items(ADD, t)), t

    return init, step


# -- the table --------------------------------------------------------------------------------------
def _row(op: str, method: str, lanes: int, timing: dict[str, float], per_step: int) -> dict[str, Any]:
    seconds = timing["ms_per_step"] / 1e3
    return {"op": op, "method": method, "lanes": lanes, "ms_per_step": timing["ms_per_step"],
            "lane_steps_per_s": lanes / seconds, "items_per_s": lanes * per_step / seconds,
            "compile_s": timing["compile_s"]}


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark: jaxq and both flashbax paths per operation and lane count, in one process."""
    import flashbax  # noqa: F401  (fail early when the peer is missing)
    from importlib.metadata import version

    size = QUICK if quick else FULL
    cap = size.capacity
    rows: list[dict[str, Any]] = []
    for op, per_step, ours, theirs in (("sample+update", BATCH, jaxq_sample_update, flashbax_sample_update),
                                       ("add", ADD, jaxq_add, flashbax_add)):
        for lanes in size.lanes:
            mine = _row(op, "jaxq per", lanes, time_loop(*ours("per", cap), lanes, size), per_step)
            peers = []
            for path in ("scan", "bincount"):
                with flashbax_update_path(path):
                    peers.append(_row(op, f"flashbax ({path})", lanes, time_loop(*theirs(cap), lanes, size), per_step))
            fastest = min(p["ms_per_step"] for p in peers)
            for row in (mine, *peers):
                row["vs_flashbax"] = fastest / row["ms_per_step"]
            rows += [mine, *peers]
    for name in () if quick else ("uniform", "per-rank", "reaper", "annealed"):
        rows.append(_row("sample+update", f"jaxq {name}", 1, time_loop(*jaxq_sample_update(name, cap), 1, size), BATCH))
    widest = max(size.lanes)
    headline = {r["method"]: r["vs_flashbax"] for r in rows if r["op"] == "sample+update" and r["lanes"] == widest}
    return report(
        "replay", rows, quick=quick, peers={"flashbax": version("flashbax")},
        notes=(f"capacity {cap} per lane, batch {BATCH}, add {ADD} transitions of 74 bytes (LunarLander-sized); "
               f"{size.steps} iterations per jitted scan, state donated, best of {size.repeats}; lane_steps_per_s = "
               "operations per second summed over lanes, items_per_s = transitions sampled (or added) per second; "
               "vs_flashbax = flashbax's faster path time / this row's time, measured in the same run."),
        headline_vs_flashbax=headline["jaxq per"], capacity=cap, batch=BATCH, add=ADD,
        flashbax_paths="scan: sequential lax.scan over the batch (flashbax's CPU choice); bincount: its GPU/TPU choice",
    )

