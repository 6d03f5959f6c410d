"""LunarLander parity run: the JAX port and Gymnasium's Box2D environment, side by side.

For each pilot (discrete and continuous heuristic, uniform random, no-op, and every learned pilot
stored with the harness, see :mod:`.pilots`):

* N episodes on each side: Box2D ``reset(seed=i)`` for i < N in a plain loop; the port, N vmapped
  lanes with independent keys. The port must match Box2D: mean return within
  ``max(10, 2.5 x combined s.e.)``, landing and crash rates within 3 points, and every on-ground
  statistic (:mod:`.ground`) within 20 % (a mean over the steps of a situation only when at least
  :data:`.ground.MIN_EPISODES` episodes of each side contain it). The built-in pilots are also held
  to the spec's values.
* Paired replays: each Box2D episode replayed in the port from Box2D's post-reset state, with the
  same engine noise and, for the random and no-op policies, the same actions (the other pilots fly
  closed loop on the port's own observations). Any difference then comes from the physics, which
  makes these comparisons far sharper than the unpaired ones; the step at which the two runs part
  is recorded.
* For the built-in pilots, a variant of Box2D on the same seeds, for diagnosis: without its
  continuous (time-of-impact) collision.

Then the landing envelope: vertical and tilted drops onto a flat pad from the very same injected
body states (the tilt envelope: the smallest tilt on each side whose drop crashes). Writes
``summary.json`` (both sides, the criteria, a pass/fail line per row), ``tables.md`` (the README's
tables), ``curves.npz`` (every episode's return, length, outcome and parting step; the envelope
sweeps) and ``histograms.png``.

The Box2D side needs the optional ``gymnasium[box2d]`` (the ``dev`` or ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxq
from jaxq.envs import env_step
from jaxq.envs.lunar_lander import state_from_bodies, transition
from jaxq.envs.lunar_lander.heuristic import heuristic_action
from jaxq.envs.lunar_lander.parity import ground, pilots
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.validation import check_choice

NAME = "lunar_parity"
OUTCOMES = ("sleep", "crash", "out", "truncated")  # the reference harness uses the same names
POLICIES = ("heuristic", "random", "noop")
ENV_IDS = {False: "LunarLander-v3", True: "LunarLanderContinuous-v3"}


@dataclasses.dataclass(frozen=True)
class Setup:
    """One row of the comparison: a pilot in the discrete or continuous env.

    ``return_target``/``length_target`` (built-in pilots only) are the spec's (centre, half-width)
    for the mean over episodes; ``min_landing`` a lower bound on the fraction that lands.
    """

    name: str
    policy: str
    continuous: bool
    return_target: tuple[float, float] | None = None
    length_target: tuple[float, float] | None = None
    min_landing: float | None = None


BUILTIN_SETUPS = (
    Setup("heuristic_discrete", "heuristic", False, (243.0, 10.0), min_landing=0.88),
    Setup("heuristic_continuous", "heuristic", True, (283.0, 10.0)),
    Setup("random", "random", False, (-177.0, 15.0), length_target=(94.0, 10.0)),
    Setup("noop", "noop", False, (-135.0, 10.0), length_target=(70.0, 5.0)),
)
RETURN_TOLERANCE = 10.0  # port - Box2D mean return within max(this, 2.5 combined s.e.)
RETURN_SE_FACTOR = 2.5
RATE_TOLERANCE = 0.03  # landing and crash rates within 3 points


def setups() -> tuple[Setup, ...]:
    """The built-in pilots, then one row per stored learned pilot (discrete)."""
    return BUILTIN_SETUPS + tuple(Setup(name, name, False) for name in pilots.available())


SETUPS = BUILTIN_SETUPS  # kept for the tests' small distribution checks
# A Box2D variant run next to the reference, to show what its continuous (time-of-impact)
# collision, which the port emulates, is worth.
BOX2D_VARIANTS = {"no_continuous_collision": {"continuous_collision": False}}
DROP_SPEEDS = np.round(np.arange(0.2, 2.401, 0.05), 2)  # m/s, vertical, angle 0
TILTS = np.round(np.arange(-0.3, 0.301, 0.02), 2)  # rad, at a vertical speed of TILT_SPEED
TILT_SPEED = 0.5
TILT_TOLERANCE = 0.02  # rad: the port's tilt envelope within this of Box2D's on each side


# ------------------------------------------------------------------------------------ port episodes

def _builtin_action(index: jax.Array, key: jax.Array, obs: jax.Array, continuous: bool) -> jax.Array:
    """The action of built-in pilot number ``index`` (into POLICIES) for one observation."""
    if continuous:
        branches = [lambda k, o: heuristic_action(o, True),
                    lambda k, o: jax.random.uniform(k, (2,), minval=-1.0, maxval=1.0),
                    lambda k, o: jnp.zeros(2)]
    else:
        branches = [lambda k, o: heuristic_action(o, False),
                    lambda k, o: jax.random.randint(k, (), 0, 4),
                    lambda k, o: jnp.zeros((), jnp.int32)]
    return jax.lax.switch(index, branches, key, obs)


def _policy(policy: str, continuous: bool) -> tuple[Any, Any]:
    """``(activation, args)``: ``activation`` None for a built-in pilot (``args`` its index), else
    the learned pilot's activation (``args`` its layers)."""
    if policy in POLICIES:
        return None, jnp.asarray(POLICIES.index(policy))
    if continuous:
        raise ValueError(f"policy={policy!r} is a discrete pilot; it cannot fly the continuous env")
    pilot = pilots.load(policy)
    return pilot.activation, pilot.params


def _act(activation: str | None, args: Any, key: jax.Array, obs: jax.Array, continuous: bool):
    if activation is None:
        return _builtin_action(args, key, obs, continuous)
    return pilots.act_jax(args, activation, obs)


def _outcome_code(reward: jax.Array, obs: jax.Array, truncated: jax.Array) -> jax.Array:
    """Index into OUTCOMES of how a step that ended an episode ended it.

    The terminal reward is +100 for a landing (asleep) and -100 for a crash or leaving the view.
    """
    code = jnp.where(reward > 0, 0, jnp.where(jnp.abs(obs[..., 0]) >= 1.0, 2, 1))
    return jnp.where(truncated, 3, code)


@functools.lru_cache(maxsize=None)
def _episode_runner(continuous: bool, n: int, chunk: int,
                    activation: str | None) -> tuple[Callable, Callable, int]:
    """Jitted ``(start(key), advance(carry, key, args))`` for ``n`` lanes, and the time limit.

    ``advance`` also returns, per step, the observation acted on, the action, the observation
    the step returned and whether the lane's first episode was still running. Cached, with the
    pilot's index or weights traced, so pilots of one kind share one compilation.
    """
    env, params = jaxq.make(ENV_IDS[continuous])

    def lane_step(carry: tuple, key: jax.Array, args: Any) -> tuple:
        state, obs, ret, length, done, outcome = carry
        key_act, key_env = jax.random.split(key)
        action = _act(activation, args, key_act, obs, continuous)
        step = env_step(env, key_env, state, action, params)
        alive = jnp.logical_not(done)
        ret = ret + jnp.where(alive, step.reward, 0.0)
        length = length + alive.astype(jnp.int32)
        ending = _outcome_code(step.reward, step.next_obs, step.truncated)
        outcome = jnp.where(jnp.logical_and(alive, step.done), ending, outcome)
        new = (step.state, step.obs, ret, length, jnp.logical_or(done, step.done), outcome)
        return new, (obs, action, step.next_obs, alive)

    @jax.jit
    def start(key: jax.Array) -> tuple:
        obs, state = jax.vmap(env.reset_env, (0, None))(jax.random.split(key, n), params)
        return (state, obs, jnp.zeros(n), jnp.zeros(n, jnp.int32), jnp.zeros(n, bool),
                jnp.full(n, -1, jnp.int32))

    @jax.jit
    def advance(carry: tuple, key: jax.Array, args: Any) -> tuple:
        def body(c: tuple, k: jax.Array) -> tuple:
            return jax.vmap(lane_step, (0, 0, None))(c, k, args)

        return jax.lax.scan(body, carry, jax.random.split(key, (chunk, n)))

    return start, advance, int(params.max_steps_in_episode)


def run_port_episodes(policy: str, n: int, continuous: bool = False, seed: int = 0,
                      chunk: int = 50, record: bool = False) -> dict[str, np.ndarray]:
    """The first episode of ``n`` independent lanes of the port (vmapped), under ``policy``.

    Args:
        policy: "heuristic" (:func:`heuristic_action`), "random" (uniform), "noop", or a stored
            learned pilot.
        record: also return the trajectories as :func:`ground.pad` lays them out (``obs``,
            ``next_obs``, ``side``, ``alive``, each ``[T, n, ...]``).

    Returns ``returns`` [n], ``lengths`` [n] (env steps) and ``outcomes`` [n] (names from OUTCOMES).
    Steps run in jitted chunks of ``chunk`` until every lane has finished its first episode.
    """
    check_choice("policy", policy, POLICIES + pilots.available())
    activation, args = _policy(policy, continuous)
    start, advance, limit = _episode_runner(continuous, n, chunk, activation)
    key_reset, key = jax.random.split(jax.random.PRNGKey(seed))
    carry = start(key_reset)
    trace = []
    for _ in range(limit // chunk + 2):
        key, sub = jax.random.split(key)
        carry, steps = advance(carry, sub, args)
        if record:
            trace.append(jax.tree.map(np.asarray, steps))
        if bool(carry[4].all()):
            break
    _, _, ret, length, done, outcome = (np.asarray(x) for x in carry)
    if not done.all():
        raise RuntimeError(f"{int((~done).sum())} lanes did not finish within {limit} steps")
    out = {"returns": ret.astype(np.float64), "lengths": length,
           "outcomes": np.asarray(OUTCOMES)[outcome]}
    if record:
        obs, action, nxt, alive = (np.concatenate(x) for x in zip(*trace))
        out.update(obs=obs, next_obs=nxt, side=ground.side_directions(action, continuous),
                   alive=alive)
    return out


# ------------------------------------------------------------------------------ paired episodes

@functools.lru_cache(maxsize=None)
def batch_transition(continuous: bool) -> Callable[..., tuple]:
    """``jit(vmap(transition))`` with default params: ``(states, actions, dispersions) -> ...``."""
    _, params = jaxq.make(ENV_IDS[continuous])
    return jax.jit(jax.vmap(lambda s, a, d: transition(s, a, d, params)))


def run_port_paired(conditions: Sequence[Any], continuous: bool, actions: np.ndarray | None = None,
                    step: Callable[..., tuple] | None = None, policy: str = "heuristic",
                    record: bool = False) -> dict[str, np.ndarray]:
    """Port episodes that replay Box2D episodes: same start, same engine noise, same pilot.

    Each lane starts from a Box2D initial condition (``bodies``, ``terrain``, ``obs``,
    ``prev_shaping`` -- None for the start's own shaping -- and the ``dispersion`` numbers
    ``[T, 2]`` its steps draw; see the reference harness) and uses those dispersion numbers step by
    step, so with the same actions any difference from Box2D comes from the physics alone.

    Args:
        actions: open-loop actions ``[n, T]`` (discrete) or ``[n, T, 2]``; None flies ``policy``
            (the heuristic or a learned pilot) closed loop on the port's own observations.
        step: a compiled ``batch_transition(continuous)`` for ``n`` lanes to reuse.
        record: also return ``observations [T, n, 8]`` after each step and ``alive [T, n]``.

    Returns ``returns``, ``lengths``, ``outcomes`` as :func:`run_port_episodes`, truncating at T.
    """
    _, params = jaxq.make(ENV_IDS[continuous])
    step = step or batch_transition(continuous)
    if actions is None:
        activation, args = _policy(policy, continuous)
        act = jax.jit(jax.vmap(lambda o: _act(activation, args, jax.random.PRNGKey(0), o, continuous)))
    states = [state_from_bodies(params, terrain_heights=jnp.asarray(c.terrain),
                                prev_shaping=c.prev_shaping, joint_impulses=c.joint_impulses,
                                **c.bodies.as_kwargs())
              for c in conditions]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    dispersion = np.stack([c.dispersion for c in conditions]).astype(np.float32)
    obs = jnp.asarray(np.stack([c.obs for c in conditions]))
    n, limit = dispersion.shape[:2]
    ret, length = np.zeros(n), np.zeros(n, np.int64)
    done, outcome = np.zeros(n, bool), np.full(n, OUTCOMES.index("truncated"))
    seen, alive_steps = [], []
    for t in range(limit):
        action = act(obs) if actions is None else jnp.asarray(actions[:, t])
        obs, state, reward, terminated, _ = step(state, action, jnp.asarray(dispersion[:, t]))
        alive = ~done
        reward, terminated = np.asarray(reward), np.asarray(terminated)
        if record:
            seen.append(np.asarray(obs))
            alive_steps.append(alive)
        ret += np.where(alive, reward, 0.0)
        length += alive
        ended = alive & terminated
        outcome[ended] = np.asarray(_outcome_code(reward, obs, jnp.zeros(n, bool)))[ended]
        done |= terminated
        if done.all():
            break
    out = {"returns": ret, "lengths": length, "outcomes": np.asarray(OUTCOMES)[outcome]}
    if record:
        out.update(observations=np.array(seen), alive=np.array(alive_steps))
    return out


def paired_stats(port: dict[str, np.ndarray], box2d: Any) -> dict[str, Any]:
    """Per-episode differences port - Box2D of paired episodes."""
    diff = port["returns"] - box2d.returns
    dlen = port["lengths"] - box2d.lengths
    n = len(diff)
    return {
        "n": n,
        "mean_return_diff": float(diff.mean()),
        "se_return_diff": float(diff.std(ddof=1) / np.sqrt(n)),
        "median_abs_return_diff": float(np.median(np.abs(diff))),
        "same_outcome": float(np.mean(port["outcomes"] == box2d.outcomes)),
        "same_length": float(np.mean(dlen == 0)),
        "length_diff_counts": dict(zip(*(v.tolist() for v in np.unique(dlen, return_counts=True)))),
        "within_one_step": float(np.mean(np.abs(dlen) <= 1)),
    }


# ------------------------------------------------------------------------------------ statistics

def episode_stats(returns: np.ndarray, lengths: np.ndarray, outcomes: np.ndarray) -> dict[str, Any]:
    """Mean/std/standard error of returns and lengths, fraction ≥ 200, outcome fractions."""
    n = len(returns)
    return {
        "n": n,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns, ddof=1)),
        "se_return": float(np.std(returns, ddof=1) / np.sqrt(n)),
        "median_return": float(np.median(returns)),
        "frac_ge_200": float(np.mean(returns >= 200)),
        "landing_fraction": float(np.mean(outcomes == "sleep")),
        "outcomes": {o: float(np.mean(outcomes == o)) for o in OUTCOMES},
        "mean_length": float(np.mean(lengths)),
        "se_length": float(np.std(lengths, ddof=1) / np.sqrt(n)),
    }


def check_targets(setup: Setup, stats: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``stats`` meets the spec's values for a built-in pilot, and a line saying so."""
    checks = []
    if setup.return_target is not None:
        c, w = setup.return_target
        checks.append((abs(stats["mean_return"] - c) <= w,
                       f"mean return {stats['mean_return']:.1f} (spec {c:g} ± {w:g})"))
    if setup.length_target is not None:
        c, w = setup.length_target
        checks.append((abs(stats["mean_length"] - c) <= w,
                       f"mean length {stats['mean_length']:.1f} (spec {c:g} ± {w:g})"))
    if setup.min_landing is not None:
        checks.append((stats["landing_fraction"] >= setup.min_landing,
                       f"landings {100 * stats['landing_fraction']:.1f}% "
                       f"(spec ≥ {100 * setup.min_landing:g}%)"))
    ok = all(flag for flag, _ in checks)
    return ok, "; ".join(text for _, text in checks)


def check_parity(port: dict[str, Any], box2d: dict[str, Any]) -> dict[str, Any]:
    """The port against Box2D: mean return within ``max(10, 2.5 x combined s.e.)``, landing and
    crash rates within 3 points. Returns each difference, its tolerance and the verdicts."""
    diff = _difference(port, box2d)
    tol = max(RETURN_TOLERANCE, RETURN_SE_FACTOR * diff["se"])
    land = port["landing_fraction"] - box2d["landing_fraction"]
    crash = port["outcomes"]["crash"] - box2d["outcomes"]["crash"]
    checks = {"return": abs(diff["mean_return_diff"]) <= tol, "landing": abs(land) <= RATE_TOLERANCE,
              "crash": abs(crash) <= RATE_TOLERANCE}
    return {**diff, "return_tolerance": tol, "landing_diff": land, "crash_diff": crash,
            "checks": checks, "pass": all(checks.values())}


def _difference(port: dict[str, Any], box2d: dict[str, Any]) -> dict[str, float]:
    """Port minus Box2D mean return, its standard error and z score (two independent samples)."""
    diff = port["mean_return"] - box2d["mean_return"]
    se = float(np.hypot(port["se_return"], box2d["se_return"]))
    return {"mean_return_diff": diff, "se": se, "z": diff / se if se > 0 else float("nan")}


# ------------------------------------------------------------------------------------ reference

def load_reference() -> ModuleType:
    """The Box2D reference harness, :mod:`jaxq.envs.lunar_lander.parity.box2d_reference`.

    Raises:
        ImportError: when the optional ``gymnasium[box2d]`` is not installed.
    """
    return importlib.import_module("jaxq.envs.lunar_lander.parity.box2d_reference")


def envelope(ref: ModuleType, max_steps: int = 600) -> dict[str, Any]:
    """Vertical and tilted drops onto a flat pad, Box2D and port from the same injected bodies.

    No-op actions; the port gets zero dispersion (it does not matter without thrust).
    """
    settled = ref.settled_env(0)
    reference, impulses = ref.read_bodies(settled), ref.joint_impulses(settled)
    cases = {"speed": [ref.drop_bodies(reference, float(v)) for v in DROP_SPEEDS],
             "tilt": [ref.drop_bodies(reference, TILT_SPEED, tilt=float(a)) for a in TILTS]}
    result: dict[str, Any] = {}
    for name, bodies in cases.items():
        box2d = [ref.run_drop(ref.settled_env(0), b, max_steps=max_steps) for b in bodies]
        starts = [ref.InitialCondition(b, ref.flat_terrain(), np.zeros(8, np.float32), None,
                                       np.zeros((max_steps, 2)), impulses) for b in bodies]
        port = run_port_paired(starts, continuous=False,
                               actions=np.zeros((len(bodies), max_steps), np.int32))
        result[name] = {
            "box2d_outcomes": np.array([r.outcome for r in box2d]),
            "box2d_steps": np.array([r.steps for r in box2d]),
            "port_outcomes": port["outcomes"],
            "port_steps": port["lengths"],
        }
    return result


def _first_crash(values: np.ndarray, outcomes: np.ndarray) -> float:
    crashed = values[outcomes == "crash"]
    return float(crashed.min()) if crashed.size else float("nan")


def _envelope_summary(env: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for side in ("box2d", "port"):
        speed, tilt = env["speed"], env["tilt"]
        landed = speed[f"{side}_outcomes"] == "sleep"
        positive = TILTS >= 0
        summary[side] = {
            "first_crash_speed": _first_crash(DROP_SPEEDS, speed[f"{side}_outcomes"]),
            "sleep_steps_by_speed": {f"{v:.2f}": int(s) for v, s, ok in
                                     zip(DROP_SPEEDS, speed[f"{side}_steps"], landed) if ok},
            "first_crash_tilt": _first_crash(TILTS[positive], tilt[f"{side}_outcomes"][positive]),
            "first_crash_negative_tilt": -_first_crash(-TILTS[~positive],
                                                       tilt[f"{side}_outcomes"][~positive]),
        }
    return summary


# ------------------------------------------------------------------------------------ the study

def _figure(rows: dict[str, Any], raw: dict[str, np.ndarray], env: dict[str, Any],
            names: Sequence[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    hist_rows = -(-len(names) // cols)
    fig, axes = plt.subplots(hist_rows + 1, cols, figsize=(4.2 * cols, 3.4 * (hist_rows + 1)))
    for j, name in enumerate(names):
        ax = axes[j // cols, j % cols]
        port, box2d = raw[f"port_returns_{name}"], raw[f"box2d_returns_{name}"]
        bins = np.histogram_bin_edges(np.concatenate([port, box2d]), bins=40)
        ax.hist(box2d, bins=bins, histtype="step", lw=1.6, label="Box2D (Gymnasium)")
        ax.hist(port, bins=bins, histtype="step", lw=1.6, label="JAX port")
        ax.set_xlabel("episode return")
        ax.set_ylabel("episodes")
        ax.set_title(f"{name}: N = {len(port)} per side", fontsize=9)
        ax.legend(fontsize=7)
    for j in range(len(names), hist_rows * cols):
        axes[j // cols, j % cols].axis("off")
    bottom = axes[hist_rows]
    ax = bottom[0]
    for side, marker in (("box2d", "o"), ("port", "x")):
        ok = env["speed"][f"{side}_outcomes"] == "sleep"
        ax.plot(DROP_SPEEDS[ok], env["speed"][f"{side}_steps"][ok], marker, label=f"{side} sleeps")
        ax.plot(DROP_SPEEDS[~ok], np.zeros((~ok).sum()), marker, color="red", alpha=0.5,
                label=f"{side} crashes")
    ax.set_xlabel("vertical drop speed (m/s)")
    ax.set_ylabel("steps until asleep (0 = crash)")
    ax.set_title("Drops onto the pad, engines off", fontsize=9)
    ax.legend(fontsize=7)
    ax = bottom[1]
    for k, side in enumerate(("box2d", "port")):
        ok = env["tilt"][f"{side}_outcomes"] == "sleep"
        ax.plot(TILTS, np.where(ok, 1.0, 0.0) + 0.04 * k, "o-", label=side, alpha=0.8)
    ax.set_xlabel("tilt at touchdown (rad)")
    ax.set_ylabel("landed (1) / crashed (0)")
    ax.set_title(f"Tilted drops at {TILT_SPEED} m/s", fontsize=9)
    ax.legend(fontsize=7)
    ax = bottom[2]
    diffs = [raw[f"paired_port_returns_{name}"] - raw[f"box2d_returns_{name}"] for name in names]
    ax.boxplot(diffs, showfliers=True, flierprops={"markersize": 3})
    ax.set_xticks(range(1, len(names) + 1), [n.replace("_", "\n") for n in names], fontsize=6)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("return, port replay - Box2D")
    ax.set_title("Paired replays (same start, noise; same actions or pilot)", fontsize=9)
    ax = bottom[3]
    keys = ("both_legs", "one_leg", "landed_speed", "ground_steps")
    x = np.arange(len(names))
    for k, key in enumerate(keys):
        ratio = [rows[n]["ground"][key]["port"] / rows[n]["ground"][key]["box2d"]
                 if rows[n]["ground"][key]["box2d"] else np.nan for n in names]
        ax.plot(x + 0.1 * (k - 1.5), ratio, "o", ms=4, label=key.replace("_", " "))
    ax.axhspan(1 - ground.RELATIVE_TOLERANCE, 1 + ground.RELATIVE_TOLERANCE, color="grey", alpha=0.2)
    ax.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=6)
    ax.set_ylabel("port / Box2D")
    ax.set_title("On-ground statistics (grey: within 20 %)", fontsize=9)
    ax.legend(fontsize=6)
    fig.suptitle("LunarLander-v3: JAX port vs Gymnasium Box2D", fontsize=12)
    fig.tight_layout()
    return fig


def _open_loop_actions(ref: ModuleType, setup: Setup, n: int) -> np.ndarray | None:
    """Box2D's action sequences of episodes 0..n-1 for the random and no-op pilots (else None)."""
    if setup.policy not in ("random", "noop"):
        return None
    if setup.policy == "random":
        return np.stack([ref.random_actions(s, setup.continuous) for s in range(n)])
    shape = (n, ref.MAX_EPISODE_STEPS) + ((2,) if setup.continuous else ())
    return np.zeros(shape, np.float32 if setup.continuous else np.int32)


def ground_judged(rows: dict[str, dict[str, Any]]) -> str:
    """``"k/m within 20 %"`` over the judged on-ground statistics, and how many rest on too few episodes."""
    judged = [r for r in rows.values() if not r.get("few")]
    few = len(rows) - len(judged)
    text = f"{sum(r['pass'] for r in judged)}/{len(judged)} within {100 * ground.RELATIVE_TOLERANCE:.0f} %"
    return text + (f" ({few} on fewer than {ground.MIN_EPISODES} episodes a side, not judged)" if few else "")


def compare_setup(ref: ModuleType, setup: Setup, n: int, variants: bool) -> tuple[dict, dict]:
    """One row: N episodes per side, the paired replays and (``variants``) the Box2D variants.
    Returns the row's summary and its raw arrays."""
    t0 = time.perf_counter()
    box2d = ref.run_episodes(setup.policy, range(n), continuous=setup.continuous, record=True)
    t1 = time.perf_counter()
    port = run_port_episodes(setup.policy, n, continuous=setup.continuous, record=True)
    t2 = time.perf_counter()
    paired = run_port_paired([ref.initial_condition(s, setup.continuous) for s in range(n)],
                             setup.continuous, actions=_open_loop_actions(ref, setup, n),
                             policy=setup.policy, record=True)
    t3 = time.perf_counter()
    seconds = {"box2d_s": t1 - t0, "port_s_with_compile": t2 - t1, "port_paired_s": t3 - t2}
    box2d_trace = ground.pad(box2d.observations, box2d.actions, setup.continuous)
    port_stats = episode_stats(port["returns"], port["lengths"], port["outcomes"])
    box2d_stats = episode_stats(box2d.returns, box2d.lengths, box2d.outcomes)
    port_ground = ground.ground_statistics(port["obs"], port["next_obs"], port["side"],
                                           port["alive"], port["outcomes"])
    box2d_ground = ground.ground_statistics(box2d_trace["obs"], box2d_trace["next_obs"],
                                            box2d_trace["side"], box2d_trace["alive"],
                                            box2d.outcomes)
    ground_rows = ground.compare_ground(port_ground, box2d_ground)
    parted = ground.parting(paired["observations"], paired["alive"], box2d_trace["next_obs"],
                            box2d_trace["alive"])
    pair = {**paired_stats(paired, box2d), **{k: v for k, v in parted.items() if k != "steps"},
            **ground.touchdown(paired["observations"], paired["alive"], box2d_trace["next_obs"],
                               box2d_trace["alive"])}
    parity = check_parity(port_stats, box2d_stats)
    raw = {"port_returns": port["returns"], "port_lengths": port["lengths"],
           "port_outcomes": port["outcomes"], "box2d_returns": box2d.returns,
           "box2d_lengths": box2d.lengths, "box2d_outcomes": box2d.outcomes,
           "paired_port_returns": paired["returns"], "paired_port_lengths": paired["lengths"],
           "paired_port_outcomes": paired["outcomes"], "paired_parting_step": parted["steps"]}
    box2d_variants = {}
    if variants:
        for variant, options in BOX2D_VARIANTS.items():
            episodes = ref.run_episodes(setup.policy, range(n), continuous=setup.continuous,
                                        **options)
            box2d_variants[variant] = episode_stats(episodes.returns, episodes.lengths,
                                                    episodes.outcomes)
            raw[f"box2d_{variant}_returns"] = episodes.returns
        seconds["box2d_variants_s"] = time.perf_counter() - t3
    spec_ok, spec_text = check_targets(setup, port_stats)
    ground_ok = all(row["pass"] for row in ground_rows.values())
    ok = parity["pass"] and ground_ok
    row = {
        "env": ENV_IDS[setup.continuous], "policy": setup.policy,
        "port": port_stats, "box2d": box2d_stats, "port_minus_box2d": parity,
        "ground": ground_rows, "ground_counts": {"port": port_ground["counts"],
                                                 "box2d": box2d_ground["counts"]},
        "paired": pair, "box2d_variants": box2d_variants,
        "spec": {"targets": {"return": setup.return_target, "length": setup.length_target,
                             "min_landing": setup.min_landing},
                 "port_meets": spec_ok if spec_text else None,
                 "box2d_meets": check_targets(setup, box2d_stats)[0] if spec_text else None,
                 "text": spec_text},
        "pass": ok, "seconds": seconds,
        "verdict": f"{'PASS' if ok else 'FAIL'}: return port {port_stats['mean_return']:.1f} vs "
                   f"Box2D {box2d_stats['mean_return']:.1f} (diff "
                   f"{parity['mean_return_diff']:+.1f}, tolerance {parity['return_tolerance']:.1f}); "
                   f"landed {100 * port_stats['landing_fraction']:.1f}% vs "
                   f"{100 * box2d_stats['landing_fraction']:.1f}%; crashed "
                   f"{100 * port_stats['outcomes']['crash']:.1f}% vs "
                   f"{100 * box2d_stats['outcomes']['crash']:.1f}%; on-ground statistics "
                   f"{ground_judged(ground_rows)}; "
                   f"paired replays {pair['mean_return_diff']:+.1f} ± {pair['se_return_diff']:.1f}",
    }
    return row, raw


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Run the comparison: N = 1000 episodes per pilot and side (``quick``: 64, ``tiny``: 8)."""
    ref = load_reference()
    n = pick(size, tiny=8, quick=64, full=1000)
    small = size != "full"
    rows: dict[str, Any] = {}
    raw: dict[str, np.ndarray] = {}
    names = []
    for setup in setups():
        row, arrays = compare_setup(ref, setup, n, variants=setup in BUILTIN_SETUPS)
        rows[setup.name] = row
        names.append(setup.name)
        raw.update({f"{key}_{setup.name}": value for key, value in arrays.items()})
        print(f"{setup.name}: {row['verdict']}", flush=True)
    env = envelope(ref)
    for case, sweep in env.items():
        for key, values in sweep.items():
            raw[f"envelope_{case}_{key}"] = np.asarray(values)
    raw["envelope_speed_values"], raw["envelope_tilt_values"] = DROP_SPEEDS, TILTS
    env_summary = _envelope_summary(env)
    tilt_ok = all(abs(env_summary["port"][k] - env_summary["box2d"][k]) <= TILT_TOLERANCE + 1e-9
                  for k in ("first_crash_tilt", "first_crash_negative_tilt"))
    n_pass = sum(row["pass"] for row in rows.values())
    verdict = (f"{n_pass}/{len(rows)} pilots match Box2D over N = {n} episodes; tilt envelope "
               f"port {env_summary['port']['first_crash_negative_tilt']:+.2f} / "
               f"{env_summary['port']['first_crash_tilt']:+.2f} vs Box2D "
               f"{env_summary['box2d']['first_crash_negative_tilt']:+.2f} / "
               f"{env_summary['box2d']['first_crash_tilt']:+.2f} rad "
               f"({'within' if tilt_ok else 'NOT within'} {TILT_TOLERANCE}); first crashing drop "
               f"speed port {env_summary['port']['first_crash_speed']} vs Box2D "
               f"{env_summary['box2d']['first_crash_speed']} m/s"
               + (" (small run: small N, not conclusive)" if small else ""))
    summary = {
        "study": NAME, "size": size, "episodes_per_side": n,
        "axes": {"episodes": ["setup", "episode"], "envelope": ["case", "value"]},
        "box2d_seeds": f"reset(seed=i), i = 0..{n - 1}",
        "port_seeds": "jax.random.split(PRNGKey(0)) into one key per lane",
        "paired": "port replays of the Box2D episodes: Box2D's post-reset bodies, terrain, "
                  "dispersion numbers and (random, no-op) actions; other pilots closed loop",
        "criteria": {"return": f"|port - Box2D| <= max({RETURN_TOLERANCE}, {RETURN_SE_FACTOR} "
                               f"combined s.e.)",
                     "rates": f"landing and crash within {RATE_TOLERANCE}",
                     "ground": f"each on-ground statistic within {100 * ground.RELATIVE_TOLERANCE:.0f} %; a "
                               f"mean over the steps of a situation only when >= {ground.MIN_EPISODES} "
                               "episodes of each side contain it",
                     "tilt": f"first crashing tilt on each side within {TILT_TOLERANCE} rad"},
        "box2d_variants": {name: f"Box2D episodes (same seeds) with {options}"
                           for name, options in BOX2D_VARIANTS.items()},
        "rows": rows, "envelope": env_summary, "tilt_envelope_pass": tilt_ok,
        "envelope_setup": {"speeds_m_s": DROP_SPEEDS, "tilts_rad": TILTS,
                           "tilt_drop_speed_m_s": TILT_SPEED,
                           "start": "rigid lander, legs at their limits, lowest leg corner 0.03 m "
                                    "above a flat ground at the pad height, no-op actions"},
        "all_pass": n_pass == len(rows) and tilt_ok,
        "versions": {"jax": jax.__version__, **ref.versions()},
        "verdict": verdict,
    }
    write_outputs(out, summary, raw, _figure(rows, raw, env, names), figure_name="histograms.png")
    (out / "tables.md").write_text(markdown_tables(summary))
    return summary


def rejudge(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's rows judged again by the current criteria from their stored statistics."""
    for row in summary["rows"].values():
        row["port_minus_box2d"] = check_parity(row["port"], row["box2d"])
        stats = {side: {**{k: v[side] for k, v in row["ground"].items()},
                        "counts": row.get("ground_counts", {}).get(side, {})} for side in ("port", "box2d")}
        row["ground"] = ground.compare_ground(stats["port"], stats["box2d"])
        row["pass"] = row["port_minus_box2d"]["pass"] and all(r["pass"] for r in row["ground"].values())
    return summary


def _pair(row: dict[str, Any], key: str, fmt: str) -> str:
    """``port / box2d`` of one on-ground statistic; ``--`` where a side never saw the situation;
    ``(few)`` where it rests on too few episodes to be judged, ``✗`` where it is outside tolerance."""
    entry = row["ground"][key]
    if _missing(entry["port"]) and _missing(entry["box2d"]):
        return "--"
    mark = " (few)" if entry.get("few") else ("" if entry["pass"] else " ✗")
    return f"{_number(entry['port'], fmt)} / {_number(entry['box2d'], fmt)}{mark}"


def _missing(x: float | str | None) -> bool:
    """No value: NaN in memory, ``"nan"`` (or null) once written to JSON."""
    return x is None or bool(np.isnan(float(x)))


def _number(x: float | str | None, fmt: str) -> str:
    return "--" if _missing(x) else format(float(x), fmt)


def markdown_tables(summary: dict[str, Any]) -> str:
    """The README's tables: per pilot, the episode statistics and the on-ground statistics (port /
    Box2D; ✗ marks a statistic outside its tolerance), and the tilt envelope."""
    lines = ["| pilot | return, port / Box2D (± s.e.) | difference (tolerance) | landed | crashed "
             "| paired replays: port − Box2D | verdict |", "|---|---|---|---|---|---|---|"]
    for name, row in summary["rows"].items():
        port, box2d, diff, pair = row["port"], row["box2d"], row["port_minus_box2d"], row["paired"]
        lines.append(
            f"| {name} | {port['mean_return']:.1f} ± {port['se_return']:.1f} / "
            f"{box2d['mean_return']:.1f} ± {box2d['se_return']:.1f} | "
            f"{diff['mean_return_diff']:+.1f} ({diff['return_tolerance']:.1f}) | "
            f"{100 * port['landing_fraction']:.1f} / {100 * box2d['landing_fraction']:.1f} % | "
            f"{100 * port['outcomes']['crash']:.1f} / {100 * box2d['outcomes']['crash']:.1f} % | "
            f"{pair['mean_return_diff']:+.1f} ± {pair['se_return_diff']:.1f} | "
            f"{'pass' if row['pass'] else 'FAIL'} |")
    lines += ["", "| pilot | both legs down | one leg down | right leg alone | left leg alone "
              "| \\|v_x\\| landed (m/s) | tilt, right engine on ground | tilt, left engine on ground "
              "| crash after landing | out of screen | steps on ground |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary["rows"].items():
        cells = [_pair(row, "both_legs", ".3f"), _pair(row, "one_leg", ".3f"),
                 _pair(row, "right_leg_alone", ".3f"), _pair(row, "left_leg_alone", ".3f"),
                 _pair(row, "landed_speed", ".3f"), _pair(row, "tilt_right_engine", "+.3f"),
                 _pair(row, "tilt_left_engine", "+.3f"), _pair(row, "crash_after_landing", ".3f"),
                 _pair(row, "out", ".3f"), _pair(row, "ground_steps", ".0f")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    env = summary["envelope"]
    lines += ["", f"Tilt envelope (first crashing tilt, left / right, drops at {TILT_SPEED} m/s): "
              f"port {env['port']['first_crash_negative_tilt']:+.2f} / "
              f"{env['port']['first_crash_tilt']:+.2f} rad, Box2D "
              f"{env['box2d']['first_crash_negative_tilt']:+.2f} / "
              f"{env['box2d']['first_crash_tilt']:+.2f} rad; first crashing vertical drop: port "
              f"{env['port']['first_crash_speed']}, Box2D {env['box2d']['first_crash_speed']} m/s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    study_main(run, NAME, __doc__.splitlines()[0])


__all__ = ["OUTCOMES", "POLICIES", "SETUPS", "batch_transition", "check_parity", "check_targets",
           "compare_setup", "episode_stats", "load_reference", "main", "markdown_tables",
           "paired_stats", "rejudge", "run",
           "run_port_episodes", "run_port_paired", "setups"]
