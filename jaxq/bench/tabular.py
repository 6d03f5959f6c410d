"""``jaxq bench tabular``: env steps/s of a tabular Q-learning sweep on Chain, against its peers.

Measured side by side in one run, on the same algorithm (Q-learning, epsilon-greedy with random
tie-breaking, constant step size, Chain "reset", time limit 1000):

* jaxq: one ``sweep`` call over depth x gamma x seeds (all lanes vmapped and sharded over devices),
  and the same sweep at 1 ... 65536 lanes to show how throughput scales;
* peer "numpy loop": the classic way, a Python loop over steps with NumPy arrays, one seed;
* peer "jit, loop over seeds": the jaxq learner jitted for one lane and called once per seed from
  Python (no vmap).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxq.bench.timing import compile_and_time, report


def numpy_q_learning(depth: int, steps: int, gamma: float, alpha: float, epsilon: float,
                     seed: int = 0, time_limit: int = 1000) -> np.ndarray:
    """Tabular Q-learning on Chain(depth), variant "reset", written as a plain NumPy loop."""
    rng = np.random.default_rng(seed)
    q = np.zeros((depth + 1, 2))
    s, t = 0, 0
    for _ in range(steps):
        if rng.random() < epsilon:
            a = int(rng.integers(2))
        else:
            best = np.flatnonzero(q[s] == q[s].max())
            a = int(best[rng.integers(best.size)])
        terminated = a == 1 and s == depth - 1
        s_next = depth if terminated else (s + 1 if a == 1 else 0)
        reward = 1.0 if terminated else 0.0
        t += 1
        target = reward + (0.0 if terminated else gamma * q[s_next].max())
        q[s, a] += alpha * (target - q[s, a])
        if terminated or t >= time_limit:
            s, t = 0, 0
        else:
            s = s_next
    return q


def _learner(max_depth: int, steps: int):
    import jaxq
    from jaxq.learners import make_learner

    env, params = jaxq.make("Chain", depth=max_depth, max_depth=max_depth)
    return make_learner("q", env, params, steps=steps, log_every=steps // 10, step_size="constant",
                        log_bias=False, log_policy_value=False)


def _sweep_rate(learner: Any, axes: dict[str, list], seeds: int) -> dict[str, float]:
    from jaxq.sweep import sweep

    fixed = {"alpha": [0.1], "epsilon": [0.3]}
    result = sweep(learner, {**axes, **fixed}, seeds=seeds)
    return {"lanes": result.timing["lanes"], "env_steps_per_s": result.timing["env_steps_per_s"],
            "compile_s": result.timing["compile_s"], "run_s": result.timing["run_s"],
            "devices": result.timing["devices"]}


def _jit_loop_rate(learner: Any, seeds: int) -> dict[str, float]:
    """The learner jitted for one lane, called from a Python loop over seeds."""
    import jax
    import jax.numpy as jnp

    hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in
          {**learner.defaults(), "alpha": 0.1, "epsilon": 0.3, "gamma": 0.9}.items()}

    def one_seed(key):
        carry = learner.init(key, hp)
        return learner.run(carry, hp, 1, learner.num_logs)[1]["error"]

    key = jax.random.PRNGKey(0)
    compile_s, _ = compile_and_time(one_seed, key, repeats=1)
    run = jax.jit(one_seed)
    jax.block_until_ready(run(key))
    t0 = time.perf_counter()
    for s in range(seeds):
        jax.block_until_ready(run(jax.random.fold_in(key, s)))
    elapsed = time.perf_counter() - t0
    return {"lanes": 1, "env_steps_per_s": seeds * learner.steps / elapsed, "compile_s": compile_s,
            "run_s": elapsed, "devices": 1}


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark: headline sweep, lane scaling, and both peers, in one process."""
    depths, gammas = [2, 8, 32], [0.9, 0.99]
    steps = 2_000 if quick else 20_000
    headline_seeds = 16 if quick else 1024  # 6 grid points x 1024 = 6144 lanes
    scaling = [1, 16, 256] if quick else [1, 16, 256, 4096, 65536]
    numpy_steps = 2_000 if quick else 50_000

    learner = _learner(max(depths), steps)
    rows: list[dict[str, Any]] = []
    headline = _sweep_rate(learner, {"depth": depths, "gamma": gammas}, headline_seeds)
    rows.append({"method": f"jaxq sweep, depth {depths} x gamma {gammas}", **headline})
    for lanes in scaling:  # the same steps (and so the same logging density) at every width
        rows.append({"method": "jaxq sweep, chain-32", **_sweep_rate(learner, {"gamma": [0.9]}, lanes)})
    rows.append({"method": "peer: jit, Python loop over seeds",
                 **_jit_loop_rate(learner, seeds=4 if quick else 16)})
    t0 = time.perf_counter()
    numpy_q_learning(32, numpy_steps, 0.9, 0.1, 0.3)
    numpy_rate = numpy_steps / (time.perf_counter() - t0)
    rows.append({"method": "peer: NumPy loop, one seed", "lanes": 1, "env_steps_per_s": numpy_rate,
                 "compile_s": 0.0, "run_s": numpy_steps / numpy_rate, "devices": 1})
    for row in rows:
        row["vs_numpy"] = row["env_steps_per_s"] / numpy_rate
    return report(
        "tabular", rows, quick=quick,
        peers={"numpy": np.__version__},
        notes=(f"Tabular Q-learning on Chain (variant reset), {steps} steps per lane, 10 log points (error, "
               "bias, greedy-policy value) per lane; vs_numpy = throughput / NumPy loop throughput."),
        headline_env_steps_per_s=headline["env_steps_per_s"],
        headline_vs_numpy=headline["env_steps_per_s"] / numpy_rate,
    )
