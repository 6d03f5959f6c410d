"""Q-networks for deep Q-learning: an observation in, one value per action out.

:class:`QNetwork` is a flax MLP ``obs -> [A]``; :func:`check_network` verifies any flax module
against an environment's observation before anything is compiled; :func:`numpy_q_values` evaluates
a :class:`QNetwork`'s parameters with NumPy alone (for policies run outside JAX).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": nn.tanh, "elu": nn.elu, "gelu": nn.gelu, "silu": nn.silu,
}
NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))),  # flax's tanh form
}


class QNetwork(nn.Module):
    """``Q(s, .) = W_L act(... act(W_1 flatten(s) + b_1) ...) + b_L``: hidden ``widths``, ``num_actions`` outputs."""

    widths: tuple[int, ...]
    num_actions: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = jnp.ravel(obs).astype(jnp.float32)
        for width in self.widths:
            x = ACTIVATIONS[self.activation](nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


def check_network(network: nn.Module, obs: Any, num_actions: int) -> None:
    """``network.init``/``apply`` must accept one observation like ``obs`` (an array or its shape and
    dtype) and return ``[num_actions]``; checked by shape inference, nothing is compiled.

    Raises:
        ValueError: naming the observation shape and what the network did with it.
    """
    try:
        params = jax.eval_shape(network.init, jax.random.PRNGKey(0), obs)
        out = jax.eval_shape(network.apply, params, obs)
    except Exception as error:  # flax raises several kinds for mismatched input sizes
        raise ValueError(f"network does not fit the observation of shape {tuple(obs.shape)}: "
                         f"{type(error).__name__}: {error}") from None
    if tuple(out.shape) != (num_actions,):
        raise ValueError(f"network returns shape {tuple(out.shape)} for an observation of shape "
                         f"{tuple(obs.shape)}; it must return one value per action, ({num_actions},)")


def numpy_q_values(params: dict[str, Any], obs: np.ndarray, activation: str) -> np.ndarray:
    """A :class:`QNetwork`'s values for ``obs`` (``[obs_dim]`` or ``[N, obs_dim]``) with NumPy alone."""
    layers = params["params"]
    x = np.asarray(obs, np.float32)
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1)
    names = sorted(layers, key=lambda n: int(n.split("_")[-1]))
    for i, name in enumerate(names):
        x = x @ np.asarray(layers[name]["kernel"]) + np.asarray(layers[name]["bias"])
        if i < len(names) - 1:
            x = NUMPY_ACTIVATIONS[activation](x)
    return x
