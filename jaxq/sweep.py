"""The one-call grid: named hyper-parameter axes x seeds -> vmap -> shard over devices -> chunk.

``sweep(learner, {"depth": [2, 8, 32], "gamma": [0.9, 0.99]}, seeds=1000)`` runs the full
Cartesian product -- here 6 grid points x 1000 seeds = 6000 independent agents -- as ``vmap``-ed
lanes of ONE compiled program:

* every lane gets its own key ``fold_in(PRNGKey(seed), s)`` for seed index ``s``; the learner splits
  it for initialisation, exploration and the environment, so lanes are independent, and lane
  ``(g, s)`` equals a single run with that key. The same seed index gets the same key at every grid
  point (common random numbers: differences between grid points are paired);
* lanes are split evenly over all local devices (``shard_map``) and, inside a device, run in blocks
  that fit the CPU cache (``lax.map`` over blocks of ``vmap``-ed lanes); on GPU/TPU one block holds
  all of a device's lanes;
* if all lanes do not fit the memory budget they run in chunks, one after the other, through the
  same compiled function; time runs in segments, so progress is reported and, optionally, the whole
  state is checkpointed between segments and a run can be resumed.

The sweep knows nothing about any particular learner: it needs ``defaults``, ``encode``, ``init``,
``run``, ``log``, ``describe`` and the step counts (see :class:`jaxq.learners.base.OnlineLearner`),
and hands back ``export(carry)`` of every lane at the end when the learner has one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from typing import Any, Callable, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxq import checkpoint
from jaxq.validation import check_axis, check_count, check_positive

Progress = Callable[[float, float], None]


class Learner(Protocol):
    steps: int
    steps_per_log: int
    num_logs: int

    def defaults(self) -> dict[str, Any]: ...
    def encode(self, name: str, value: Any) -> Any: ...
    def describe(self) -> dict[str, Any]: ...
    def init(self, key: jax.Array, hp: dict[str, jax.Array]) -> Any: ...
    def run(self, carry: Any, hp: dict[str, jax.Array], first: jax.Array,
            num_logs: int) -> tuple[Any, dict[str, jax.Array]]: ...
    def log(self, carry: Any, hp: dict[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]: ...


@dataclasses.dataclass
class SweepResult:
    """Logged curves with named axes.

    Attributes:
        axes: names of the axes of every array in ``logs``: the swept hyper-parameters in the order
            given, then ``"seed"``, then ``"t"`` (then any per-state axis of the metric).
        coords: values along each named axis (``"t"``: environment steps at each log point).
        logs: metric name -> array ``[*grid, seeds, T, ...]``.
        config: fixed hyper-parameters, axes, seeds, and the learner's description.
        timing: compile seconds, run seconds, environment steps and steps per second, lanes, chunks.
        finals: what each lane hands back at the end (``learner.export(carry)``, e.g. its network's
            parameters), every leaf ``[*grid, seeds, ...]``; None for learners without ``export``.
    """

    axes: list[str]
    coords: dict[str, list]
    logs: dict[str, np.ndarray]
    config: dict[str, Any]
    timing: dict[str, Any]
    finals: Any = None

    @property
    def grid_axes(self) -> list[str]:
        return self.axes[: self.axes.index("seed")]

    def grid_points(self) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
        """``(index, {axis: value})`` for every grid point."""
        names = self.grid_axes
        for index in itertools.product(*(range(len(self.coords[n])) for n in names)):
            yield index, {n: self.coords[n][i] for n, i in zip(names, index)}

    def final(self, metric: str) -> np.ndarray:
        """The last logged value of ``metric``: ``[*grid, seeds, ...]``."""
        return np.take(self.logs[metric], -1, axis=len(self.grid_axes) + 1)


def _dtype_of(values: list[Any]) -> np.dtype:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.dtype(bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def _tree_bytes(tree: Any) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def default_block_lanes(carry_bytes: int, backend: str) -> int | None:
    """Lanes per block: about 256 KiB of carry on CPU (to stay in L2), no blocking elsewhere."""
    if backend != "cpu":
        return None
    return int(2 ** np.clip(np.floor(np.log2(max(1, (256 << 10) // max(carry_bytes, 1)))), 4, 10))


def sweep(
    learner: Learner,
    axes: dict[str, Any] | None = None,
    seeds: int = 1,
    *,
    seed: int = 0,
    max_lanes: int | None = None,
    block_lanes: int | None = None,
    segments: int | None = None,
    memory_budget: float = 2.0 * 2**30,
    progress: Progress | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> SweepResult:
    """Run ``learner`` at every point of the grid ``axes`` with ``seeds`` seeds each, in one program.

    Args:
        learner: e.g. :class:`jaxq.learners.TabularLearner` bound to an environment.
        axes: hyper-parameter name -> list of values (learner hyper-parameters such as ``gamma``,
            ``alpha``, ``epsilon`` and scalar environment params such as ``depth``). Names not given
            keep their defaults.
        seeds: independent seeds per grid point.
        seed: root seed; lane ``(g, s)`` uses ``fold_in(PRNGKey(seed), s)``.
        max_lanes: most lanes per compiled call (default: what fits ``memory_budget`` bytes).
        block_lanes: lanes per cache block inside a device (default: automatic).
        segments: pieces the time axis is run in (progress/checkpoint granularity; default ~10).
        progress: ``callback(fraction_done, run_seconds)`` after every segment.
        checkpoint_dir: if given, save the whole state there every ``checkpoint_every`` env steps.
        resume: continue from the checkpoint in ``checkpoint_dir``.

    Raises:
        ValueError: before anything is compiled, for an empty or repeated axis, an unknown name, a
            value outside its allowed range, a non-positive seed count, or a checkpoint that does not
            belong to this sweep.
    """
    t_start = time.perf_counter()
    seeds = check_count(seeds, "seeds")
    axes = dict(axes or {})
    given = {name: check_axis(name, values) for name, values in axes.items()}
    encoded = {name: [learner.encode(name, v) for v in values] for name, values in given.items()}
    defaults = learner.defaults()
    grid_names = list(given)
    grid = list(itertools.product(*(range(len(given[n])) for n in grid_names)))
    lanes = len(grid) * seeds

    columns: dict[str, np.ndarray] = {}
    for name, default in defaults.items():
        per_point = [encoded[name][idx[grid_names.index(name)]] for idx in grid] if name in encoded else [default]
        col = np.asarray(per_point, dtype=_dtype_of(per_point))
        columns[name] = np.repeat(col, seeds) if name in encoded else np.full(lanes, col[0], col.dtype)
    seed_keys = np.asarray(jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(seed), s))(jnp.arange(seeds)))
    keys = np.tile(seed_keys, (len(grid), 1))

    # -- shapes, blocks, chunks --------------------------------------------------------------------
    devices = jax.devices()
    n_dev = len(devices)
    one_hp = {k: jnp.asarray(v[0]) for k, v in columns.items()}
    carry_shape = jax.eval_shape(learner.init, jnp.asarray(keys[0]), one_hp)
    log_shape = jax.eval_shape(learner.log, carry_shape, one_hp, jnp.int32(0))
    carry_bytes = _tree_bytes(carry_shape)
    lane_bytes = carry_bytes + (learner.num_logs + 1) * _tree_bytes(log_shape) + _tree_bytes(one_hp)
    budget_lanes = max_lanes if max_lanes is not None else int(check_positive(memory_budget, "memory_budget") // lane_bytes)
    budget_lanes = check_count(budget_lanes, "max_lanes")
    per_device = math.ceil(lanes / n_dev)
    block = block_lanes or default_block_lanes(carry_bytes, jax.default_backend()) or per_device
    block = max(1, min(check_count(block, "block_lanes"), per_device, max(1, budget_lanes // n_dev)))
    blocks_per_device = max(1, min(math.ceil(per_device / block), budget_lanes // (n_dev * block)))
    chunk = n_dev * block * blocks_per_device
    n_chunks = math.ceil(lanes / chunk)

    if checkpoint_every is not None:
        every = check_count(checkpoint_every, "checkpoint_every")
        if every % learner.steps_per_log:
            raise ValueError(f"checkpoint_every={every} is not a multiple of the log interval {learner.steps_per_log}")
        segment_logs = min(every // learner.steps_per_log, learner.num_logs)
    else:
        wanted = check_count(segments, "segments") if segments is not None else 10
        target = max(1, round(learner.num_logs / wanted))
        segment_logs = min((d for d in range(1, learner.num_logs + 1) if learner.num_logs % d == 0),
                           key=lambda d: abs(d - target))
    segment_lengths = [segment_logs] * (learner.num_logs // segment_logs)
    if learner.num_logs % segment_logs:
        segment_lengths.append(learner.num_logs % segment_logs)

    config = {
        "learner": learner.describe(),
        "axes": {n: given[n] for n in grid_names},
        "fixed": {k: v for k, v in defaults.items() if k not in given},
        "seeds": seeds,
        "seed": seed,
    }
    fingerprint = _fingerprint({**config, "chunk": chunk, "segments": segment_lengths})

    # -- compiled functions --------------------------------------------------------------------
    mesh = Mesh(np.asarray(devices), ("lanes",))
    sharding = NamedSharding(mesh, P("lanes"))
    local = chunk // n_dev

    def blocked(fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(lane_arg_0, lane_arg_1, shared)`` over lanes: the lane arguments split over devices and
        blocks and ``vmap``-ed; ``shared`` (a scalar log index) the same for every lane, never batched."""
        def per_device(*args):
            *lane_args, shared = args
            split = jax.tree.map(lambda x: x.reshape(local // block, block, *x.shape[1:]), lane_args)
            out = jax.lax.map(lambda a: jax.vmap(fn, in_axes=(*(0,) * len(a), None))(*a, shared), split)
            return jax.tree.map(lambda x: x.reshape(local, *x.shape[2:]), out)
        return jax.shard_map(per_device, mesh=mesh, in_specs=(P("lanes"), P("lanes"), P()), out_specs=P("lanes"),
                             check_vma=False)

    def put(tree: Any) -> Any:
        return jax.device_put(tree, sharding)

    def lanes_of(c: int) -> tuple[dict[str, jax.Array], jax.Array]:
        idx = np.arange(c * chunk, (c + 1) * chunk)
        idx = np.where(idx < lanes, idx, c * chunk)  # padding lanes repeat the chunk's first lane
        return put({k: v[idx] for k, v in columns.items()}), put(keys[idx])

    def zeros_logs(n_lanes: int, n_t: int) -> dict[str, np.ndarray]:
        """A template of ``n_lanes`` lanes' logs over ``n_t`` log points (for restoring)."""
        return jax.tree.map(lambda s: np.zeros((n_lanes, n_t, *s.shape), s.dtype), log_shape)

    compile_s = 0.0
    hp0, keys0 = lanes_of(0)

    def compiled(fn: Callable[..., Any], *args: Any, donate: bool = False) -> Any:
        nonlocal compile_s
        t0 = time.perf_counter()
        out = jax.jit(blocked(fn), donate_argnums=(0,) if donate else ()).lower(*args).compile()
        compile_s += time.perf_counter() - t0
        return out

    index0 = jnp.int32(0)
    init_fn = compiled(lambda k, h, _: learner.init(k, h), keys0, hp0, index0)
    carry_template = init_fn.out_info
    log_fn = compiled(learner.log, carry_template, hp0, index0)
    run_fns = {n: compiled(lambda c, h, first, n=n: learner.run(c, h, first, n), carry_template, hp0, index0,
                           donate=True)
               for n in sorted(set(segment_lengths))}
    exports = hasattr(learner, "export")
    if exports:
        export_fn = compiled(lambda c, h, _: learner.export(c), carry_template, hp0, index0)
        export_template = export_fn.out_info

    # -- resume ----------------------------------------------------------------------------------
    start_chunk, start_segment, done_logs, partial, carry = 0, 0, [], None, None
    done_finals: list[Any] = []
    if checkpoint_dir is not None:
        step = checkpoint.latest_step(checkpoint_dir)
        if step is not None and not resume:
            raise ValueError(f"{checkpoint_dir} already holds a checkpoint; resume it or choose another folder")
        if step is not None:
            saved_chunk, saved_segments = divmod(step - 1, len(segment_lengths))
            saved_segments += 1
            like = {
                "carry": jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), carry_template),
                "partial": zeros_logs(chunk, 1 + sum(segment_lengths[:saved_segments])),
            }
            finished = saved_segments == len(segment_lengths)  # saved at the end of a chunk
            if saved_chunk:  # logs of the chunks finished before the saved one
                like["done"] = zeros_logs(saved_chunk * chunk, learner.num_logs + 1)
            if exports:
                zeros = lambda n: jax.tree.map(lambda s: np.zeros((n, *s.shape[1:]), s.dtype), export_template)  # noqa: E731
                if saved_chunk:
                    like["done_finals"] = zeros(saved_chunk * chunk)
                if finished:
                    like["final"] = zeros(chunk)
            state, _ = checkpoint.restore(checkpoint_dir, like, fingerprint, step)
            done_logs = [state["done"]] if saved_chunk else []
            done_finals = [state["done_finals"]] if exports and saved_chunk else []
            if finished:
                done_logs.append(state["partial"])
                if exports:
                    done_finals.append(state["final"])
                start_chunk = saved_chunk + 1
            else:
                start_chunk, start_segment = saved_chunk, saved_segments
                partial, carry = state["partial"], put(state["carry"])

    # -- run -------------------------------------------------------------------------------------
    run_s = 0.0
    total = n_chunks * learner.num_logs
    for c in range(start_chunk, n_chunks):
        hp_c, keys_c = lanes_of(c)
        first_segment = start_segment if c == start_chunk else 0
        t0 = time.perf_counter()
        if carry is None or first_segment == 0:
            carry = init_fn(keys_c, hp_c, index0)
            partial = jax.tree.map(lambda x: np.asarray(x)[:, None], log_fn(carry, hp_c, index0))
        run_s += time.perf_counter() - t0
        for s in range(first_segment, len(segment_lengths)):
            t0 = time.perf_counter()
            first = jnp.int32(1 + sum(segment_lengths[:s]))
            carry, logs = run_fns[segment_lengths[s]](carry, hp_c, first)
            partial = jax.tree.map(lambda a, b: np.concatenate([a, np.asarray(b)], axis=1), partial, logs)
            last = s == len(segment_lengths) - 1
            if exports and last:
                final = jax.tree.map(np.asarray, export_fn(carry, hp_c, index0))
            run_s += time.perf_counter() - t0
            if checkpoint_dir is not None:
                state = {"carry": carry, "partial": partial}
                if done_logs:
                    state["done"] = jax.tree.map(lambda *xs: np.concatenate(xs), *done_logs)
                if exports and done_finals:
                    state["done_finals"] = jax.tree.map(lambda *xs: np.concatenate(xs), *done_finals)
                if exports and last:
                    state["final"] = final
                checkpoint.save(checkpoint_dir, c * len(segment_lengths) + s + 1, state,
                                {"fingerprint": fingerprint, "chunk": c, "segment": s + 1})
            if progress is not None:
                progress((c * learner.num_logs + sum(segment_lengths[: s + 1])) / total, run_s)
        done_logs.append(partial)
        if exports:
            done_finals.append(final)
        carry = None

    stacked = jax.tree.map(lambda *xs: np.concatenate(xs)[:lanes], *done_logs)
    shape = [len(given[n]) for n in grid_names] + [seeds]
    logs = {k: v.reshape(*shape, *v.shape[1:]) for k, v in stacked.items()}
    steps_t = [i * learner.steps_per_log for i in range(learner.num_logs + 1)]
    env_steps = lanes * learner.steps
    timing = {
        "compile_s": compile_s,
        "run_s": run_s,
        "wall_s": time.perf_counter() - t_start,
        "env_steps": env_steps,
        "env_steps_per_s": env_steps / run_s if run_s > 0 else float("nan"),
        "lanes": lanes,
        "lanes_per_call": chunk,
        "chunks": n_chunks,
        "block_lanes": block,
        "devices": n_dev,
        "backend": jax.default_backend(),
    }
    coords = {**{n: given[n] for n in grid_names}, "seed": list(range(seeds)), "t": steps_t}
    finals = None
    if exports:
        finals = jax.tree.map(lambda *xs: np.concatenate(xs)[:lanes].reshape(*shape, *xs[0].shape[1:]), *done_finals)
    return SweepResult(axes=[*grid_names, "seed", "t"], coords=coords, logs=logs, config=config, timing=timing,
                       finals=finals)

