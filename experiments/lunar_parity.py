"""LunarLander parity: the JAX port vs Gymnasium's Box2D environment (jaxq.studies.lunar_parity).

    python experiments/lunar_parity.py [--quick] [--out DIR]
"""

from jaxq.studies import lunar_parity

if __name__ == "__main__":
    lunar_parity.main()
