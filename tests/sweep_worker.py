"""A small sweep in a process of its own, for the tests that kill it, resume it on other device
counts, or compare it across processes: ``python sweep_worker.py SPEC`` (SPEC: JSON, see ``SPEC``).
It writes its logs to ``SPEC["out"]`` (an .npz) when it finishes."""

import json
import os
import sys

SPEC = {"learner": "q", "devices": 2, "steps": 600, "log_every": 100, "axes": {"depth": [2, 5], "gamma": [0.9, 0.99]},
        "seeds": 4, "seed": 3, "options": {}, "out": None}
# DQN on CartPole, small: its carry holds a replay buffer, an Adam state and a target network
DQN = dict(widths=(16,), batch_size=16, buffer_size=256, learning_starts=32, train_freq=4, eval_every=200,
           eval_episodes=1)


def learner(spec):
    import jaxq
    from jaxq.learners import make_learner

    if spec["learner"] == "dqn":
        env, params = jaxq.make("CartPole-v1")
        return make_learner("dqn", env, params, steps=spec["steps"], log_every=spec["log_every"], **DQN)
    env, params = jaxq.make("Chain", depth=5, max_depth=5)
    return make_learner("q", env, params, steps=spec["steps"], log_every=spec["log_every"], step_size="constant")


def finals(result):
    """The leaves of each lane's export (a DQN's final networks), by position: ``{"final_0": ...}``."""
    import jax

    return {f"final_{i}": leaf for i, leaf in enumerate(jax.tree.leaves(result.finals))}


def run(spec, **options):
    from jaxq.sweep import sweep

    return sweep(learner(spec), spec["axes"], seeds=spec["seeds"], seed=spec["seed"], **{**spec["options"], **options})


if __name__ == "__main__":
    spec = {**SPEC, **json.loads(sys.argv[1])}
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={spec['devices']}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import numpy as np

    result = run(spec)
    np.savez(spec["out"], **result.logs, **finals(result), devices=result.timing["devices"],
             lanes_per_call=result.timing["lanes_per_call"])
