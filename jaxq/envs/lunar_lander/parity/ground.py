"""How a pilot's episodes spend their time on the ground, and where two paired runs part.

Pure NumPy on recorded trajectories, the same code for the port and for Box2D. A trajectory batch
is padded to ``[T, n]``: ``obs [T, n, 8]`` the observation each step's action was chosen from,
``next_obs [T, n, 8]`` the one the step returned, ``side [T, n]`` the side engine fired (-1 the
left engine, action 1; +1 the right engine, action 3; 0 none) and ``alive [T, n]`` the steps that
belong to the episode. Observation entries 6 and 7 are the contact flags of legs[0] (the +x side,
"right") and legs[1] ("left"); entry 2 is ``0.2 v_x``, entry 4 the hull angle.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

VX_SCALE = 0.2  # observation entry 2 = VX_SCALE * v_x (m/s)
GROUND_KEYS = ("both_legs", "one_leg", "right_leg_alone", "left_leg_alone", "landed_speed",
               "tilt_right_engine", "tilt_left_engine", "crash_after_landing", "out", "ground_steps")
RELATIVE_TOLERANCE = 0.2  # on-ground statistics agree when within 20 % of Box2D's ...
# ... or within these absolute amounts, for statistics near zero (the tilt of a pilot that fires
# a side engine on the ground only to hold the hull level, the crash share of a pilot that rarely
# crashes): half a point of a share, 0.01 rad, 0.01 m/s, two steps per episode.
ABSOLUTE_FLOOR = {"both_legs": 0.005, "one_leg": 0.005, "right_leg_alone": 0.005,
                  "left_leg_alone": 0.005, "landed_speed": 0.01, "tilt_right_engine": 0.01,
                  "tilt_left_engine": 0.01, "crash_after_landing": 0.005, "out": 0.005,
                  "ground_steps": 2.0}
# Means over the steps of a situation (the speed with both legs down, the tilt after a side engine
# fired with both legs down) are judged only when at least MIN_EPISODES episodes of each side contain
# such a step: steps of one episode are strongly correlated, so a mean from a handful of episodes
# (one lander sliding off the pad for hundreds of steps) says nothing about the physics. Below that,
# both values are reported and the statistic is not judged.
CONDITIONED_ON = {"landed_speed": "both_legs", "tilt_right_engine": "right_engine_on_ground",
                  "tilt_left_engine": "left_engine_on_ground"}
MIN_EPISODES = 20
PART_TOLERANCE = 0.01  # observation units: paired runs have parted once a state entry differs more


def side_directions(actions: np.ndarray, continuous: bool) -> np.ndarray:
    """The side engine each action fires: ``[...]`` in {-1, 0, +1} (continuous: ``sign(a_1)`` when
    ``|a_1| > 0.5``; discrete: action 1 -> -1, action 3 -> +1)."""
    actions = np.asarray(actions)
    if continuous:
        lateral = actions[..., 1]
        return np.where(np.abs(lateral) > 0.5, np.sign(lateral), 0.0)
    return np.where(actions == 1, -1.0, np.where(actions == 3, 1.0, 0.0))


def pad(observations: Sequence[np.ndarray], actions: Sequence[np.ndarray],
        continuous: bool) -> dict[str, np.ndarray]:
    """Per-episode records (observations ``[T_i + 1, 8]`` starting with the reset one, actions
    ``[T_i]``) padded into ``obs``, ``next_obs``, ``side`` and ``alive`` arrays ``[T, n]``."""
    n = len(observations)
    steps = max(len(a) for a in actions)
    obs = np.zeros((steps, n, 8), np.float32)
    nxt = np.zeros((steps, n, 8), np.float32)
    side = np.zeros((steps, n))
    alive = np.zeros((steps, n), bool)
    for i, (o, a) in enumerate(zip(observations, actions)):
        t = len(a)
        obs[:t, i], nxt[:t, i] = o[:-1], o[1:]
        side[:t, i] = side_directions(a, continuous)
        alive[:t, i] = True
    return {"obs": obs, "next_obs": nxt, "side": side, "alive": alive}


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else float("nan")


def ground_statistics(obs: np.ndarray, next_obs: np.ndarray, side: np.ndarray, alive: np.ndarray,
                      outcomes: np.ndarray) -> dict[str, Any]:
    """On-ground statistics of a batch of episodes (``outcomes [n]``: "sleep", "crash", "out" or
    "truncated").

    Per step (shares of all steps): ``both_legs`` down, ``one_leg`` down, and which one
    (``right_leg_alone`` = legs[0], ``left_leg_alone`` = legs[1]). ``landed_speed``: mean
    ``|v_x|`` (m/s) over steps with both legs down. ``tilt_right_engine`` / ``tilt_left_engine``:
    mean hull angle after a step that fired that side engine with both legs down. Per episode:
    ``crash_after_landing`` (share of episodes that crash or leave the screen after a step with
    both legs down), ``out`` (share that leave the screen), ``ground_steps`` (mean steps with a
    leg down). ``counts`` gives the number of steps behind each mean and, for each situation of
    :data:`CONDITIONED_ON`, the number of episodes with such a step (``<situation>_episodes``).
    """
    right, left = obs[..., 6] > 0.5, obs[..., 7] > 0.5
    both = right & left & alive
    one = (right != left) & alive
    steps = alive.sum()
    landed = both.any(axis=0)
    failed = np.isin(outcomes, ("crash", "out"))
    fire_right, fire_left = both & (side > 0), both & (side < 0)
    stats = {
        "both_legs": float(both.sum() / steps),
        "one_leg": float(one.sum() / steps),
        "right_leg_alone": float((right & ~left & alive).sum() / steps),
        "left_leg_alone": float((left & ~right & alive).sum() / steps),
        "landed_speed": _mean(np.abs(obs[..., 2]) / VX_SCALE, both),
        "tilt_right_engine": _mean(next_obs[..., 4], fire_right),
        "tilt_left_engine": _mean(next_obs[..., 4], fire_left),
        "crash_after_landing": float(np.mean(failed & landed)),
        "out": float(np.mean(outcomes == "out")),
        "ground_steps": float(((right | left) & alive).sum(axis=0).mean()),
    }
    situations = {"both_legs": both, "right_engine_on_ground": fire_right, "left_engine_on_ground": fire_left}
    stats["counts"] = {"steps": int(steps), "both_legs_steps": int(both.sum()),
                       "right_engine_on_ground": int(fire_right.sum()),
                       "left_engine_on_ground": int(fire_left.sum()), "episodes": len(outcomes),
                       **{f"{name}_episodes": int(mask.any(axis=0).sum()) for name, mask in situations.items()}}
    return stats


def too_few_episodes(key: str, port_counts: dict[str, int], box2d_counts: dict[str, int]) -> bool:
    """Whether statistic ``key`` rests on fewer than :data:`MIN_EPISODES` episodes on a side (see
    :data:`CONDITIONED_ON`; counts without episode numbers, from older summaries, never are)."""
    situation = CONDITIONED_ON.get(key)
    if situation is None:
        return False
    found = [counts.get(f"{situation}_episodes") for counts in (port_counts, box2d_counts)]
    return any(n is not None and n < MIN_EPISODES for n in found)


def compare_ground(port: dict[str, Any], box2d: dict[str, Any],
                   tolerance: float = RELATIVE_TOLERANCE) -> dict[str, dict[str, Any]]:
    """Per statistic: both values, the relative difference ``|port - box2d| / |box2d|`` and
    whether it is within ``tolerance`` or within the statistic's :data:`ABSOLUTE_FLOOR`. A
    statistic that neither side has (no such steps: NaN on both) passes as not applicable; one that
    rests on too few episodes (:func:`too_few_episodes`, from the sides' ``counts``) is marked
    ``few`` and passes as not judged."""
    out = {}
    for key in GROUND_KEYS:
        a, b = (float("nan") if x is None else float(x) for x in (port[key], box2d[key]))  # JSON null
        few = too_few_episodes(key, port.get("counts", {}), box2d.get("counts", {}))
        if (np.isnan(a) and np.isnan(b)) or few:
            out[key] = {"port": a, "box2d": b, "relative_difference": float("nan"), "pass": True, "few": few}
            continue
        diff = abs(a - b)
        rel = diff / abs(b) if b != 0 else (0.0 if a == 0 else float("inf"))
        ok = bool(rel <= tolerance or diff <= ABSOLUTE_FLOOR[key])
        out[key] = {"port": a, "box2d": b, "relative_difference": rel, "pass": ok, "few": False}
    return out


def parting(port_obs: np.ndarray, port_alive: np.ndarray, box2d_obs: np.ndarray,
            box2d_alive: np.ndarray, tolerance: float = PART_TOLERANCE) -> dict[str, Any]:
    """Where paired runs of the same episodes part.

    ``*_obs [T, n, 8]`` are the observations after each step, ``*_alive [T, n]`` their steps. An
    episode parts at the first step (1-based) after which a state entry (0-5) differs by more
    than ``tolerance`` or a contact flag differs, both runs still going; ``0`` if they never do.
    Returns ``steps [n]`` and a summary: share parted, median parting step, and the share of the
    partings at which a leg of either run touched the ground (else: in flight).
    """
    steps = min(len(port_obs), len(box2d_obs))
    both = port_alive[:steps] & box2d_alive[:steps]
    a, b = port_obs[:steps], box2d_obs[:steps]
    apart = (np.abs(a[..., :6] - b[..., :6]).max(-1) > tolerance) | (a[..., 6:] != b[..., 6:]).any(-1)
    apart &= both
    parted = apart.any(axis=0)
    first = np.where(parted, apart.argmax(axis=0), -1)
    idx = np.arange(a.shape[1])
    at = np.maximum(first, 0)
    grounded = ((a[at, idx, 6:] > 0.5) | (b[at, idx, 6:] > 0.5)).any(-1) & parted
    return {
        "steps": np.where(parted, first + 1, 0),
        "parted": float(parted.mean()),
        "median_parting_step": float(np.median(first[parted] + 1)) if parted.any() else float("nan"),
        "parted_on_ground": float(grounded.sum() / max(parted.sum(), 1)),
    }


def touchdown(port_obs: np.ndarray, port_alive: np.ndarray, box2d_obs: np.ndarray,
              box2d_alive: np.ndarray) -> dict[str, Any]:
    """How the hull answers its first touchdown in paired runs (arrays as in :func:`parting`).

    Over the episodes in which both runs first report a leg on the ground after the same step
    ``k`` and both go on after step ``k + 1``: the mean change of the vertical-velocity entry
    (``obs[3] = (H/100) v_y``) over step ``k + 1``, the step in which the ground first pushes
    back, per side. A leg that reaches the ground within a step is stopped on its own by Box2D's
    time-of-impact sub-step (the port's joint gap); this is where its handling shows. Episodes
    whose step ``k + 1`` is their last are left out: there the hull itself reaches the ground,
    and Box2D's sub-step stops it dead in a step whose reward is the crash's -100 whatever the
    velocity, so it says nothing about the legs. The means are NaN when no episode qualifies.
    """
    steps = min(len(port_obs), len(box2d_obs))
    a, b = port_obs[:steps], box2d_obs[:steps]
    down_a = (a[..., 6:] > 0.5).any(-1) & port_alive[:steps]
    down_b = (b[..., 6:] > 0.5).any(-1) & box2d_alive[:steps]
    first = down_a.argmax(0)
    idx = np.arange(a.shape[1])
    after = np.minimum(first + 1, steps - 1)
    beyond = np.minimum(first + 2, steps - 1)
    usable = (down_a.any(0) & down_b.any(0) & (first == down_b.argmax(0)) & (first + 2 < steps)
              & port_alive[beyond, idx] & box2d_alive[beyond, idx])
    change = {side: x[after, idx, 3] - x[first, idx, 3] for side, x in (("port", a), ("box2d", b))}
    mean = {side: float(v[usable].mean()) if usable.any() else float("nan") for side, v in change.items()}
    return {"touchdown_episodes": int(usable.sum()), "touchdown_dvy_port": mean["port"],
            "touchdown_dvy_box2d": mean["box2d"]}


__all__ = ["ABSOLUTE_FLOOR", "GROUND_KEYS", "PART_TOLERANCE", "RELATIVE_TOLERANCE", "compare_ground",
           "ground_statistics", "pad", "parting", "side_directions", "touchdown"]
