"""The one-call grid: named hyper-parameter axes x seeds -> vmap -> shard over devices -> chunk.

``sweep(learner, {"depth": [2, 8, 32], "gamma": [0.9, 0.99]}, seeds=1000)`` runs the full
Cartesian product -- here 6 grid points x 1000 seeds = 6000 independent agents -- as ``vmap``-ed
lanes of ONE compiled program:

* every lane gets its own key ``fold_in(PRNGKey(seed), s)`` for seed index ``s``; the learner splits
  it for initialisation, exploration and the environment, so lanes are independent, and lane
  ``(g, s)`` equals a single run with that key. The same seed index gets the same key at every grid
  point (common random numbers: differences between grid points are paired);
* lanes are split evenly over every device of every process (``shard_map`` over one global mesh;
  see :mod:`jaxq.distributed` for several hosts) and, inside a device, run in blocks that fit the
  CPU cache (``lax.map`` over blocks of ``vmap``-ed lanes); on GPU/TPU one block holds all of a
  device's lanes;
* if all lanes do not fit the memory budget they run in chunks, one after the other, through the
  same compiled function; time runs in segments, so progress is reported and, optionally, the state
  is checkpointed between segments (:mod:`jaxq.checkpoint`) and a run can be resumed -- on another
  number of devices, another backend or with another chunk size: a checkpoint records lanes, not
  devices.

The sweep runs in four stages, each a function of its own: **plan** (:func:`plan_grid`: every lane's
hyper-parameters and key; :func:`plan_layout`: blocks and chunks; :func:`plan_segment`: the
segments), **compile** (:func:`compile_program`), **restore** (:func:`restore`: where a checkpoint
left off, as :class:`Piece` s of lanes) and **run** (:func:`run_pieces`).

The sweep knows nothing about any particular learner: it needs ``defaults``, ``encode``, ``init``,
``run``, ``log``, ``describe`` and the step counts (see :class:`jaxq.learners.base.OnlineLearner`),
and hands back ``export(carry)`` of every lane at the end when the learner has one.
Results do not depend on how lanes are split into chunks, blocks and devices, nor on how time is
split into segments.
"""

from __future__ import annotations

import collections
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
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxq import checkpoint
from jaxq.validation import check_axis, check_count, check_positive, check_range

DEFAULT_SEGMENTS = 10
SAVE_SHARE = 0.05  # at the default interval, saves take at most this share of the run's wall time
CPU_MEMORY_BUDGET = 2.0 * 2**30
CHECKPOINT_FORMAT = 2  # part of the fingerprint: a checkpoint of another format is refused


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


@dataclasses.dataclass(frozen=True)
class SweepProgress:
    """What a progress callback gets after every segment.

    Attributes:
        fraction: share of the sweep's lane-intervals done (work restored from a checkpoint counts).
        start_fraction: the share that was done when this call started (restored from a checkpoint).
        run_s: seconds spent running segments in this call.
        chunk, chunks: the chunk that ran (1-based) and the number of chunks of the sweep.
        log_point: that chunk's latest log point (``learner.num_logs`` at its end).
    """

    fraction: float
    start_fraction: float
    run_s: float
    chunk: int
    chunks: int
    log_point: int


Progress = Callable[[SweepProgress], None]


@dataclasses.dataclass
class SweepResult:
    """Logged curves with named axes.

    Attributes:
        axes: names of the axes of every array in ``logs``: the swept hyper-parameters in the order
            given, then ``"seed"``, then ``"t"`` (then any per-state axis of the metric).
        coords: values along each named axis (``"t"``: environment steps at each log point).
        logs: metric name -> array ``[*grid, seeds, T, ...]``.
        config: fixed hyper-parameters, axes, seeds, and the learner's description.
        timing: compile, run and checkpoint seconds, environment steps and steps per second, lanes,
            the layout (lanes per call, chunks, block, devices, processes, backend) and the resumed step.
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


# == plan =============================================================================================
def _dtype_of(values: list[Any]) -> np.dtype:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.dtype(bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def _tree_bytes(tree: Any) -> int:
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every lane's hyper-parameters and key: lane ``g * seeds + s`` is grid point ``g`` (row-major
    over the axes in the order given) with seed index ``s``.

    Attributes:
        axes: swept name -> its validated values; fixed: every other hyper-parameter's default.
        columns: every hyper-parameter -> its encoded value per lane ``[lanes]``.
        keys: ``[lanes, 2]`` uint32, lane ``(g, s)``: ``fold_in(PRNGKey(seed), s)``.
    """

    axes: dict[str, list]
    fixed: dict[str, Any]
    seeds: int
    seed: int
    columns: dict[str, np.ndarray]
    keys: np.ndarray

    @property
    def lanes(self) -> int:
        return len(self.keys)

    def config(self, learner: Learner) -> dict[str, Any]:
        """What the results depend on (and a checkpoint's identity): never the layout."""
        return {"learner": learner.describe(), "axes": self.axes, "fixed": self.fixed, "seeds": self.seeds,
                "seed": self.seed}


def plan_grid(learner: Learner, axes: dict[str, Any] | None, seeds: int, seed: int = 0) -> Grid:
    """Validate the axes and seeds and lay out every lane's hyper-parameters and key.

    Raises:
        ValueError: for an empty or repeated axis, an unknown name, a value outside its allowed range
            a non-positive seed count, or a root ``seed`` that is not an integer in [0, 2^32).
    """
    seeds = check_count(seeds, "seeds")
    seed = int(check_range("seed", seed, 0, 2**32 - 1, integer=True))
    given = {name: check_axis(name, values) for name, values in dict(axes or {}).items()}
    encoded = {name: [learner.encode(name, v) for v in values] for name, values in given.items()}
    defaults = learner.defaults()
    names = list(given)
    points = list(itertools.product(*(range(len(given[n])) for n in names)))
    lanes = len(points) * seeds
    columns: dict[str, np.ndarray] = {}
    for name, default in defaults.items():
        if name in encoded:
            values = [encoded[name][point[names.index(name)]] for point in points]
            columns[name] = np.repeat(np.asarray(values, dtype=_dtype_of(values)), seeds)
        else:
            columns[name] = np.full(lanes, default, dtype=_dtype_of([default]))
    seed_keys = np.asarray(jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(seed), s))(jnp.arange(seeds)))
    return Grid(axes=given, fixed={k: v for k, v in defaults.items() if k not in given}, seeds=seeds, seed=seed,
                columns=columns, keys=np.tile(seed_keys, (len(points), 1)))


@dataclasses.dataclass(frozen=True)
class LaneShapes:
    """One lane's carry, hyper-parameters, logs at one log point and export at the end (None without
    ``learner.export``), as ``jax.ShapeDtypeStruct`` trees."""

    carry: Any
    hp: dict[str, Any]
    log: Any
    final: Any = None

    @classmethod
    def of(cls, learner: Learner, grid: Grid) -> LaneShapes:
        hp = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in grid.columns.items()}
        key = jax.ShapeDtypeStruct(grid.keys.shape[1:], grid.keys.dtype)
        carry = jax.eval_shape(learner.init, key, hp)
        final = jax.eval_shape(learner.export, carry) if hasattr(learner, "export") else None
        return cls(carry=carry, hp=hp, log=jax.eval_shape(learner.log, carry, hp, jnp.int32(0)), final=final)

    def lane_bytes(self, num_logs: int, carry_copies: int = 1) -> int:
        """Memory one lane needs: ``carry_copies`` carries, its logs, export, hyper-parameters and key."""
        return (carry_copies * _tree_bytes(self.carry) + (num_logs + 1) * _tree_bytes(self.log)
                + _tree_bytes(self.final) + _tree_bytes(self.hp) + 8)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a chunk of lanes maps onto devices: each of ``devices`` devices runs ``blocks`` blocks of
    ``block`` ``vmap``-ed lanes one after the other (``lax.map``); ``chunk`` lanes per compiled call."""

    devices: int
    block: int
    blocks: int

    @property
    def chunk(self) -> int:
        return self.devices * self.blocks * self.block


def default_block_lanes(carry_bytes: int, backend: str) -> int | None:
    """Lanes per block: about 256 KiB of carry on CPU (to stay in L2), no blocking elsewhere."""
    if backend != "cpu":
        return None
    return int(2 ** np.clip(np.floor(np.log2(max(1, (256 << 10) // max(carry_bytes, 1)))), 4, 10))


def default_memory_budget(devices: list[Any]) -> float:
    """Bytes one compiled call may use: half the memory the accelerators report (``memory_stats``,
    the smallest device times the device count), or 2 GiB where they report none (CPU)."""
    limits = [(d.memory_stats() or {}).get("bytes_limit") for d in devices if d.process_index == jax.process_index()]
    if not limits or None in limits:
        return CPU_MEMORY_BUDGET
    return 0.5 * min(limits) * len(devices)


def plan_layout(lanes: int, lane_bytes: int, carry_bytes: int, devices: int, backend: str, *,
                max_lanes: int | None = None, block_lanes: int | None = None,
                memory_budget: float = CPU_MEMORY_BUDGET) -> Layout:
    """Blocks and chunks for ``lanes`` lanes on ``devices`` devices.

    A chunk holds at most ``max_lanes`` lanes (default: ``memory_budget // lane_bytes``) but at least
    one per device. The automatic block holds at least 2 lanes where the budget allows: XLA compiles a
    batch of one differently (a matrix-vector product where a batch has a matrix product), which can
    change the last bit of a result, so layouts with blocks of 2 or more lanes give identical bits.

    Raises:
        ValueError: for ``max_lanes`` or ``block_lanes`` below 1, a non-positive budget, or a budget
            smaller than one lane.
    """
    if max_lanes is not None:
        budget = check_count(max_lanes, "max_lanes")
    else:
        budget = int(check_positive(memory_budget, "memory_budget") // lane_bytes)
        if budget < 1:
            raise ValueError(f"memory_budget={memory_budget:.3g} bytes is less than one lane needs ({lane_bytes} "
                             "bytes: its carry, logs and hyper-parameters); raise memory_budget")
    per_device = math.ceil(lanes / devices)
    cap = max(1, budget // devices)
    if block_lanes is not None:
        block = min(check_count(block_lanes, "block_lanes"), per_device, cap)
    else:
        block = min(max(2, min(default_block_lanes(carry_bytes, backend) or per_device, per_device)), cap)
    blocks = max(1, min(math.ceil(per_device / block), budget // (devices * block)))
    return Layout(devices=devices, block=block, blocks=blocks)


def plan_segment(num_logs: int, steps_per_log: int, checkpoint_every: int | None = None,
                 segments: int | None = None) -> int:
    """Log points per segment (segments end at its multiples and at ``num_logs``).

    With ``checkpoint_every`` (any number of environment steps >= 1) saves land on log points: every
    ``max(1, checkpoint_every // steps_per_log)`` log points, i.e. never more than ``checkpoint_every``
    steps apart unless that is shorter than one log interval. Otherwise ``segments`` (default 10)
    pieces of equal length: the divisor of ``num_logs`` closest to ``num_logs / segments``.

    Raises:
        ValueError: for a ``checkpoint_every`` or ``segments`` below 1, or both given.
    """
    if checkpoint_every is not None:
        if segments is not None:
            raise ValueError(f"segments={segments} and checkpoint_every={checkpoint_every} both set the segments; "
                             "give one (with checkpoints, a segment ends at every save)")
        return min(num_logs, max(1, check_count(checkpoint_every, "checkpoint_every") // steps_per_log))
    wanted = check_count(segments, "segments") if segments is not None else DEFAULT_SEGMENTS
    target = max(1, round(num_logs / wanted))
    return min((d for d in range(1, num_logs + 1) if num_logs % d == 0), key=lambda d: abs(d - target))


def segment_ends(logged: int, num_logs: int, length: int) -> list[int]:
    """The last log point of each segment still to run when log points ``0 .. logged - 1`` are done:
    the multiples of ``length`` after them, and ``num_logs``."""
    if logged > num_logs:
        return []
    return [*range(((logged - 1) // length + 1) * length, num_logs, length), num_logs]


@dataclasses.dataclass
class Piece:
    """Lanes ``start .. stop - 1``, run together in one chunk.

    ``logged`` log points (``0 .. logged - 1``) are done and ``carry`` is their state after the last
    one, as host arrays ``[stop - start, ...]`` or as the device arrays of a whole chunk; a piece
    with ``logged == 0`` starts from ``learner.init``.
    """

    start: int
    stop: int
    logged: int = 0
    carry: Any = None

    @property
    def lanes(self) -> int:
        return self.stop - self.start


def plan_pieces(lanes: int, chunk: int, restored: list[Piece], done: int = 0) -> list[Piece]:
    """The pieces still to run: restored ones (split into pieces of at most ``chunk`` lanes), then new
    ones for the lanes after them (or after the ``done`` lanes)."""
    pieces: list[Piece] = []
    for piece in restored:
        if piece.lanes <= chunk:
            pieces.append(piece)
            continue
        for a in range(piece.start, piece.stop, chunk):
            rows = slice(a - piece.start, min(a + chunk, piece.stop) - piece.start)
            pieces.append(Piece(a, min(a + chunk, piece.stop), piece.logged,
                                jax.tree.map(lambda x: x[rows], piece.carry)))
    fresh = restored[-1].stop if restored else done
    pieces.extend(Piece(a, min(a + chunk, lanes)) for a in range(fresh, lanes, chunk))
    return pieces


# == compile ==========================================================================================
@dataclasses.dataclass
class Program:
    """The compiled functions of one layout and how lanes get on and off its devices.

    ``init(keys, hp, 0)``, ``log(carry, hp, index)``, ``export(carry, hp, 0)`` (None without
    ``learner.export``) and ``run(n)(carry, hp, first)`` take a chunk of lanes as global arrays
    sharded over the mesh; ``run(n)`` compiles a segment of ``n`` log points on first use and donates
    the carry.
    """

    learner: Learner
    layout: Layout
    shapes: LaneShapes
    mesh: Mesh
    init: Any
    log: Any
    export: Any
    carry: Any  # the chunk carry's ShapeDtypeStructs, with their sharding
    compile_s: float
    _runs: dict[int, Any] = dataclasses.field(default_factory=dict)

    @property
    def sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("lanes"))

    def _blocked(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(lane_arg_0, lane_arg_1, shared)`` over lanes: the lane arguments split over devices and
        blocks and ``vmap``-ed; ``shared`` (a scalar log index) the same for every lane, never batched."""
        local, block = self.layout.blocks * self.layout.block, self.layout.block

        def per_device(*args):
            *lane_args, shared = args
            split = jax.tree.map(lambda x: x.reshape(local // block, block, *x.shape[1:]), lane_args)
            out = jax.lax.map(lambda a: jax.vmap(fn, in_axes=(*(0,) * len(a), None))(*a, shared), split)
            return jax.tree.map(lambda x: x.reshape(local, *x.shape[2:]), out)

        return jax.shard_map(per_device, mesh=self.mesh, in_specs=(P("lanes"), P("lanes"), P()),
                             out_specs=P("lanes"), check_vma=False)

    def _compile(self, fn: Callable[..., Any], *args: Any, donate: bool = False) -> Any:
        t0 = time.perf_counter()
        out = jax.jit(self._blocked(fn), donate_argnums=(0,) if donate else ()).lower(*args).compile()
        self.compile_s += time.perf_counter() - t0
        return out

    def run(self, n: int) -> Any:
        if n not in self._runs:
            self._runs[n] = self._compile(lambda c, h, first: self.learner.run(c, h, first, n),
                                          self.carry, self.lane_structs(self.shapes.hp), jnp.int32(1), donate=True)
        return self._runs[n]

    def lane_structs(self, tree: Any) -> Any:
        """A chunk of lanes of ``tree`` (one lane's shapes) as sharded ``jax.ShapeDtypeStruct`` s."""
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct((self.layout.chunk, *s.shape), s.dtype,
                                                           sharding=self.sharding), tree)

    def put(self, host: Any, rows: np.ndarray) -> Any:
        """Global arrays of one chunk whose row ``i`` is ``host[rows[i]]`` (each process fills the
        shards of its own devices)."""
        def one(x: np.ndarray) -> jax.Array:
            return jax.make_array_from_callback((len(rows), *x.shape[1:]), self.sharding,
                                                lambda index: x[rows[index[0]]])
        return jax.tree.map(one, host)

    def lanes_of(self, grid: Grid, piece: Piece) -> tuple[dict[str, jax.Array], jax.Array]:
        """The piece's hyper-parameters and keys, padded to a chunk with copies of its first lane."""
        rows = piece.start + chunk_rows(piece.lanes, self.layout.chunk)
        return self.put(grid.columns, rows), self.put(grid.keys, rows)

    def carry_of(self, piece: Piece) -> Any:
        """The piece's carry on the devices: as restored if already laid out, else put there (padded)."""
        leaves = jax.tree.leaves(piece.carry)
        if all(isinstance(x, jax.Array) and x.shape[0] == self.layout.chunk for x in leaves):
            return piece.carry
        return self.put(piece.carry, chunk_rows(piece.lanes, self.layout.chunk))


def chunk_rows(lanes: int, chunk: int) -> np.ndarray:
    """Row indices of a chunk holding ``lanes`` lanes: ``0 .. lanes - 1``, then padding rows that repeat
    row 0 (padding lanes compute exactly what the first lane does, and are dropped)."""
    rows = np.arange(chunk)
    return np.where(rows < lanes, rows, 0)


def to_host(tree: Any) -> Any:
    """NumPy copies of global arrays (gathered from every process when there are several)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


_PROGRAMS: collections.OrderedDict[Any, Program] = collections.OrderedDict()
KEEP_PROGRAMS = 4  # compiled programs kept for later sweeps in the same process


def compile_program(learner: Learner, layout: Layout, shapes: LaneShapes) -> Program:
    """Compile ``init`` and ``log`` for chunks of ``layout`` over every device of every process (segment
    runs compile on first use, :meth:`Program.run`).

    The last :data:`KEEP_PROGRAMS` programs are kept: a later sweep of the same learner object (with the
    same description), layout and lane shapes -- another seed, a resume in the same process -- compiles
    nothing (its ``compile_s`` counts only what it compiles itself).
    """
    leaves, tree = jax.tree.flatten((shapes.carry, shapes.hp, shapes.log, shapes.final))
    key = (id(learner), json.dumps(learner.describe(), sort_keys=True, default=repr), layout, tuple(leaves), tree,
           tuple(d.id for d in jax.devices()))
    cached = _PROGRAMS.get(key)
    if cached is not None and cached.learner is learner:
        _PROGRAMS.move_to_end(key)
        return dataclasses.replace(cached, compile_s=0.0)  # shares the compiled segment runs
    mesh = Mesh(np.asarray(jax.devices()), ("lanes",))
    program = Program(learner=learner, layout=layout, shapes=shapes, mesh=mesh, init=None, log=None, export=None,
                      carry=None, compile_s=0.0)
    hp = program.lane_structs(shapes.hp)
    keys = jax.ShapeDtypeStruct((layout.chunk, 2), jnp.uint32, sharding=program.sharding)
    index = jnp.int32(0)
    program.init = program._compile(lambda k, h, _: learner.init(k, h), keys, hp, index)
    program.carry = program.init.out_info
    program.log = program._compile(learner.log, program.carry, hp, index)
    if shapes.final is not None:
        program.export = program._compile(lambda c, h, _: learner.export(c), program.carry, hp, index)
    _PROGRAMS[key] = program
    while len(_PROGRAMS) > KEEP_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program


# == restore ==========================================================================================
@dataclasses.dataclass
class Start:
    """Where a run starts: the number of its next checkpoint step, the lanes ``0 .. done - 1`` already
    finished (their logs written, listed in ``finished``) and the restored pieces after them."""

    step: int = 0
    done: int = 0
    finished: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pieces: list[Piece] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Outputs:
    """Host arrays of every lane, filled as pieces run: ``logs`` ``[lanes, num_logs + 1, ...]`` and
    ``finals`` (``learner.export`` at the end, ``[lanes, ...]``; None without it)."""

    logs: Any
    finals: Any = None

    @classmethod
    def empty(cls, shapes: LaneShapes, lanes: int, num_logs: int) -> Outputs:
        def zeros(s: Any, *axes: int) -> np.ndarray:
            return np.zeros((*axes, *s.shape), s.dtype)

        return cls(logs=jax.tree.map(lambda s: zeros(s, lanes, num_logs + 1), shapes.log),
                   finals=jax.tree.map(lambda s: zeros(s, lanes), shapes.final))

    def rows(self, start: int, stop: int) -> dict[str, Any]:
        """Views of lanes ``start .. stop - 1`` as ``{"logs", "finals"}`` (what a finished file holds)."""
        return {"logs": jax.tree.map(lambda x: x[start:stop], self.logs),
                "finals": jax.tree.map(lambda x: x[start:stop], self.finals)}


def restore(folder: checkpoint.Folder, program: Program, outputs: Outputs) -> Start:
    """Continue from the newest usable checkpoint in ``folder``: fill ``outputs`` with what it holds
    (finished lanes from their files) and return the pieces it left (their carries restored straight
    onto the devices when a piece is laid out as one chunk of ``program``, else as host arrays); a
    folder without a complete step starts from the beginning."""
    def target(meta: dict[str, Any]) -> dict[str, Any]:
        groups = meta["groups"]
        laid_out = jax.tree.map(lambda c: jax.ShapeDtypeStruct(c.shape, c.dtype, sharding=c.sharding), program.carry)
        return {  # a laid-out carry restores with the shardings the compiled program takes
            "carry": [laid_out if _laid_out(g, program) else jax.tree.map(
                lambda s, g=g: jax.ShapeDtypeStruct((g["rows"], *s.shape), s.dtype), program.shapes.carry)
                for g in groups],
            "logs": jax.tree.map(lambda x: jax.ShapeDtypeStruct((groups[-1]["stop"] - meta["done"], *x.shape[1:]),
                                                                x.dtype), outputs.logs),
        }

    found = folder.restore(target)
    if found is None:
        return Start()
    meta = found.meta
    for entry, leaves in zip(meta["finished"], found.finished):
        rows = outputs.rows(entry["start"], entry["stop"])
        for dst, src in zip(jax.tree.leaves(rows), leaves, strict=True):
            dst[...] = src
    pieces = []
    if found.state is not None:
        active = slice(meta["done"], meta["groups"][-1]["stop"])
        jax.tree.map(lambda dst, src: dst.__setitem__(active, src), outputs.logs, found.state["logs"])
        for g, carry in zip(meta["groups"], found.state["carry"]):
            carry = carry if _laid_out(g, program) else jax.tree.map(lambda x, n=g["stop"] - g["start"]: x[:n], carry)
            pieces.append(Piece(g["start"], g["stop"], g["logged"], carry))
    return Start(step=found.step + 1, done=meta["done"], finished=list(meta["finished"]), pieces=pieces)


def _laid_out(group: dict[str, Any], program: Program) -> bool:
    """Whether a saved group is one chunk of ``program``'s layout (its carry can go straight to the devices)."""
    return group["rows"] == program.layout.chunk and group["stop"] - group["start"] <= program.layout.chunk


# == run ==============================================================================================
@dataclasses.dataclass
class Clock:
    """Seconds spent running and checkpointing, and the number of saves."""

    run_s: float = 0.0
    checkpoint_s: float = 0.0
    saves: int = 0


def _segments(program: Program, grid: Grid, piece: Piece, outputs: Outputs, segment: int,
              clock: Clock) -> Iterator[tuple[int, Any]]:
    """Run one piece segment by segment, writing its logs (and at the end its export) into
    ``outputs``: yields ``(last log point, carry)`` after each segment (the carry is donated to the
    next one)."""
    rows = slice(piece.start, piece.stop)

    def write(into: Any, out: Any, *points: Any) -> None:
        jax.tree.map(lambda dst, src: dst.__setitem__((rows, *points), src[: piece.lanes]), into, to_host(out))

    t0 = time.perf_counter()
    hp, keys = program.lanes_of(grid, piece)
    if piece.logged == 0:
        carry = program.init(keys, hp, jnp.int32(0))
        write(outputs.logs, program.log(carry, hp, jnp.int32(0)), 0)
        logged = 1
    else:
        carry, logged = program.carry_of(piece), piece.logged
    clock.run_s += time.perf_counter() - t0
    for end in segment_ends(logged, program.learner.num_logs, segment):
        run = program.run(end - logged + 1)  # compiled on first use, counted in compile_s
        t0 = time.perf_counter()
        carry, out = run(carry, hp, jnp.int32(logged))
        write(outputs.logs, out, slice(logged, end + 1))
        if end == program.learner.num_logs and program.export is not None:
            write(outputs.finals, program.export(carry, hp, jnp.int32(0)))
        clock.run_s += time.perf_counter() - t0
        logged = end + 1
        yield end, carry


@dataclasses.dataclass
class Saver:
    """Checkpoints after the segments it finds :meth:`due`: the next step's number and the finished
    lanes (``0 .. done - 1``, their logs written once, listed in ``finished``)."""

    folder: checkpoint.Folder
    layout: Layout
    lanes: int
    num_logs: int
    step: int
    done: int
    finished: list[dict[str, Any]]
    cost_aware: bool = False

    def due(self, end: int) -> bool:
        """Whether to save after log point ``end``. With an interval the user chose: after every
        segment. At the default interval (``cost_aware``): at the end of every piece (its logs go to
        their file; no carry is left to save), at the first segment end with none saved yet, and
        otherwise once the last save of carries started at least its cost / :data:`SAVE_SHARE`
        seconds ago, its cost being the wall seconds from its start until its files were written
        (what it blocked plus its background writes, which on a CPU compete with the run), so that
        saving takes at most that share of the run's time. The answer is process 0's on every
        process (a save is collective)."""
        if not self.cost_aware or end == self.num_logs:
            return True
        started, cost = self.folder.state_saved_at, self.folder.state_save_s
        due = started is None or (cost is not None and time.perf_counter() - started >= cost / SAVE_SHARE)
        if jax.process_count() > 1:
            due = bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))
        return due

    def save(self, piece: Piece, outputs: Outputs, pending: list[Piece]) -> None:
        """Save ``piece`` (its carry after log point ``piece.logged - 1``) and the restored ``pending``
        pieces still waiting; a finished piece's logs and export go to a file of their own instead."""
        active = [piece, *pending]
        if piece.logged > self.num_logs:
            entry = self.folder.write_finished(f"{piece.start}-{piece.stop}", outputs.rows(piece.start, piece.stop))
            self.finished.append({**entry, "start": piece.start, "stop": piece.stop})
            self.done, active = piece.stop, pending
        meta = {
            "lanes": self.lanes, "done": self.done, "finished": self.finished,
            "groups": [{"start": p.start, "stop": p.stop, "logged": p.logged,
                        "rows": int(jax.tree.leaves(p.carry)[0].shape[0])} for p in active],
            "layout": {**dataclasses.asdict(self.layout), "chunk": self.layout.chunk,
                       "backend": jax.default_backend()},
        }
        state = None
        if active:  # carries of a chunk on the devices, or restored host rows, and their logs so far
            stop = active[-1].stop
            state = {"carry": [p.carry for p in active],
                     "logs": jax.tree.map(lambda x: x[self.done:stop], outputs.logs)}
        self.folder.save(self.step, state, meta)
        self.step += 1


def run_pieces(program: Program, grid: Grid, pieces: list[Piece], outputs: Outputs, *, segment: int,
               start: Start, folder: checkpoint.Folder | None = None, cost_aware: bool = False,
               progress: Progress | None = None) -> Clock:
    """Run every piece to the end, writing its logs and export into ``outputs``; after every segment,
    checkpoint (when ``folder`` is given and :meth:`Saver.due`) and report progress."""
    num_logs, chunk = program.learner.num_logs, program.layout.chunk
    clock = Clock()
    saver = None
    if folder is not None:
        saver = Saver(folder, program.layout, grid.lanes, num_logs, start.step, start.done, list(start.finished),
                      cost_aware=cost_aware)
    units = grid.lanes * num_logs
    units_done = start.done * num_logs + sum(p.lanes * max(p.logged - 1, 0) for p in pieces)
    start_fraction = units_done / units
    chunks_before = math.ceil(start.done / chunk)
    for k, piece in enumerate(pieces):
        logged = max(piece.logged, 1)
        for end, carry in _segments(program, grid, piece, outputs, segment, clock):
            units_done += piece.lanes * (end + 1 - logged)
            logged = end + 1
            if saver is not None and saver.due(end):
                t0 = time.perf_counter()
                pending = [p for p in pieces[k + 1:] if p.carry is not None]
                saver.save(Piece(piece.start, piece.stop, logged, carry), outputs, pending)
                clock.saves += 1
                clock.checkpoint_s += time.perf_counter() - t0
            if progress is not None:
                progress(SweepProgress(fraction=units_done / units, start_fraction=start_fraction,
                                       run_s=clock.run_s, chunk=chunks_before + k + 1,
                                       chunks=chunks_before + len(pieces), log_point=end))
    return clock


# == the whole sweep ==================================================================================
def fingerprint(config: dict[str, Any]) -> str:
    """16 hex digits identifying a configuration (and the checkpoint format)."""
    text = json.dumps({**config, "checkpoint_format": CHECKPOINT_FORMAT}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep(
    learner: Learner,
    axes: dict[str, Any] | None = None,
    seeds: int = 1,
    *,
    seed: int = 0,
    max_lanes: int | None = None,
    block_lanes: int | None = None,
    segments: int | None = None,
    memory_budget: float | None = None,
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
        max_lanes: most lanes per compiled call, the chunk size (default: what fits ``memory_budget``).
        block_lanes: lanes per cache block inside a device (default: automatic).
        segments: pieces the time axis is run in without a checkpoint interval (default 10 per chunk).
        memory_budget: bytes one compiled call may use (default: half the accelerators' memory, 2 GiB
            on CPU); with checkpoints on CPU a lane counts its carry twice (an asynchronous save holds
            the previous one until it is written).
        progress: ``callback(SweepProgress)`` after every segment.
        checkpoint_dir: if given, save the state there (see :mod:`jaxq.checkpoint`); a new run needs a
            new or empty folder.
        checkpoint_every: environment steps between saves (any number >= 1; saves land on log points,
            see :func:`plan_segment`). Default: at segment ends (about 10 per chunk), skipping those
            that would make saving cost more than :data:`SAVE_SHARE` of the run (:meth:`Saver.due`).
        resume: continue from the newest usable checkpoint in ``checkpoint_dir`` -- with any device
            count, backend, chunk size or checkpoint interval.

    Raises:
        ValueError: before anything is compiled, for an empty or repeated axis, an unknown name, a
            value outside its allowed range, a non-positive seed count, chunk size or checkpoint
            interval, ``resume`` without a checkpoint folder, a folder that holds something else, or
            a checkpoint whose configuration differs (naming what changed); after compiling, if no
            checkpoint step is usable.
    """
    t_start = time.perf_counter()
    grid = plan_grid(learner, axes, seeds, seed)
    if checkpoint_dir is None and (resume or checkpoint_every is not None):
        given = "resume=True" if resume else f"checkpoint_every={checkpoint_every}"
        raise ValueError(f"{given} needs a checkpoint folder (checkpoint_dir)")
    shapes = LaneShapes.of(learner, grid)
    if checkpoint_dir is not None:
        checkpoint.check_saveable(shapes.carry)
    devices = jax.devices()
    backend = jax.default_backend()
    copies = 2 if checkpoint_dir is not None and backend == "cpu" else 1
    layout = plan_layout(grid.lanes, shapes.lane_bytes(learner.num_logs, copies), _tree_bytes(shapes.carry),
                         len(devices), backend, max_lanes=max_lanes, block_lanes=block_lanes,
                         memory_budget=default_memory_budget(devices) if memory_budget is None else memory_budget)
    segment = plan_segment(learner.num_logs, learner.steps_per_log, checkpoint_every, segments)
    config = grid.config(learner)
    folder = None
    if checkpoint_dir is not None:
        folder = checkpoint.Folder(checkpoint_dir, {"fingerprint": fingerprint(config), "config": config},
                                   resume=resume)
    try:
        program = compile_program(learner, layout, shapes)
        outputs = Outputs.empty(shapes, grid.lanes, learner.num_logs)
        start = restore(folder, program, outputs) if resume else Start()
        pieces = plan_pieces(grid.lanes, layout.chunk, start.pieces, start.done)
        clock = run_pieces(program, grid, pieces, outputs, segment=segment, start=start, folder=folder,
                           cost_aware=checkpoint_every is None, progress=progress)
        if folder is not None:
            t0 = time.perf_counter()
            folder.close()  # the last save is written
            clock.checkpoint_s += time.perf_counter() - t0
    finally:
        if folder is not None:
            folder.close()
    return _result(learner, grid, outputs, config, {
        "compile_s": program.compile_s,
        "run_s": clock.run_s,
        "checkpoint_s": clock.checkpoint_s,
        "saves": clock.saves,
        "resumed_step": start.step - 1 if start.step else None,
        "wall_s": time.perf_counter() - t_start,
        "lanes_per_call": layout.chunk,
        "chunks": math.ceil(grid.lanes / layout.chunk),
        "block_lanes": layout.block,
        "devices": layout.devices,
        "processes": jax.process_count(),
        "backend": backend,
    })


def _result(learner: Learner, grid: Grid, outputs: Outputs, config: dict[str, Any],
            timing: dict[str, Any]) -> SweepResult:
    shape = [len(v) for v in grid.axes.values()] + [grid.seeds]

    def named(x: np.ndarray) -> np.ndarray:
        return x.reshape(*shape, *x.shape[1:])

    env_steps = grid.lanes * learner.steps
    run_s = timing["run_s"]
    timing = {**timing, "env_steps": env_steps, "lanes": grid.lanes,
              "env_steps_per_s": env_steps / run_s if run_s > 0 else float("nan")}
    names = list(grid.axes)
    coords = {**grid.axes, "seed": list(range(grid.seeds)),
              "t": [i * learner.steps_per_log for i in range(learner.num_logs + 1)]}
    return SweepResult(axes=[*names, "seed", "t"], coords=coords, logs=jax.tree.map(named, outputs.logs),
                       config=config, timing=timing, finals=jax.tree.map(named, outputs.finals))
