"""Orbax save/restore of whole sweep states, with integrity and identity checks.

A checkpoint holds a pytree of arrays and a JSON ``meta`` dict. Two guards make restoring safe:

* ``meta["fingerprint"]`` identifies the run that wrote it (the sweep's full configuration); a
  restore with a different fingerprint raises instead of silently continuing another experiment;
* ``meta["sha256"]`` is a digest of every array's dtype, shape and bytes at save time; a restore
  whose arrays do not hash to it (a truncated or edited file) raises.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def digest(tree: Any) -> str:
    """SHA-256 over the tree structure and every leaf's dtype, shape and bytes."""
    h = hashlib.sha256(str(jax.tree.structure(tree)).encode())
    for leaf in jax.tree.leaves(tree):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _manager(directory: str | os.PathLike) -> ocp.CheckpointManager:
    path = Path(directory).absolute()
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def save(directory: str | os.PathLike, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Write ``state`` (a pytree of arrays) and ``meta`` as checkpoint ``step`` under ``directory``."""
    state = jax.device_get(state)
    meta = {**meta, "sha256": digest(state)}
    with _manager(directory) as manager:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step in ``directory``, or None."""
    if not Path(directory).exists():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def restore(directory: str | os.PathLike, like: Any, fingerprint: str,
            step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Load checkpoint ``step`` (default: the latest) shaped like the pytree ``like``.

    Raises:
        FileNotFoundError: no checkpoint in ``directory``.
        ValueError: the checkpoint belongs to another run (fingerprint), does not have the structure
            of ``like``, or its arrays do not match their saved digest (corruption).
    """
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    with _manager(directory) as manager:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        if meta.get("fingerprint") != fingerprint:
            raise ValueError(
                f"the checkpoint in {directory} was written by a different run; its configuration "
                f"does not match this one (written: {meta.get('fingerprint')}; now: {fingerprint})"
            )
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), like)
        try:
            state = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target))).state
        except Exception as error:  # orbax raises many kinds for damaged files
            raise ValueError(f"checkpoint step {step} in {directory} cannot be read: {error}") from error
    state = jax.tree.map(np.asarray, state)
    if digest(state) != meta.get("sha256"):
        raise ValueError(f"checkpoint step {step} in {directory} is corrupt: its arrays do not match their digest")
    return state, meta
