"""``jaxq bench dqn``: aggregate env steps/s of N DQN agents trained in one call on the LunarLander
port, against Stable-Baselines3's DQN on Gymnasium's Box2D LunarLander-v3, and the roofline of the
update alone.

Both sides run the same agent: an MLP Q-network of the given widths, Adam, batch 64, a 50 000-slot
buffer, one gradient step every 4 env steps, a hard target copy every 250 env steps, learning from
env step 1000, epsilon 1 -> 0.05 over the first 10 % of the run.

* jaxq: ``sweep`` of N = 1, 16, 64 agents (more on an accelerator); every agent has its own
  environment, buffer, network and optimiser; the figure is N x env steps / run seconds;
* peer: ``stable_baselines3.DQN`` with the same settings, one agent, after its learning starts, with
  PyTorch on one thread (its faster setting here);
* roofline: the jitted gradient update alone (the learner's own loss and optimiser on a fixed batch,
  no environment, no buffer), vmapped over the same N, expressed in the env steps it would serve
  (4 per update). ``vs_roofline`` = full loop / roofline: what the environment, the buffer and the
  exploration cost.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxq.bench.timing import block, report

BATCH, BUFFER, TRAIN_FREQ, TARGET_PERIOD, LEARNING_STARTS, LR = 64, 50_000, 4, 250, 1000, 6.3e-4
OPTIONS = dict(batch_size=BATCH, buffer_size=BUFFER, train_freq=TRAIN_FREQ, gradient_steps=1,
               learning_starts=LEARNING_STARTS, eval_every=0)
HPARAMS = {"lr": LR, "gamma": 0.99, "target_period": TARGET_PERIOD, "tau": 1.0, "epsilon": 1.0,
           "epsilon_final": 0.05, "epsilon_fraction": 0.1}


def _learner(widths: tuple[int, ...], steps: int):
    import jaxq
    from jaxq.learners import make_learner

    env, params = jaxq.make("LunarLander-v3")
    return make_learner("dqn", env, params, steps=steps, log_every=steps // 5, widths=widths,
                        hparam_defaults=HPARAMS, **OPTIONS)


def jaxq_row(widths: tuple[int, ...], agents: int, steps: int) -> dict[str, Any]:
    from jaxq.sweep import sweep

    timing = sweep(_learner(widths, steps), {}, seeds=agents).timing
    return {"agents": agents, "env_steps_per_s": timing["env_steps_per_s"], "compile_s": timing["compile_s"],
            "run_s": timing["run_s"]}


def roofline_row(widths: tuple[int, ...], agents: int, updates: int) -> dict[str, Any]:
    """The learner's gradient update alone, ``updates`` times on a fixed batch, vmapped over agents."""
    import jax
    import jax.numpy as jnp
    import optax

    learner = _learner(widths, 4_000)
    hp = {k: jnp.asarray(learner.encode(k, v)) for k, v in learner.defaults().items()}
    keys = jax.random.split(jax.random.PRNGKey(0), agents)
    carry = jax.jit(jax.vmap(learner.init, in_axes=(0, None)))(keys, hp)
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.normal(size=(agents, BATCH, 8)), jnp.float32),
             jnp.asarray(rng.integers(0, 4, (agents, BATCH)), jnp.int32),
             jnp.asarray(rng.normal(size=(agents, BATCH)), jnp.float32), jnp.full((agents, BATCH), 0.99),
             jnp.asarray(rng.normal(size=(agents, BATCH, 8)), jnp.float32))

    def train(params, target, opt_state, batch):
        def update(state, _):
            params, opt_state = state
            grads, _ = jax.grad(learner.loss_fn, has_aux=True)(params, target, batch, jnp.ones(BATCH), hp,
                                                               jnp.float32(0.05), jnp.zeros(2, jnp.uint32))
            norm = optax.tree.norm(grads)
            grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, learner.max_grad_norm / (norm + 1e-12)), grads)
            step, opt_state = learner.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, step), opt_state), None
        return jax.lax.scan(update, (params, opt_state), None, length=updates)[0]

    run = jax.jit(jax.vmap(train))
    t0 = time.perf_counter()
    compiled = run.lower(carry.params, carry.target_params, carry.opt_state, batch).compile()
    compile_s = time.perf_counter() - t0
    block(compiled(carry.params, carry.target_params, carry.opt_state, batch))
    t0 = time.perf_counter()
    block(compiled(carry.params, carry.target_params, carry.opt_state, batch))
    run_s = time.perf_counter() - t0
    return {"agents": agents, "env_steps_per_s": agents * updates * TRAIN_FREQ / run_s, "compile_s": compile_s,
            "run_s": run_s}


def sb3_row(widths: tuple[int, ...], steps: int) -> dict[str, Any]:
    """Stable-Baselines3 DQN, one agent, the same settings; timed after its learning starts. PyTorch
    runs on one thread: its faster setting for networks this small (two threads on a 2-core machine
    were ten times slower, spinning against each other)."""
    import gymnasium as gym
    import stable_baselines3
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == LEARNING_STARTS:
                self.start = time.perf_counter()
            return True

    agent = DQN("MlpPolicy", gym.make("LunarLander-v3"), learning_rate=LR, buffer_size=BUFFER,
                learning_starts=LEARNING_STARTS, batch_size=BATCH, gamma=0.99, train_freq=TRAIN_FREQ,
                gradient_steps=1, target_update_interval=TARGET_PERIOD, exploration_fraction=0.1,
                exploration_final_eps=0.05, policy_kwargs={"net_arch": list(widths)}, device="cpu", seed=0)
    torch.set_num_threads(1)
    clock = Clock()
    agent.learn(total_timesteps=LEARNING_STARTS + steps, callback=clock)
    run_s = time.perf_counter() - clock.start
    return {"agents": 1, "env_steps_per_s": steps / run_s, "compile_s": 0.0, "run_s": run_s,
            "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(), "gymnasium": gym.__version__}}


def run(quick: bool = False) -> dict[str, Any]:
    """Both network sizes: jaxq at several N, the roofline at the same N, SB3 with one agent."""
    import jax

    accelerator = jax.default_backend() != "cpu"
    agent_counts = [2] if quick else ([1, 16, 64, 256, 1024] if accelerator else [1, 16, 64])
    steps = 2 * LEARNING_STARTS if quick else 20_000  # the quick run learns for half of its steps
    sb3_steps = 200 if quick else 10_000
    rows, versions = [], {}
    for widths in ([64, 64],) if quick else ([64, 64], [256, 256]):
        widths = tuple(widths)
        peer = sb3_row(widths, sb3_steps)
        versions = peer.pop("versions")
        for n in agent_counts:
            full = jaxq_row(widths, n, steps)
            roof = roofline_row(widths, n, steps // TRAIN_FREQ)
            rows.append({"network": str(list(widths)), "method": "jaxq sweep", **full,
                         "vs_sb3": full["env_steps_per_s"] / peer["env_steps_per_s"],
                         "vs_roofline": full["env_steps_per_s"] / roof["env_steps_per_s"]})
            rows.append({"network": str(list(widths)), "method": "roofline: update alone", **roof,
                         "vs_sb3": roof["env_steps_per_s"] / peer["env_steps_per_s"], "vs_roofline": 1.0})
        rows.append({"network": str(list(widths)), "method": "peer: SB3 DQN, Gymnasium", **peer, "vs_sb3": 1.0,
                     "vs_roofline": float("nan")})
    return report(
        "dqn", rows, quick=quick, peers={k: str(v) for k, v in versions.items()},
        notes=(f"DQN on LunarLander: batch {BATCH}, buffer {BUFFER}, one update every {TRAIN_FREQ} env steps, "
               f"target copy every {TARGET_PERIOD}, Adam lr {LR}. env_steps_per_s is the aggregate over all "
               f"agents of a call ({steps} env steps per jaxq agent, the {LEARNING_STARTS} before learning "
               f"starts included; SB3: {sb3_steps} steps after its learning starts, a comparison that favours "
               f"jaxq by at most {LEARNING_STARTS / steps:.0%}). Roofline: the update alone at the same N, in the env steps it serves ({TRAIN_FREQ} "
               "per update). vs_sb3 and vs_roofline are ratios within this run."),
    )
