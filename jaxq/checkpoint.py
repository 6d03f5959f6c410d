"""Checkpoint folders: orbax steps that survive crashes and corruption, checked by cheap checksums.

A checkpoint folder belongs to one run and holds:

* ``run.json``: the run's identity (a fingerprint and the configuration it hashes), written when
  the run starts. A folder without it that is not empty holds something else and is refused; a
  resume whose configuration differs is refused, naming what changed;
* ``<step>/``: orbax steps, each a JSON ``meta`` and, when there is one, a pytree ``state`` of arrays.
  orbax writes a step into a temporary folder and renames it once complete, so a crash during a save
  leaves every older step as it was; the newest :data:`KEEP` steps are kept. Saves are asynchronous:
  :meth:`Folder.save` returns once the arrays are on the host (orbax copies device arrays before it
  returns, so the caller may donate them afterwards) and the files are written in the background;
  each save of arrays is timed from its start until its files are written (``Folder.state_save_s``,
  what the sweep's default checkpoint interval spaces its saves by);
* ``finished/<name>.npz``: the leaves of a pytree written once (to a temporary file that is renamed)
  and listed, with their checksums, in ``meta["finished"]`` of every later step;
* ``rejected/<step>/``: steps found unusable on a resume, moved aside (kept for inspection).

Integrity: ``meta["checksums"]`` holds a :func:`checksum` of every array, computed where the array
lives (one pass over memory, no host copy of a device state). A restore recomputes them; a step
whose arrays, meta or finished files cannot be read or do not match is reported (which step, why)
and the next older one is tried. Only when no step is usable is it an error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

KEEP = 3  # newest steps kept: the latest and two to fall back on
IDENTITY = "run.json"
FINISHED = "finished"
REJECTED = "rejected"


class CheckpointWarning(UserWarning):
    """A checkpoint step was skipped on resume (it cannot be read or does not match its checksums)."""


# -- checksums ---------------------------------------------------------------------------------------
_GOLDEN = np.uint32(0x9E3779B1)
_BLOCK = 1 << 18  # words per NumPy block: temporaries stay in the cache


def _mixed(words: Any, keys: Any) -> Any:
    """``fmix(w ^ k)`` for uint32 words and position keys, NumPy or JAX arrays alike (uint32 arithmetic
    wraps): MurmurHash3's 32-bit finaliser, a bijection that mixes every input bit."""
    h = words ^ keys
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _host_sum(x: np.ndarray, offset: int = 0) -> np.uint32:
    """``sum_i fmix(w_i ^ (offset + i) * golden)`` over the uint32 words ``w_i`` of a host array, in
    cache-sized blocks of a view (no copy of ``x``)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    size = flat.dtype.itemsize
    if flat.dtype == np.bool_ or size in (1, 2):
        flat = flat.view({1: np.uint8, 2: np.uint16}[size])
    elif size % 4 == 0:
        flat = flat.view(np.uint32)
    else:
        raise ValueError(f"cannot checksum arrays of dtype {x.dtype}")
    steps = np.arange(_BLOCK, dtype=np.uint32) * _GOLDEN
    total = 0
    for a in range(0, flat.size, _BLOCK):
        words = flat[a:a + _BLOCK].astype(np.uint32, copy=False)
        keys = steps[: words.size] + np.uint32(((offset + a) * int(_GOLDEN)) % 2**32)
        total += int(_mixed(words, keys).sum(dtype=np.uint32))
    return np.uint32(total % 2**32)


@jax.jit
def _device_sum(x: jax.Array, offset: jax.Array) -> jax.Array:
    """:func:`_host_sum` of one device's shard (on that device; no host copy)."""
    if x.dtype == jnp.bool_:
        words = x.astype(jnp.uint32)
    else:
        unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[np.dtype(x.dtype).itemsize]
        words = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
    index = jnp.zeros(words.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(words.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * np.uint32(stride % 2**32)
        stride *= words.shape[axis]
    return _mixed(words, (index + offset) * _GOLDEN).sum(dtype=jnp.uint32)


def _array_sum(x: jax.Array) -> np.uint32:
    """This process's part of a global array's sum: its shards (one replica each), split along the
    first axis only, each at its position in the whole array. Shards of at least :data:`_BLOCK` words
    are summed by XLA on their devices (all dispatched before any is read, so devices work side by
    side; on a CPU this is about 3x NumPy's speed); smaller CPU shards, which would each cost a
    compilation, through a NumPy view."""
    row = math.prod(x.shape[1:])
    parts = []
    for shard in x.addressable_shards:
        if shard.replica_id != 0:
            continue
        if any(s != slice(None) and (s.start, s.stop) != (0, n) for s, n in zip(shard.index[1:], x.shape[1:])):
            raise ValueError("checksums need arrays split along their first axis only")
        offset = (shard.index[0].start or 0) * row if shard.index else 0
        if shard.device.platform == "cpu" and shard.data.size < _BLOCK:
            parts.append(_host_sum(np.asarray(shard.data), offset))
        else:
            parts.append(_device_sum(shard.data, np.uint32(offset % 2**32)))
    return np.uint32(sum(int(part) for part in parts) % 2**32)


def check_saveable(tree: Any) -> None:
    """Raise a ValueError naming the first leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct`` s) that a
    checkpoint cannot hold: typed PRNG keys (keep raw uint32 keys instead), and elements wider than 4
    bytes (64-bit or complex numbers), which the checksums do not cover."""
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise ValueError(f"{jax.tree_util.keystr(path)} holds typed PRNG keys ({x.dtype}); keep keys in a "
                             "carry as raw uint32 words (jax.random.PRNGKey, or jax.random.key_data)")
        if np.dtype(x.dtype).itemsize > 4:
            raise ValueError(f"{jax.tree_util.keystr(path)} holds {x.dtype} values; a checkpointed carry holds "
                             "elements of at most 4 bytes (e.g. float32, int32; keep jax_enable_x64 off)")


def _without_empty(tree: Any) -> Any:
    """``tree`` with its zero-size leaves (an unused sum tree, say) as None: orbax cannot store them."""
    return jax.tree.map(lambda x: x if math.prod(x.shape) else None, tree)


def _with_empty(target: Any, stored: Any) -> Any:
    """The inverse of :func:`_without_empty` for a restore: ``stored`` with the zero-size leaves of
    ``target`` (``jax.ShapeDtypeStruct`` s) put back as empty arrays on their shardings."""
    def leaf(want: Any, got: Any) -> Any:
        if math.prod(want.shape):
            return got
        empty = np.zeros(want.shape, want.dtype)
        return jax.device_put(empty, want.sharding) if want.sharding is not None else empty

    return jax.tree.map(leaf, target, stored)


def checksum(tree: Any) -> dict[str, str]:
    """``{path: 8 hex digits}`` for every array leaf of ``tree``: ``sum_i fmix(w_i ^ i * golden)``
    (mod 2^32) over its uint32 words ``w_i`` at their row-major positions ``i``.

    The sum does not depend on the order it is taken in, so it is computed where the data lives --
    host arrays in cache-sized blocks, device arrays shard by shard on their devices (small CPU
    shards through NumPy views), every process its own shards, added up -- without a host copy of
    the state, and gives the same bits for any sharding, process count or backend. Any one changed
    word changes it (``fmix`` is a bijection); independent changes go unnoticed with probability
    2^-32 per array.
    """
    check_saveable(tree)
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    sums = np.asarray([_array_sum(x) if isinstance(x, jax.Array) else _host_sum(np.asarray(x)) for _, x in leaves],
                      dtype=np.uint32)
    distributed = [i for i, (_, x) in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable]
    if distributed:  # add up the other processes' shards
        parts = multihost_utils.process_allgather(sums[distributed])
        sums[distributed] = np.sum(parts, axis=0, dtype=np.uint32)
    return {jax.tree_util.keystr(path): f"{int(s):08x}" for (path, _), s in zip(leaves, sums)}


# -- identity ------------------------------------------------------------------------------------------
def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, dict) and config:
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: config}


def changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable differences between two configurations: ``"axes.gamma: [0.9] -> [0.95]"``."""
    a, b = _flat(normalised(saved)), _flat(normalised(now))
    missing = object()
    return [f"{key}: {a.get(key, '(absent)')} -> {b.get(key, '(absent)')}"
            for key in sorted(set(a) | set(b)) if a.get(key, missing) != b.get(key, missing)]


def normalised(config: Any) -> Any:
    """``config`` as JSON would give it back (tuples as lists, other objects by their repr)."""
    return json.loads(json.dumps(config, sort_keys=True, default=repr))


# -- the folder --------------------------------------------------------------------------------------
@dataclass
class Restored:
    """A usable step: its number, its meta, its arrays (None if it had none) and the leaves of its
    finished pytrees (``meta["finished"]`` order)."""

    step: int
    meta: dict[str, Any]
    state: Any
    finished: list[list[np.ndarray]]


def _primary() -> bool:
    return jax.process_index() == 0


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _fsync_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write a file atomically: into a temporary sibling, flushed to disk, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Folder:
    """The checkpoint folder of one run.

    Args:
        directory: the folder (created if missing).
        identity: ``{"fingerprint": str, "config": dict}`` of the run.
        resume: continue the run saved there; otherwise the folder must be new or empty.

    Raises:
        ValueError: ``resume`` without a folder; a folder that holds something other than a jaxq
            checkpoint; a fresh run in a folder that already holds one; a resume whose
            configuration differs from the saved one (naming what changed).
    """

    def __init__(self, directory: str | os.PathLike, identity: dict[str, Any], *, resume: bool):
        self.path = Path(directory).absolute()
        self.identity = {"fingerprint": identity["fingerprint"], "config": normalised(identity["config"])}
        marker = self.path / IDENTITY
        contents = [p for p in self.path.iterdir() if p.name != f".{IDENTITY}.tmp"] if self.path.is_dir() else []
        if resume:
            if not self.path.is_dir():
                raise ValueError(f"resume=True but there is no checkpoint folder {self.path}; start the run "
                                 "without resume first (or check the path)")
            if not marker.is_file():
                what = "holds something else" if contents else "is empty"
                raise ValueError(f"{self.path} {what}: it has no {IDENTITY}, so it is not a jaxq checkpoint "
                                 "folder; resume needs the folder a checkpointed run wrote")
            saved = json.loads(marker.read_text())
            if saved.get("fingerprint") != self.identity["fingerprint"]:
                changed = changes(saved.get("config", {}), self.identity["config"]) or ["(fingerprint only)"]
                raise ValueError(f"the checkpoint in {self.path} was written by a different run; resuming with a "
                                 "changed configuration is refused. Changed: " + "; ".join(changed))
        elif self.path.exists() and (not self.path.is_dir() or contents):
            if marker.is_file():
                raise ValueError(f"{self.path} already holds a checkpoint; resume it (resume=True, --resume) or "
                                 "choose another folder")
            raise ValueError(f"{self.path} holds something else (no {IDENTITY}); a checkpoint needs a new or "
                             "empty folder")
        _barrier("jaxq-checkpoint-checked")
        if _primary():
            (self.path / FINISHED).mkdir(parents=True, exist_ok=True)
            if not resume:
                _fsync_write(marker, lambda f: f.write(json.dumps(self.identity, indent=1).encode()))
            for leftover in (self.path / FINISHED).glob(".*.tmp"):
                leftover.unlink()
        _barrier("jaxq-checkpoint-ready")
        self._manager: ocp.CheckpointManager | None = None
        self.state_saved_at: float | None = None  # time.perf_counter() when the last save of arrays started
        self.state_save_s: float | None = None  # its wall seconds until its files were written (None: writing)
        self._timing: bool = False  # whether the save being written is that one

    @property
    def manager(self) -> ocp.CheckpointManager:
        """orbax's manager of the steps: uncompressed arrays (no host copy for a compressor), written
        asynchronously; the newest :data:`KEEP` steps kept; leftovers of interrupted saves removed."""
        if self._manager is None:
            self._manager = ocp.CheckpointManager(
                self.path,
                item_handlers={"state": ocp.PyTreeCheckpointHandler(use_compression=False),
                               "meta": ocp.JsonCheckpointHandler()},
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=KEEP, create=True, enable_async_checkpointing=True, cleanup_tmp_directories=True,
                    async_options=ocp.AsyncOptions(post_finalization_callback=self._on_written)),
            )
        return self._manager

    # -- saving ------------------------------------------------------------------------------------
    def save(self, step: int, state: Any | None, meta: dict[str, Any]) -> None:
        """Start saving checkpoint ``step``: ``state`` (a pytree of device or host arrays, or None) and
        ``meta`` (JSON-ready). Returns once the arrays are copied to the host; the files are written
        in the background (a later save or :meth:`close` waits for them)."""
        self.manager.wait_until_finished()  # the previous save's files (orbax would wait here too)
        self._timing = state is not None
        if self._timing:
            self.state_saved_at, self.state_save_s = time.perf_counter(), None
        meta = {**meta, "fingerprint": self.identity["fingerprint"], "arrays": state is not None,
                "checksums": checksum(state) if state is not None else {}}
        items = {"meta": ocp.args.JsonSave(meta)}
        if state is not None:
            items["state"] = ocp.args.PyTreeSave(_without_empty(state))
        self.manager.save(step, args=ocp.args.Composite(**items))

    def _on_written(self) -> None:
        """orbax's callback once a save's files are complete (on its writing thread): the cost of a save
        of arrays, from its start (what it blocked plus its background writes)."""
        if self._timing:
            self.state_save_s = time.perf_counter() - self.state_saved_at

    def write_finished(self, name: str, tree: Any) -> dict[str, Any]:
        """Write the leaves of ``tree`` (host arrays) once as ``finished/<name>.npz`` (on the primary
        process) and return the entry to list in ``meta["finished"]``: ``{"name", "checksums"}``."""
        leaves = jax.tree.leaves(tree)
        entry = {"name": name, "checksums": checksum(leaves)}
        if _primary():
            _fsync_write(self.path / FINISHED / f"{name}.npz",
                         lambda f: np.savez(f, **{str(i): leaf for i, leaf in enumerate(leaves)}))
        return entry

    def _read_finished(self, entry: dict[str, Any]) -> list[np.ndarray]:
        with np.load(self.path / FINISHED / f"{entry['name']}.npz") as data:
            leaves = [data[str(i)] for i in range(len(data.files))]
        if checksum(leaves) != entry["checksums"]:
            raise ValueError(f"finished/{entry['name']}.npz does not match its checksums")
        return leaves

    def close(self) -> None:
        """Wait for the last save to be written and release the manager."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None

    # -- restoring ---------------------------------------------------------------------------------
    def restore(self, target_of: Callable[[dict[str, Any]], Any]) -> Restored | None:
        """The newest usable step, or None if no step is complete yet.

        ``target_of(meta)`` gives the expected state as a pytree of ``jax.ShapeDtypeStruct`` (with a
        ``sharding`` to restore a leaf straight onto devices, without one to get a NumPy array).
        Unusable steps newer than the one returned are reported with a :class:`CheckpointWarning`
        and moved to ``rejected/``, so that the run's next saves can take their numbers.

        Raises:
            ValueError: if there are steps and none is usable (listing each one's reason).
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            warnings.warn(f"{self.path} holds no complete checkpoint step yet: starting from the beginning",
                          CheckpointWarning, stacklevel=2)
        reasons: list[str] = []
        found = None
        for step in steps:
            try:
                found = self._restore_step(step, target_of)
                break
            except Exception as error:  # orbax, tensorstore and NumPy raise many kinds for damaged files
                reason = f"checkpoint step {step} in {self.path} is unusable: {type(error).__name__}: {error}"
                reasons.append(reason)
                warnings.warn(reason + ("; trying an older step" if step != steps[-1] else ""),
                              CheckpointWarning, stacklevel=2)
        if steps and found is None:
            raise ValueError("no usable checkpoint step; " + " | ".join(reasons))
        rejected = [s for s in steps if found is None or s > found.step]
        if rejected:
            self.close()
            _barrier("jaxq-checkpoint-reject")
            if _primary():
                for step in rejected:
                    destination = self.path / REJECTED / str(step)
                    shutil.rmtree(destination, ignore_errors=True)
                    destination.parent.mkdir(exist_ok=True)
                    os.replace(self.path / str(step), destination)
            _barrier("jaxq-checkpoint-rejected")
        return found

    def _restore_step(self, step: int, target_of: Callable[[dict[str, Any]], Any]) -> Restored:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        if meta.get("fingerprint") != self.identity["fingerprint"]:
            raise ValueError("it was written by a different run (fingerprint)")
        state = None
        if meta["arrays"]:
            target = target_of(meta)
            stored = _without_empty(target)
            args = jax.tree.map(
                lambda s: (ocp.ArrayRestoreArgs(sharding=s.sharding, global_shape=s.shape, dtype=s.dtype)
                           if s.sharding is not None else ocp.RestoreArgs(restore_type=np.ndarray, dtype=s.dtype)),
                stored)
            state = _with_empty(target, self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=stored, restore_args=args))).state)
            for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(target)):
                if tuple(got.shape) != tuple(want.shape):
                    raise ValueError(f"array {jax.tree_util.keystr(path)} has shape {tuple(got.shape)}, "
                                     f"expected {tuple(want.shape)}")
            sums = checksum(state)
            if sums != meta["checksums"]:
                bad = [k for k, v in sums.items() if meta["checksums"].get(k) != v]
                raise ValueError(f"its arrays do not match their checksums ({', '.join(bad)})")
        finished = [self._read_finished(entry) for entry in meta.get("finished", [])]
        return Restored(step=step, meta=meta, state=state, finished=finished)
