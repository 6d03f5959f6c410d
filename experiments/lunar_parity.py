"""LunarLander parity: the JAX port vs Gymnasium's Box2D environment (jaxq.envs.lunar_lander.parity.compare).

    python experiments/lunar_parity.py [--quick] [--out DIR]
"""

from jaxq.envs.lunar_lander.parity import compare

if __name__ == "__main__":
    compare.main()
