"""Trained policies as files: every lane's final Q-network, and a plain greedy callable to fly it.

``save_policies(out, result, learner)`` writes ``policies.npz`` (each network parameter with a
leading lane axis) and ``policies.json`` (the network, the environment, and which grid point and
seed each lane is). ``load_policy(out, lane=i)`` returns a :class:`Policy`: ``policy(obs) -> int``
greedy action, computed with NumPy alone, so it runs in any Python loop -- e.g. in Gymnasium's
Box2D ``LunarLander-v3``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxq.learners.networks import numpy_q_values

POLICY_ARRAYS, POLICY_INFO = "policies.npz", "policies.json"


def _lane_arrays(result: Any, learner: Any) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Every network parameter as ``path -> [lanes, ...]`` and each lane's grid point and seed.

    Raises:
        ValueError: if the learner's network is not the standard MLP (``widths``, ``activation``),
            which is what :class:`Policy` evaluates.
    """
    if result.finals is None or getattr(learner, "widths", None) is None:
        raise ValueError("only runs of a learner with a standard MLP Q-network (dqn with `widths`) give policies")
    points = [dict(point, seed=seed) for _, point in result.grid_points() for seed in result.coords["seed"]]
    arrays = {}

    def flatten(prefix: str, tree: Any) -> None:
        if isinstance(tree, dict):
            for k, v in tree.items():
                flatten(f"{prefix}/{k}" if prefix else k, v)
        else:
            value = np.asarray(tree)
            arrays[prefix] = value.reshape(len(points), *value.shape[len(result.grid_axes) + 1:])

    flatten("", result.finals)
    return arrays, points


def _nest(arrays: dict[str, np.ndarray], lane: int) -> dict[str, Any]:
    """Lane ``lane`` of ``path -> [lanes, ...]`` arrays as flax's nested parameter dict."""
    params: dict[str, Any] = {}
    for path, value in arrays.items():
        node = params
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value[lane]
    return params


def lane_policies(result: Any, learner: Any) -> list["Policy"]:
    """The greedy policy of every lane of a finished run, in lane order (grid points, then seeds)."""
    arrays, points = _lane_arrays(result, learner)
    return [Policy(params=_nest(arrays, i), activation=learner.activation, env=learner.env.name, lane=i, point=p)
            for i, p in enumerate(points)]


def save_policies(out: Path, result: Any, learner: Any) -> Path:
    """Write every lane's exported network (``result.finals``) and its description into ``out``."""
    arrays, points = _lane_arrays(result, learner)
    info = {
        "env": learner.env.name,
        "network": {"widths": list(learner.widths), "activation": learner.activation,
                    "num_actions": learner.num_actions},
        "axes": result.grid_axes + ["seed"],
        "lanes": points,
    }
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / POLICY_ARRAYS, **arrays)
    (out / POLICY_INFO).write_text(json.dumps(info, indent=2, default=float) + "\n")
    return out / POLICY_ARRAYS


@dataclasses.dataclass(frozen=True)
class Policy:
    """The greedy policy of one trained lane: ``policy(obs) -> int``, ``argmax_a Q(obs, a)``.

    Attributes:
        params: the network's parameters (NumPy arrays, flax layout).
        activation: the hidden activation.
        env: the environment it was trained on.
        lane: its lane, with ``point`` (the grid point's hyper-parameters and its seed).
    """

    params: dict[str, Any]
    activation: str
    env: str
    lane: int
    point: dict[str, Any]

    def q_values(self, obs: Any) -> np.ndarray:
        """``[A]`` values of one observation (``[N, A]`` for ``[N, obs_dim]``)."""
        return numpy_q_values(self.params, np.asarray(obs, np.float32), self.activation)

    def __call__(self, obs: Any) -> int:
        return int(np.argmax(self.q_values(np.ravel(np.asarray(obs, np.float32)))))


def load_policy(directory: str | os.PathLike, lane: int = 0) -> Policy:
    """The greedy policy of lane ``lane`` of the run saved in ``directory`` (``jaxq train``'s ``--out``).

    Raises:
        ValueError: if ``directory`` holds no saved policies, or ``lane`` is out of range.
    """
    directory = Path(directory)
    if not (directory / POLICY_ARRAYS).is_file() or not (directory / POLICY_INFO).is_file():
        raise ValueError(f"{directory} holds no policies ({POLICY_ARRAYS} and {POLICY_INFO}); give the --out "
                         "folder of a `jaxq train` run")
    info = json.loads((directory / POLICY_INFO).read_text())
    lanes = len(info["lanes"])
    if isinstance(lane, bool) or not isinstance(lane, (int, np.integer)) or not 0 <= lane < lanes:
        raise ValueError(f"lane={lane!r} is not allowed; {directory} holds lanes 0 .. {lanes - 1}")
    with np.load(directory / POLICY_ARRAYS) as arrays:
        params = _nest({path: arrays[path] for path in arrays.files}, lane)
    return Policy(params=params, activation=info["network"]["activation"], env=info["env"], lane=int(lane),
                  point=info["lanes"][lane])
