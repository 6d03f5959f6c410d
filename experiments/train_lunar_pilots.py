"""Train the learned LunarLander pilots of the parity harness in Gymnasium's Box2D environment.

    python experiments/train_lunar_pilots.py [--out DIR] [--only NAME ...]

Stable-Baselines3 (with PyTorch) trains, in the real ``LunarLander-v3``, never shown the port:

* ``dqn_100k``, ``dqn_150k``, ``dqn_200k``: one DQN run with rl-baselines3-zoo's LunarLander
  settings (lr 6.3e-4, batch 128, buffer 50 000, learning_starts 0, gamma 0.99, target update every
  250 steps, train_freq 4, gradient_steps -1, exploration fraction 0.12 to epsilon 0.1, net
  [256, 256]), exported at three checkpoints of the same run;
* ``ppo_1m``: PPO with the zoo's settings (16 envs, n_steps 1024, batch 64, gae_lambda 0.98,
  gamma 0.999, 4 epochs, entropy 0.01), 1e6 steps.

Each pilot is exported as a small ``.npz`` of its greedy network (``pilots.export``): flying it
needs neither PyTorch nor Stable-Baselines3. Needs ``stable-baselines3`` and ``torch`` (install
SB3 with ``--no-deps`` next to the CPU build of torch). Run it with ``nice``: it takes tens of
minutes of CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from jaxq.envs.lunar_lander.parity import pilots

SEED = 0
DQN_STEPS = 200_000
DQN_CHECKPOINTS = {100_000: "dqn_100k", 150_000: "dqn_150k", 200_000: "dqn_200k"}
PPO_STEPS = 1_000_000
PPO_NAME = "ppo_1m"
ZOO_DQN = dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
               gamma=0.99, target_update_interval=250, train_freq=4, gradient_steps=-1,
               exploration_fraction=0.12, exploration_final_eps=0.1,
               policy_kwargs=dict(net_arch=[256, 256]))
ZOO_PPO = dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
               ent_coef=0.01)
PPO_ENVS = 16


def _layers(modules) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(weight [in, out], bias [out])`` of the ``torch.nn.Linear`` modules, in order."""
    import torch

    return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
            for m in modules if isinstance(m, torch.nn.Linear)]


def _check_set(rng: np.random.Generator, n: int = 64) -> np.ndarray:
    """Observations for the export check: typical flight and ground states."""
    obs = rng.normal(0.0, [0.5, 0.5, 0.5, 0.5, 0.3, 0.3], (n, 6))
    contacts = rng.integers(0, 2, (n, 2))
    return np.concatenate([obs, contacts], 1).astype(np.float32)


def export_dqn(model, name: str, steps: int, out: Path) -> Path:
    """The greedy network of a DQN (its online Q-network), with SB3's own outputs on a check set."""
    import torch

    layers = _layers(model.q_net.q_net)
    obs = _check_set(np.random.default_rng(steps))
    with torch.no_grad():
        outputs = model.q_net.q_net(torch.as_tensor(obs)).numpy()
    actions, _ = model.predict(obs, deterministic=True)
    return pilots.export(out / f"{name}.npz", layers, "relu", obs, outputs, actions,
                         {"algorithm": "DQN", "steps": steps, "seed": SEED, "settings": ZOO_DQN})


def export_ppo(model, name: str, steps: int, out: Path) -> Path:
    """The deterministic policy of a PPO (the argmax of its action logits)."""
    import torch

    policy = model.policy
    layers = _layers(policy.mlp_extractor.policy_net) + _layers([policy.action_net])
    obs = _check_set(np.random.default_rng(steps))
    with torch.no_grad():
        latent = policy.mlp_extractor.policy_net(torch.as_tensor(obs))
        outputs = policy.action_net(latent).numpy()
    actions, _ = model.predict(obs, deterministic=True)
    return pilots.export(out / f"{name}.npz", layers, "tanh", obs, outputs, actions,
                         {"algorithm": "PPO", "steps": steps, "seed": SEED, "n_envs": PPO_ENVS,
                          "settings": ZOO_PPO})


def train_dqn(out: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            name = DQN_CHECKPOINTS.get(self.num_timesteps)
            if name is not None:
                print(f"{name}: exported {export_dqn(self.model, name, self.num_timesteps, out)}",
                      flush=True)
            return True

    model = DQN("MlpPolicy", gym.make("LunarLander-v3"), seed=SEED, device="cpu", **ZOO_DQN)
    model.learn(total_timesteps=DQN_STEPS, callback=Checkpoints())


def train_ppo(out: Path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env("LunarLander-v3", n_envs=PPO_ENVS, seed=SEED)
    model = PPO("MlpPolicy", envs, seed=SEED, device="cpu", **ZOO_PPO)
    model.learn(total_timesteps=PPO_STEPS)
    print(f"{PPO_NAME}: exported {export_ppo(model, PPO_NAME, PPO_STEPS, out)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=pilots.PILOT_DIR,
                        help="where the .npz files go (default: the parity harness's pilots)")
    parser.add_argument("--only", nargs="*", choices=("dqn", "ppo"), default=("dqn", "ppo"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for algo in args.only:
        t0 = time.perf_counter()
        (train_dqn if algo == "dqn" else train_ppo)(args.out)
        print(f"{algo}: trained in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
