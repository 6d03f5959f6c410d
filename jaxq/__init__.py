"""jaxq: Q-learning at scale in JAX.

Pure-functional environments and learners, jitted and ``vmap``-ed over thousands of seeds and
hyper-parameters in one call, compared against exact solutions wherever they exist::

    import jaxq
    env, params = jaxq.make("Chain", depth=8)
    q_star = jaxq.exact.q_star(env.tabular(params), 0.9)

Submodules and the names below load on first use, so ``import jaxq`` does not start JAX (the
command line sets device options first).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"envs", "exact", "td", "learners", "replay", "sweep", "checkpoint", "metrics", "plots",
               "outputs", "studies", "bench", "validation", "types", "rng", "hparams", "policy", "distributed"}
_FUNCTIONS = {"make": "jaxq.envs", "register": "jaxq.envs", "registered": "jaxq.envs",
              "make_learner": "jaxq.learners", "load_policy": "jaxq.policy"}

__all__ = sorted(_SUBMODULES | set(_FUNCTIONS) | {"__version__"})


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        module = importlib.import_module(_FUNCTIONS[name])
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxq.{name}")
    raise AttributeError(f"module 'jaxq' has no attribute {name!r}")
