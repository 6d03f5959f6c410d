"""``jaxq bench mlp``: env steps/s of the 257-parameter MLP semi-gradient sweep, against PyTorch.

Measured side by side in one run, on the same algorithm: semi-gradient Q-learning with
``Q(s, a) = MLP([i / D, a])`` (one hidden layer of 64 ReLU units, 257 parameters), plain SGD with
``alpha = 5e-4`` on ``1/2 (y - Q(s, a))^2``, ``y = r + gamma (1 - terminated) max_a' Q(s', a')``,
epsilon-greedy behaviour (``epsilon = 0.3``) on Chain(32) variant "reset" with gamma = 0.9 and
episodes cut at 1000 steps. The next action is drawn from the pre-update values at ``s'`` (at the
reset state after an episode ends), as jaxq's learner does.

* jaxq: one ``sweep`` call over 1024 seeds (every lane an independent agent, vmapped, sharded over
  the local devices), then the same sweep at 1 ... 4096 seeds to show how throughput scales;
* peer: a PyTorch CPU loop of the same network and update, one seed, one transition per step --
  the way the seed blog ran it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxq.bench.timing import report

DEPTH, GAMMA, ALPHA, EPSILON, TIME_LIMIT = 32, 0.9, 5e-4, 0.3, 1000


def torch_q_learning(steps: int, seed: int = 0) -> tuple[float, dict[str, Any]]:
    """The peer: online semi-gradient Q-learning of the 257-parameter MLP in a PyTorch loop.

    Returns the wall seconds of the ``steps`` steps and facts about the run (version, threads, and
    the final ``||Q - Q*||_inf``, to show it learns what jaxq learns).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(net.parameters(), lr=ALPHA)
    both_actions = torch.tensor([0.0, 1.0])

    def q_values(state: int) -> torch.Tensor:
        with torch.no_grad():
            return net(torch.stack([torch.full((2,), state / DEPTH), both_actions], dim=1))[:, 0]

    def act(q: torch.Tensor) -> int:
        if rng.random() < EPSILON:
            return int(rng.integers(2))
        best = np.flatnonzero((q == q.max()).numpy())
        return int(best[rng.integers(best.size)])

    s, t = 0, 0
    a = act(q_values(s))
    start = time.perf_counter()
    for _ in range(steps):
        terminated = a == 1 and s == DEPTH - 1
        s_next = s + 1 if a == 1 else 0
        reward = 1.0 if terminated else 0.0
        t += 1
        q_next = q_values(s_next)
        y = reward + (0.0 if terminated else GAMMA * float(q_next.max()))
        pred = net(torch.tensor([[s / DEPTH, float(a)]]))[0, 0]
        done = terminated or t >= TIME_LIMIT
        a_next = act(q_values(0) if done else q_next)
        opt.zero_grad()
        (0.5 * (y - pred) ** 2).backward()
        opt.step()
        s, t, a = (0, 0, a_next) if done else (s_next, t, a_next)
    elapsed = time.perf_counter() - start
    q = torch.stack([q_values(i) for i in range(DEPTH)]).numpy()
    i = np.arange(DEPTH)
    q_star = np.stack([np.full(DEPTH, GAMMA**DEPTH), GAMMA ** (DEPTH - 1 - i)], axis=1)
    facts = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "final_error": float(np.abs(q - q_star).max())}
    return elapsed, facts


def _learner(steps: int):
    import jaxq
    from jaxq.learners import make_learner

    env, params = jaxq.make("Chain", depth=DEPTH, max_depth=DEPTH, max_steps_in_episode=TIME_LIMIT)
    return make_learner("mlp", env, params, steps=steps, log_every=steps // 10, log_bias=False,
                        log_policy_value=False)


def _sweep_row(learner: Any, seeds: int) -> dict[str, Any]:
    from jaxq.sweep import sweep

    result = sweep(learner, {"gamma": [GAMMA], "alpha": [ALPHA], "epsilon": [EPSILON]}, seeds=seeds)
    timing = result.timing
    return {"lanes": timing["lanes"], "env_steps_per_s": timing["env_steps_per_s"],
            "compile_s": timing["compile_s"], "run_s": timing["run_s"], "devices": timing["devices"],
            "block_lanes": timing["block_lanes"],
            "final_error_median": float(np.nanmedian(result.final("error")))}


def run(quick: bool = False) -> dict[str, Any]:
    """The benchmark: headline sweep (1024 seeds), seed scaling and the PyTorch peer, in one process."""
    steps = 1_000 if quick else 10_000
    headline_seeds = 64 if quick else 1024
    scaling = [1] if quick else [1, 16, 256, 4096]
    torch_steps = 300 if quick else 10_000

    learner = _learner(steps)
    rows: list[dict[str, Any]] = [{"method": "jaxq sweep (headline)", **_sweep_row(learner, headline_seeds)}]
    rows += [{"method": "jaxq sweep", **_sweep_row(learner, seeds)} for seeds in scaling]
    torch_s, torch_facts = torch_q_learning(torch_steps)
    torch_rate = torch_steps / torch_s
    rows.append({"method": "peer: PyTorch loop, one seed", "lanes": 1, "env_steps_per_s": torch_rate,
                 "compile_s": 0.0, "run_s": torch_s, "devices": 1, "block_lanes": 1,
                 "final_error_median": torch_facts["final_error"]})
    for row in rows:
        row["vs_torch"] = row["env_steps_per_s"] / torch_rate
    headline = rows[0]
    return report(
        "mlp", rows, quick=quick,
        peers={"torch": torch_facts["torch"], "torch_threads": str(torch_facts["torch_threads"])},
        notes=(f"Semi-gradient Q-learning, MLP 2-64-1 ReLU (257 parameters), SGD alpha={ALPHA}, epsilon={EPSILON}, "
               f"gamma={GAMMA}, Chain({DEPTH}) reset; jaxq lanes run {steps} steps each, the PyTorch loop "
               f"{torch_steps}. vs_torch = throughput / PyTorch loop throughput (same run). "
               "final_error_median: median over lanes of the final ||Q - Q*||_inf (the peer: its one seed)."),
        headline_env_steps_per_s=headline["env_steps_per_s"],
        headline_lanes=headline["lanes"],
        headline_vs_torch=headline["vs_torch"],
    )
