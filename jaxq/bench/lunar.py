"""``jaxq bench lunar``: env steps per second of the LunarLander port vs Gymnasium's Box2D env.

The port runs ``vmap(env_step)`` (random actions, gymnax auto-reset) inside one jitted
``lax.scan`` per width; its compile time is measured apart from the run. The peers, measured in the
same process right after each width: Gymnasium's ``LunarLander-v3`` as one env in a plain Python
loop, and a ``gymnasium.vector.SyncVectorEnv`` of the same width (up to ``VECTOR_MAX_WIDTH`` envs: it steps
its envs one after the other, so wider ones add nothing but minutes). Both peers also act randomly
and reset when an episode ends.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxq
from jaxq.bench.timing import best_of, compile_and_time, report
from jaxq.envs import env_step

WIDTHS = (1, 64, 1024, 4096, 8192)
QUICK_WIDTHS = (8,)  # one width: a single compilation
VECTOR_MAX_WIDTH = 1024
ENV_ID = "LunarLander-v3"
NUM_ACTIONS = 4


def _rollout_steps(width: int, quick: bool) -> int:
    """Scan length for a width: about 64k env steps per timed call, between 8 and 500 steps."""
    return 4 if quick else int(np.clip(65_536 // width, 8, 500))


def port_rollout(width: int, steps: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``(fn, args)``: ``fn(*args)`` runs ``steps`` steps of ``width`` vmapped port envs."""
    env, params = jaxq.make(ENV_ID)
    step = jax.vmap(partial(env_step, env), in_axes=(0, 0, 0, None))

    def rollout(key: jax.Array, state: Any) -> tuple[Any, jax.Array]:
        def body(carry: tuple[Any, jax.Array], key: jax.Array) -> tuple:
            state, total = carry
            key_act, key_env = jax.random.split(key)
            actions = jax.random.randint(key_act, (width,), 0, NUM_ACTIONS)
            out = step(jax.random.split(key_env, width), state, actions, params)
            return (out.state, total + out.reward.sum()), None

        return jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, steps))[0]

    key_reset, key = jax.random.split(jax.random.PRNGKey(0))
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, width), params)
    return rollout, (key, state)


def gymnasium_single(steps: int) -> float:
    """Steps per second of one ``gym.make("LunarLander-v3")`` stepped in a Python loop."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(NUM_ACTIONS, size=steps)

    def run() -> None:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    seconds = best_of(run, repeats=5)
    env.close()
    return steps / seconds


def gymnasium_sync_vector(width: int, calls: int) -> float:
    """Env steps per second of a ``SyncVectorEnv`` of ``width`` envs (it auto-resets itself)."""
    import gymnasium as gym

    envs = gym.make_vec(ENV_ID, num_envs=width, vectorization_mode="sync")
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(NUM_ACTIONS, size=(calls, width))

    def run() -> None:
        for a in actions:
            envs.step(a)

    seconds = best_of(run, repeats=2)
    envs.close()
    return width * calls / seconds


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every width and return the report (``quick``: tiny widths and few steps)."""
    import Box2D
    import gymnasium as gym

    widths = QUICK_WIDTHS if quick else WIDTHS
    rows = []
    for width in widths:
        steps = _rollout_steps(width, quick)
        fn, args = port_rollout(width, steps)
        compile_s, run_s = compile_and_time(fn, *args, repeats=5)
        rate = width * steps / run_s
        # The peers right after each width; on a shared machine the best single-env rate of the
        # run is the fairest yardstick for every width (both sides are best-of-repeats).
        single = gymnasium_single(200 if quick else 3000)
        vector = (gymnasium_sync_vector(width, 4 if quick else max(4, 16_384 // width))
                  if width <= VECTOR_MAX_WIDTH else None)
        rows.append({
            "envs": width,
            "port_steps_per_s": rate,
            "port_compile_s": compile_s,
            "port_scan_steps": steps,
            "gym_single_steps_per_s": single,
            "gym_sync_vector_steps_per_s": vector if vector is not None else "not run",
            "ratio_vs_sync_vector": rate / vector if vector is not None else "-",
        })
    best_single = max(row["gym_single_steps_per_s"] for row in rows)
    for row in rows:
        row["ratio_vs_best_single"] = row["port_steps_per_s"] / best_single
    notes = (f"Port: jit(lax.scan(vmap(env_step))) with random actions and auto-reset; steps/s "
             f"excludes compilation. Gymnasium {gym.__version__} / Box2D {Box2D.__version__}: one "
             f"env in a Python loop, and SyncVectorEnv up to {VECTOR_MAX_WIDTH} envs (wider ones "
             f"are not run: a sync vector env steps its envs one by one), each measured right "
             f"after the port's width; ratio_vs_best_single divides by the best single-env rate "
             f"of the run ({best_single:,.0f} steps/s). Goal: port >= 10x the single env at "
             f"4096+ envs on a 2-core CPU.")
    return report("lunar", rows, quick=quick, notes=notes, best_gym_single_steps_per_s=best_single,
                  peers={"gymnasium": gym.__version__, "box2d": Box2D.__version__})
