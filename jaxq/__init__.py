"""jaxq: Q-learning at scale in JAX.

Pure-functional environments and learners, jitted and ``vmap``-ed over thousands of seeds and
hyper-parameters in one call, compared against exact solutions wherever they exist.
"""

from jaxq.envs import make, register, registered

__version__ = "0.1.0"

__all__ = ["make", "register", "registered", "__version__"]
