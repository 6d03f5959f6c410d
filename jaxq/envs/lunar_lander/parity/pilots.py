"""Learned LunarLander pilots: small greedy MLPs trained in Box2D, flown in NumPy or JAX.

A pilot is a multi-layer perceptron ``obs [8] -> scores [4]`` (Q-values of a DQN, action logits of
a PPO policy) whose greedy action ``argmax(scores)`` (first index on ties) flies
``LunarLander-v3``: ``h_0 = obs``, ``h_{k+1} = act(h_k W_k + b_k)`` for the hidden layers,
``scores = h_L W_L + b_L``, with ``act`` ReLU or tanh. Each is stored as one ``.npz`` in
``pilot_weights/`` (``experiments/train_lunar_pilots.py`` trains and exports them with
Stable-Baselines3); flying one needs only NumPy or JAX.

Every file also holds a check set: observations and the training library's own scores and greedy
actions for them, so a forward pass can be verified against the network that was trained.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PILOT_DIR = Path(__file__).resolve().parent / "pilot_weights"
ACTIVATIONS = ("relu", "tanh")


@dataclasses.dataclass(frozen=True)
class Pilot:
    """A stored pilot.

    Attributes:
        name: file stem, e.g. ``"dqn_200k"``.
        weights: ``W_k [in, out]`` per layer; biases: ``b_k [out]``.
        activation: of the hidden layers, "relu" or "tanh".
        info: how it was trained (algorithm, steps, settings).
        check_obs: ``[n, 8]`` observations; check_scores ``[n, 4]`` and check_actions ``[n]``:
            the training library's outputs for them.
    """

    name: str
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str
    info: dict[str, Any]
    check_obs: np.ndarray
    check_scores: np.ndarray
    check_actions: np.ndarray

    @property
    def params(self) -> tuple[tuple[jax.Array, jax.Array], ...]:
        """The layers as a JAX pytree ``((W_0, b_0), ...)`` for :func:`scores_jax`."""
        return tuple((jnp.asarray(w), jnp.asarray(b)) for w, b in zip(self.weights, self.biases))


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not allowed; choose one of: "
                         f"{', '.join(ACTIVATIONS)}")
    return activation


def export(path: Path, layers: Sequence[tuple[np.ndarray, np.ndarray]], activation: str,
           check_obs: np.ndarray, check_scores: np.ndarray, check_actions: np.ndarray,
           info: dict[str, Any]) -> Path:
    """Write a pilot file: ``layers`` as ``(W [in, out], b [out])`` pairs, float32."""
    _check_activation(activation)
    arrays = {}
    for k, (w, b) in enumerate(layers):
        arrays[f"w{k}"] = np.asarray(w, np.float32)
        arrays[f"b{k}"] = np.asarray(b, np.float32)
    np.savez_compressed(path, activation=np.array(activation), info=np.array(json.dumps(info)),
                        check_obs=np.asarray(check_obs, np.float32),
                        check_scores=np.asarray(check_scores, np.float32),
                        check_actions=np.asarray(check_actions, np.int32), **arrays)
    return path


def available(folder: Path = PILOT_DIR) -> tuple[str, ...]:
    """Names of the stored pilots, sorted."""
    return tuple(sorted(p.stem for p in folder.glob("*.npz")))


def load(name: str, folder: Path = PILOT_DIR) -> Pilot:
    """The pilot stored as ``folder/name.npz``.

    Raises:
        ValueError: if there is no such pilot (naming the ones there are).
    """
    path = folder / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"pilot={name!r} is not stored; choose one of: "
                         f"{', '.join(available(folder)) or '(none)'}")
    with np.load(path) as data:
        n = sum(1 for key in data.files if key.startswith("w"))
        return Pilot(name=name,
                     weights=tuple(data[f"w{k}"] for k in range(n)),
                     biases=tuple(data[f"b{k}"] for k in range(n)),
                     activation=_check_activation(str(data["activation"])),
                     info=json.loads(str(data["info"])),
                     check_obs=data["check_obs"], check_scores=data["check_scores"],
                     check_actions=data["check_actions"])


def scores_numpy(pilot: Pilot, obs: np.ndarray) -> np.ndarray:
    """The network's outputs ``[..., 4]`` for observations ``[..., 8]``, in float32 NumPy."""
    h = np.asarray(obs, np.float32)
    last = len(pilot.weights) - 1
    for k, (w, b) in enumerate(zip(pilot.weights, pilot.biases)):
        h = h @ w + b
        if k < last:
            h = np.maximum(h, 0.0) if pilot.activation == "relu" else np.tanh(h)
    return h


def act_numpy(pilot: Pilot, obs: np.ndarray) -> np.ndarray:
    """Greedy actions (int) for observations ``[..., 8]``."""
    return np.argmax(scores_numpy(pilot, obs), axis=-1)


def scores_jax(params: tuple, activation: str, obs: jax.Array) -> jax.Array:
    """:func:`scores_numpy` in JAX, for the layers ``params`` (:attr:`Pilot.params`);
    ``activation`` is static."""
    _check_activation(activation)
    h = jnp.asarray(obs, jnp.float32)
    for k, (w, b) in enumerate(params):
        h = h @ w + b
        if k < len(params) - 1:
            h = jax.nn.relu(h) if activation == "relu" else jnp.tanh(h)
    return h


def act_jax(params: tuple, activation: str, obs: jax.Array) -> jax.Array:
    """Greedy int32 actions for observations ``[..., 8]`` (first index on ties, as NumPy)."""
    return jnp.argmax(scores_jax(params, activation, obs), axis=-1).astype(jnp.int32)


__all__ = ["ACTIVATIONS", "PILOT_DIR", "Pilot", "act_jax", "act_numpy", "available", "export",
           "load", "scores_jax", "scores_numpy"]
