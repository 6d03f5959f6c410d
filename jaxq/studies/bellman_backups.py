"""Study 6 -- Bellman backups on chain-5: exact values propagate back one state per sweep.

Setup: Chain(D = 5), gamma = 0.9, synchronous Bellman optimality backups
``Q_{k+1} = T Q_k`` from ``Q_0 = 0`` (``jaxq.exact.value_iteration``), for both chain variants
("reset": the other action returns to s_0; "stay": it keeps the state). The seed document's claim:
"only s_4 gets a correct target on the first backup ... it takes exactly D sweeps for the correct
signal to propagate from the terminal back to s_0", i.e. after ``k`` sweeps exactly the last ``k``
states hold their optimal value ``V*(s_i) = gamma^(D-1-i)``.

The computation is exact (no sampling), so there are no seeds: one run is the whole answer. A
state counts as exact when ``|V_k(s) - V*(s)| <= 1e-6 V*(s)`` (float32 rounding), where
``V_k(s) = max_a Q_k(s, a)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import jaxq
from jaxq import exact, plots
from jaxq.envs.chain import VARIANTS
from jaxq.studies.common import SIZES, study_main, write_outputs
from jaxq.studies.verdicts import verdict
from jaxq.validation import check_choice

NAME = "bellman_backups"
DEPTH, GAMMA = 5, 0.9
RTOL = 1e-6


def backup_path(depth: int, gamma: float, variant: str, sweeps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Q_k for k = 0..sweeps [sweeps + 1, D, 2], Q* [D, 2])`` on the chain's ``D`` real states."""
    env, params = jaxq.make("Chain", depth=depth, variant=variant)
    mdp = env.tabular(params)
    path = np.asarray(exact.value_iteration(mdp, gamma, sweeps))[:, :depth]
    return path, np.asarray(exact.q_star(mdp, gamma))[:depth]


def exact_states(path: np.ndarray, q_star: np.ndarray) -> np.ndarray:
    """``[sweeps + 1, D]``: ``V_k(s) = max_a Q_k(s, a)`` equals ``V*(s)`` to relative ``RTOL``."""
    v_star = q_star.max(-1)
    return np.abs(path.max(-1) - v_star) <= RTOL * np.abs(v_star)


def first_exact_sweep(path: np.ndarray, q_star: np.ndarray) -> int:
    """The first ``k`` with the whole table exact, ``max_{s,a} |Q_k - Q*| <= RTOL ||Q*||_inf``."""
    error = np.abs(path - q_star).max(axis=(1, 2))
    return int(np.argmax(error <= RTOL * np.abs(q_star).max()))


def figure(path: np.ndarray, q_star: np.ndarray, gamma: float) -> Any:
    """Left: ``V_k(s)`` per state and sweep, coloured by its error. Right: per-state error per sweep."""
    depth = q_star.shape[0]
    v = path.max(-1)
    error = np.abs(v - q_star.max(-1))
    sweeps = np.arange(path.shape[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    image = left.imshow(error, cmap="RdYlGn_r", vmin=0.0, vmax=max(error.max(), 1e-9), aspect="auto")
    for k in sweeps:
        for s in range(depth):
            left.text(s, k, f"{v[k, s]:.3f}", ha="center", va="center", fontsize=8)
    left.set_xticks(range(depth), [f"s{s}" for s in range(depth)])
    left.set_yticks(sweeps)
    left.set_xlabel("state (the terminal follows s4)")
    left.set_ylabel("sweep k (synchronous backups of every pair)")
    left.set_title("V_k(s) = max_a Q_k(s, a), colour = |V_k(s) - V*(s)|", fontsize=9)
    fig.colorbar(image, ax=left, label="absolute error")
    for s in range(depth):
        right.plot(sweeps, error[:, s], marker="o", label=f"s{s} (V* = {q_star[s].max():.4f})")
    right.plot(sweeps, np.abs(path - q_star).max(axis=(1, 2)), color="black", linestyle="--",
               label="||Q_k - Q*||_inf (both actions)")
    right.set_xlabel("sweep k")
    right.set_ylabel("absolute error |V_k(s) - V*(s)|")
    right.set_title("per-state error: one more state becomes exact per sweep", fontsize=9)
    return plots.finish(fig, [right], f"Bellman backups on chain-{depth} (variant reset), gamma = {gamma}, "
                        "Q_0 = 0 -- exact computation, no seeds", legend_fontsize=8)


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Back up chain-5 from zero for ``D + 2`` sweeps in both variants; check the last-k-states rule."""
    check_choice("size", size, SIZES)  # exact: every size computes the same thing
    sweeps = DEPTH + 2
    expected = np.arange(DEPTH)[None, :] >= DEPTH - np.arange(sweeps + 1)[:, None]  # last k states
    arrays: dict[str, np.ndarray] = {}
    checks: dict[str, Any] = {}
    for variant in VARIANTS:
        path, q_star = backup_path(DEPTH, GAMMA, variant, sweeps)
        exact_now = exact_states(path, q_star)
        arrays[f"q_path_{variant}"], arrays[f"q_star_{variant}"] = path, q_star
        arrays[f"exact_states_{variant}"] = exact_now
        checks[variant] = {
            "last_k_exact_at_every_k": bool(np.array_equal(exact_now, expected)),
            "exact_states_per_sweep": exact_now.sum(1).tolist(),
            "inexact_states_still_zero": bool(np.all(path.max(-1)[~expected] == 0.0)),
            "whole_table_exact_at_sweep": first_exact_sweep(path, q_star),
        }
    held = all(c["last_k_exact_at_every_k"] for c in checks.values())
    reset = checks["reset"]
    text = (f"on chain-{DEPTH} with gamma = {GAMMA}, after k = 0..{sweeps} sweeps exactly the last min(k, {DEPTH}) states are exact "
            f"(exact states per sweep {reset['exact_states_per_sweep']}) in both variants: "
            f"{'yes' if held else 'no'}; the whole Q table (incl. the non-forward action) is exact from sweep "
            f"{reset['whole_table_exact_at_sweep']} (reset) / {checks['stay']['whole_table_exact_at_sweep']} (stay); "
            "exact computation, no seeds needed")
    summary = {
        "study": NAME,
        "title": "Bellman backups on chain-5: one more state becomes exact per sweep",
        "claim": "On a depth-5 chain, backup k gives a correct target only to the state k steps from the "
                 "terminal: after k sweeps exactly the last k states are exact; D sweeps reach s_0.",
        "setup": {"env": f"Chain(depth={DEPTH})", "variants": list(VARIANTS), "gamma": GAMMA, "q0": "zeros",
                  "sweeps": sweeps, "seeds": None, "exact_tolerance": f"|V_k - V*| <= {RTOL:g} V*",
                  "note": "exact dynamic programming: no randomness, so no seeds"},
        "v_star": arrays["q_star_reset"].max(-1).tolist(),
        "checks": checks,
        "held": held,
        "verdict": verdict(held, text),
    }
    return write_outputs(out, summary, arrays, figure(arrays["q_path_reset"], arrays["q_star_reset"], GAMMA))


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
