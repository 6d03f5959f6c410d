"""Study 3 -- cosine function approximation plateaus above its projection floor (branching MDP).

Setup: the default 5-state Branching tree (10 non-terminal pairs), gamma = 0.9, epsilon-greedy
behaviour (epsilon = 0.3), the seed document's 3-parameter linear approximator

    Q_theta(s, a) = theta_1 + theta_2 cos(pi depth(s) / 3) + theta_3 a,      theta_0 = 0,

trained online with plain SGD at alpha in {0.01, 0.05, 0.2} by semi-gradient Q-learning
(``theta += alpha delta grad Q(s, a)``) and, for contrast, the full (residual) gradient
(``theta += alpha delta (grad Q(s, a) - gamma grad Q(s', a*))``).

The seed document's claim: with 3 parameters for 10 values Q* is not representable -- the projection
floor ``||Pi Q* - Q*||_inf > 0`` -- and the learned error ``e_t = ||Q_theta_t - Q*||_inf`` (absolute,
``||Q*||_inf = 1``) plateaus above even this floor; with the deadly triad ``Pi T`` may fail to
contract, so the iterates may oscillate rather than converge. Measured here:

* floors: ``Pi`` the least-squares projection onto the features over the non-terminal pairs,
  unweighted and weighted by the on-policy visitation distribution ``d`` (the normalised expected
  visits per episode of the epsilon-greedy policy w.r.t. Q*, ``jaxq.exact.occupancy``), and the
  minimax floor ``min_theta ||Phi theta - Q*||_inf`` -- the smallest sup-norm error ANY theta can
  reach (a linear program), so no learned error may ever be below it;
* per seed, the plateau = the mean of ``e_t`` over the second half of the run, and the fraction of
  seeds whose plateau is at or above each floor;
* the fixed points of the expected updates under ``d`` with the greedy target policy
  (see :func:`expected_fixed_points`), whose errors predict the plateaus;
* volatility = the std over time of ``e_t`` in the second half (per seed), and non-finite lanes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import linprog

import jaxq
from jaxq import exact, metrics, plots
from jaxq.learners import LinearQ, make_learner
from jaxq.learners.exploration import epsilon_greedy_probs
from jaxq.studies.common import pick, study_main, write_outputs
from jaxq.studies.verdicts import verdict
from jaxq.sweep import sweep
from jaxq.types import TabularMDP

NAME = "cosine_fa"
GAMMA, EPSILON = 0.9, 0.3
ALPHAS = (0.01, 0.05, 0.2)
MAIN_ALPHA = 0.05
GRADIENTS = {"semi": "semi-gradient", "full": "full (residual) gradient"}
FIXED_POINT = {"semi": "TD", "full": "residual"}
FLOORS = {"unweighted": "||Pi Q* - Q*||, unweighted", "weighted": "||Pi_d Q* - Q*||, visitation-weighted",
          "minimax": "min_theta ||Phi theta - Q*|| (any theta)"}
HELD_FRACTION = 0.95
SETTLED = 0.02  # the smallest alpha's mean plateau within 2% of the TD fixed point's error


def feature_table(q_function: LinearQ, mdp: TabularMDP) -> np.ndarray:
    """``[S, A, K]``: ``phi(s, a)`` of the approximator's feature map at every state's observation."""
    actions = jnp.arange(q_function.num_actions)
    table = jax.vmap(lambda obs: jax.vmap(lambda a: q_function.features(obs, a))(actions))(mdp.features)
    return np.asarray(table, np.float64)


def visitation(mdp: TabularMDP, q_star: jax.Array, epsilon: float) -> np.ndarray:
    """``d(s, a)``: expected visits per episode of the epsilon-greedy policy w.r.t. ``Q*``, normalised
    to sum to one -- the per-step distribution of the updated pairs when that policy acts."""
    d = np.asarray(exact.occupancy(mdp, epsilon_greedy_probs(q_star, epsilon), 1.0), np.float64)
    return d / d.sum()


def minimax_floor(q: np.ndarray, features: np.ndarray, mask: np.ndarray) -> float:
    """``min_theta max_{(s,a) in mask} |phi(s, a) . theta - q(s, a)|``, as the linear program
    ``min t  s.t.  -t <= Phi theta - q <= t``."""
    phi, y = features[mask], q[mask]
    ones = np.ones((y.size, 1))
    cost = np.r_[np.zeros(phi.shape[1]), 1.0]
    result = linprog(cost, A_ub=np.block([[phi, -ones], [-phi, -ones]]), b_ub=np.r_[y, -y],
                     bounds=[(None, None)] * phi.shape[1] + [(0, None)], method="highs")
    if not result.success:
        raise RuntimeError(f"the minimax floor's linear program failed: {result.message}")
    return float(result.x[-1])


def expected_fixed_points(mdp: TabularMDP, features: np.ndarray, q_star: np.ndarray, gamma: float,
                          d: np.ndarray) -> dict[str, dict[str, Any]]:
    """Where the expected semi- and full-gradient updates vanish, for a deterministic MDP.

    With updates drawn from ``d`` and the greedy target policy ``pi = argmax Q*`` (whose next-state
    features are ``psi(s, a) = sum_s' P(s'|s, a) phi(s', pi(s'))``, 0 at the terminal), the TD error is
    ``delta = R + gamma psi . theta - phi . theta`` and

    * semi-gradient (TD):   ``E_d[delta phi] = 0``  =>  ``theta = (Phi^T D (Phi - gamma Psi))^-1 Phi^T D R``;
    * full gradient (residual): ``E_d[delta (phi - gamma psi)] = 0`` => with ``G = Phi - gamma Psi``,
      ``theta = (G^T D G)^-1 G^T D R`` (the sampled residual gradient is unbiased because every
      transition is deterministic).

    A fixed point is self-consistent when its own greedy policy is ``pi``; otherwise its error is NaN.
    """
    pi = q_star.argmax(-1)
    live = ~np.asarray(mdp.terminal)
    scored = np.asarray(mdp.scored)
    P, R = np.asarray(mdp.P, np.float64), np.asarray(mdp.R, np.float64)
    psi = np.einsum("sat,tk->sak", P, features[np.arange(len(pi)), pi] * live[:, None])
    k = features.shape[-1]
    phi, g = features.reshape(-1, k), (features - gamma * psi).reshape(-1, k)
    w, r = d.reshape(-1, 1), R.reshape(-1, 1)
    systems = {"semi": (phi.T @ (w * g), phi.T @ (w * r)), "full": (g.T @ (w * g), g.T @ (w * r))}
    out = {}
    for name, (lhs, rhs) in systems.items():
        theta = np.linalg.solve(lhs, rhs)[:, 0]
        q = features @ theta
        consistent = bool(np.all(q.argmax(-1)[scored] == pi[scored]))
        error = float(np.abs(q - q_star)[scored].max()) if consistent else float("nan")
        out[name] = {"theta": theta.tolist(), "error": error, "greedy_policy_optimal": consistent}
    return out


def exact_references(mdp: TabularMDP, q_function: LinearQ, gamma: float, epsilon: float) -> dict[str, Any]:
    """Everything exact about these features on ``mdp``: ``Q*``, the visitation distribution ``d``, the
    feature table, the three floors (unweighted, ``d``-weighted, minimax) and the expected-update fixed points."""
    q_star_f32 = exact.q_star(mdp, gamma)
    d = visitation(mdp, q_star_f32, epsilon)
    q_star = np.asarray(q_star_f32, np.float64)
    features = feature_table(q_function, mdp)
    mask = np.broadcast_to(np.asarray(mdp.scored)[:, None], q_star.shape)
    floors = {
        "unweighted": float(exact.projection_floor(q_star, features, mask=mask)),
        "weighted": float(exact.projection_floor(q_star, features, d, mask)),
        "minimax": minimax_floor(q_star, features, mask),
    }
    return {"q_star": q_star, "visitation": d, "features": features, "floors": floors,
            "fixed_points": expected_fixed_points(mdp, features, q_star, gamma, d)}


def lane_statistics(errors: np.ndarray, floors: dict[str, float]) -> dict[str, Any]:
    """Plateau, volatility and floor comparisons of ``errors [seeds, T]`` (second half of the run)."""
    half = errors[:, errors.shape[1] // 2:]
    plateau, volatility = half.mean(1), half.std(1)
    finite = np.isfinite(plateau)
    return {
        "plateau": metrics.summarize(plateau),
        "volatility": metrics.summarize(volatility),
        "non_finite_lanes": int((~np.isfinite(errors).all(1)).sum()),
        "plateau_at_or_above": {k: float(np.mean(plateau[finite] >= v)) for k, v in floors.items()},
        "points_below": {k: float(np.mean(half[np.isfinite(half)] < v)) for k, v in floors.items()},
        "min_error_any_time": float(np.nanmin(errors)),
    }


def figure(t: np.ndarray, errors: dict[str, np.ndarray], stats: dict[str, dict[str, Any]],
           floors: dict[str, float], fixed: dict[str, dict[str, Any]], seeds: int) -> Any:
    """(a) error curves at the main alpha, (b) plateau distribution, (c) plateau and (d) volatility vs alpha."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (a, b), (c, d) = axes
    main = ALPHAS.index(MAIN_ALPHA)
    floor_style = {"unweighted": ("gray", "--"), "weighted": ("tab:brown", "--"), "minimax": ("black", ":")}

    def floor_lines(ax, vertical=False):
        for name, value in floors.items():
            color, style = floor_style[name]
            line = ax.axvline if vertical else ax.axhline
            line(value, color=color, linestyle=style, linewidth=1.2, label=f"floor {FLOORS[name]} = {value:.3f}")

    for i, (gradient, label) in enumerate(GRADIENTS.items()):
        color = f"C{i}"
        curves = errors[gradient][main]
        plots.band(a, t, curves, f"{label}: mean, 95% CI over {seeds} seeds", color=color)
        a.plot(t, curves[0], color=color, linewidth=0.6, alpha=0.6, label=f"{label}: seed 0")
        fp = fixed[gradient]["error"]
        plateaus = curves[:, curves.shape[1] // 2:].mean(1)
        b.hist(plateaus[np.isfinite(plateaus)], bins=40, color=color, alpha=0.5, label=f"{label} plateaus")
        for ax, vertical in ((a, False), (b, True), (c, False)):
            (ax.axvline if vertical else ax.axhline)(fp, color=color, linestyle="-.", linewidth=1.2,
                                                     label=f"{FIXED_POINT[gradient]} fixed point error {fp:.3f}")
        for key, ax in (("plateau", c), ("volatility", d)):
            rows = [stats[gradient][str(alpha)][key] for alpha in ALPHAS]
            mean = np.array([r["mean"] for r in rows])
            err = np.array([[r["mean"] - r["ci95_low"], r["ci95_high"] - r["mean"]] for r in rows]).T
            ax.errorbar(ALPHAS, mean, yerr=err, color=color, marker="o", capsize=3,
                        label=f"{label}: mean, 95% CI over {seeds} seeds")
    floor_lines(a)
    floor_lines(b, vertical=True)
    floor_lines(c)
    a.set_title(f"(a) error at alpha = {MAIN_ALPHA}", fontsize=9)
    a.set_xlabel("environment step")
    a.set_ylabel("||Q_theta - Q*||_inf (absolute; ||Q*||_inf = 1)")
    b.set_title(f"(b) per-seed plateau at alpha = {MAIN_ALPHA} (mean error over the second half)", fontsize=9)
    b.set_xlabel("plateau of ||Q_theta - Q*||_inf")
    b.set_ylabel("seeds")
    c.set_title("(c) plateau against the step size", fontsize=9)
    c.set_ylabel("plateau of ||Q_theta - Q*||_inf")
    d.set_title("(d) volatility = std over time of the error in the second half, per seed", fontsize=9)
    d.set_ylabel("volatility of ||Q_theta - Q*||_inf")
    for ax in (c, d):
        ax.set_xscale("log")
        ax.set_xlabel("step size alpha (SGD)")
    d.set_yscale("log")
    return plots.finish(fig, axes, f"Cosine features Q = th1 + th2 cos(pi depth/3) + th3 a on the 5-state Branching "
                        f"tree: gamma = {GAMMA}, epsilon = {EPSILON}, {int(t[-1])} steps, {seeds} seeds per setting")


def learn(seeds: int, steps: int) -> dict[str, Any]:
    """Both gradients over the step-size axis: errors ``[alpha, seeds, T]``, final greedy-policy values
    ``[alpha, seeds]``, log steps, timings and the (shared) approximator."""
    env, params = jaxq.make("Branching")
    out: dict[str, Any] = {"errors": {}, "policy_values": {}, "timing": {}}
    for gradient in GRADIENTS:
        learner = make_learner("linear", env, params, steps=steps, log_every=steps // 200, features="cosine",
                               gradient=gradient, log_bias=False)
        result = sweep(learner, {"alpha": list(ALPHAS), "gamma": [GAMMA], "epsilon": [EPSILON]}, seeds=seeds)
        out["errors"][gradient] = result.logs["error"].reshape(len(ALPHAS), seeds, -1)
        out["policy_values"][gradient] = result.logs["policy_value"].reshape(len(ALPHAS), seeds, -1)[..., -1]
        out["timing"][gradient] = result.timing
        out["t"], out["q_function"] = np.asarray(result.coords["t"]), learner.q_function
    return out


def statistics(learned: dict[str, Any], floors: dict[str, float], v_star: float) -> dict[str, dict[str, Any]]:
    """:func:`lane_statistics` per gradient and alpha, plus the fraction of seeds whose final greedy
    policy is optimal (its value within a relative 1e-4 of ``V*(s_0)``)."""
    stats: dict[str, dict[str, Any]] = {g: {} for g in GRADIENTS}
    for g in GRADIENTS:
        for i, alpha in enumerate(ALPHAS):
            is_optimal = np.abs(learned["policy_values"][g][i] - v_star) <= 1e-4 * abs(v_star)
            stats[g][str(alpha)] = {**lane_statistics(learned["errors"][g][i], floors),
                                    "greedy_policy_optimal_fraction": float(is_optimal.mean())}
    return stats


def describe(stats: dict[str, dict[str, Any]], floors: dict[str, float], fixed: dict[str, dict[str, Any]],
             seeds: int) -> tuple[bool, str, dict[str, Any]]:
    """``(held, verdict text, findings)``: held when >= ``HELD_FRACTION`` of semi-gradient seeds plateau at
    or above both L2 floors at every alpha."""
    semi = stats["semi"]
    worst_above = {k: min(semi[str(a)]["plateau_at_or_above"][k] for a in ALPHAS) for k in ("unweighted", "weighted")}
    held = all(v >= HELD_FRACTION for v in worst_above.values())
    never_below_minimax = all(s["min_error_any_time"] >= floors["minimax"] - 1e-5
                              for g in GRADIENTS for s in stats[g].values())
    non_finite = sum(s["non_finite_lanes"] for g in GRADIENTS for s in stats[g].values())
    volatility = [semi[str(a)]["volatility"]["mean"] for a in ALPHAS]
    grows = all(x < y for x, y in zip(volatility, volatility[1:]))
    small = {g: stats[g][str(ALPHAS[0])]["plateau"]["mean"] for g in GRADIENTS}
    main = semi[str(MAIN_ALPHA)]["plateau"]
    dips = semi[str(MAIN_ALPHA)]["points_below"]
    optimal = min(s["greedy_policy_optimal_fraction"] for g in GRADIENTS for s in stats[g].values())
    settles = abs(small["semi"] - fixed["semi"]["error"]) <= SETTLED * fixed["semi"]["error"]
    dynamics = ("the iterates fluctuate around the TD fixed point with an amplitude that grows with alpha: no "
                "divergence and no oscillation beyond sampling noise" if settles and grows and non_finite == 0 else
                "the iterates do not settle around the TD fixed point")
    text = (
        f"semi-gradient plateau {main['mean']:.3f} (95% CI {main['ci95_low']:.3f}-{main['ci95_high']:.3f}) at alpha = "
        f"{MAIN_ALPHA} over {seeds} seeds; plateau >= the unweighted floor {floors['unweighted']:.3f} in "
        f"{worst_above['unweighted']:.1%} and >= the visitation-weighted floor {floors['weighted']:.3f} in "
        f"{worst_above['weighted']:.1%} of seeds (worst alpha of {list(ALPHAS)}); minimax floor "
        f"{floors['minimax']:.3f} {'never' if never_below_minimax else 'SOMETIMES'} undercut, but single logged errors "
        f"(second half, alpha = {MAIN_ALPHA}) dip below the weighted floor {dips['weighted']:.1%} and below the "
        f"unweighted one {dips['unweighted']:.1%} of the time (L2 floors are not lower bounds); plateau at alpha = "
        f"{ALPHAS[0]}: semi {small['semi']:.3f} vs TD fixed point {fixed['semi']['error']:.3f}, full "
        f"{small['full']:.3f} vs residual fixed point {fixed['full']['error']:.3f}; {non_finite} non-finite lanes; "
        f"volatility {'/'.join(f'{v:.3f}' for v in volatility)} at alpha = {'/'.join(map(str, ALPHAS))} "
        f"({'grows' if grows else 'does not grow monotonically'} with alpha): {dynamics}; greedy policy optimal in "
        f">= {optimal:.1%} of seeds despite the value error"
    )
    findings = {"plateau_at_or_above_worst_alpha": worst_above, "never_below_minimax_floor": never_below_minimax,
                "non_finite_lanes": non_finite, "settles_at_td_fixed_point": settles,
                "volatility_grows_with_alpha": grows, "greedy_policy_optimal_fraction_min": optimal}
    return held, text, findings


def run(out: Path, size: str = "full") -> dict[str, Any]:
    """Semi- and full-gradient cosine FA over a step-size axis; floors, fixed points, plateaus."""
    seeds, steps = pick(size, tiny=(16, 2_000), quick=(256, 10_000), full=(1_000, 20_000))
    learned = learn(seeds, steps)
    env, params = jaxq.make("Branching")
    mdp = env.tabular(params)
    ref = exact_references(mdp, learned["q_function"], GAMMA, EPSILON)
    v_star = float(np.asarray(exact.v_star(mdp, GAMMA)) @ np.asarray(mdp.initial))
    stats = statistics(learned, ref["floors"], v_star)
    held, text, findings = describe(stats, ref["floors"], ref["fixed_points"], seeds)
    summary = {
        "study": NAME,
        "title": "Cosine function approximation plateaus above its projection floor (Branching MDP)",
        "claim": "With Q = th1 + th2 cos(pi depth/3) + th3 a (3 parameters for 10 values), semi-gradient Q-learning's "
                 "error plateaus above the projection floor ||Pi Q* - Q*||_inf > 0 (not to zero as in the tabular "
                 "case); Pi T may fail to contract, so the iterates may oscillate rather than converge.",
        "setup": {"env": "Branching (default 5-state tree)", "gamma": GAMMA, "epsilon": EPSILON,
                  "features": "phi(s, a) = (1, cos(pi depth(s) / 3), a), theta_0 = 0", "optimizer": "SGD",
                  "alphas": list(ALPHAS), "gradients": list(GRADIENTS.values()), "seeds": seeds, "steps": steps,
                  "log_every": steps // 200,
                  "error": "||Q_theta - Q*||_inf over the 10 non-terminal pairs (absolute; ||Q*||_inf = 1)",
                  "plateau": "per seed, the mean of the error over the second half of the run",
                  "volatility": "per seed, the std over time of the error over the second half of the run",
                  "visitation": "normalised expected visits per episode of epsilon-greedy(Q*) (exact.occupancy)",
                  "held_if": f">= {HELD_FRACTION:.0%} of semi-gradient seeds plateau at or above both the unweighted "
                             "and the weighted floor at every alpha"},
        "floors": ref["floors"],
        "visitation": ref["visitation"].tolist(),
        "fixed_points": ref["fixed_points"],
        "v_star_start": v_star,
        "statistics": stats,
        "findings": findings,
        "timing": learned["timing"],
        "held": held,
        "verdict": verdict(held, text),
    }
    arrays = {"t": learned["t"], "alphas": np.asarray(ALPHAS), "features": ref["features"], "q_star": ref["q_star"],
              "visitation": ref["visitation"],
              **{f"error_{g}": learned["errors"][g] for g in GRADIENTS},
              **{f"final_policy_value_{g}": learned["policy_values"][g] for g in GRADIENTS}}
    fig = figure(learned["t"], learned["errors"], stats, ref["floors"], ref["fixed_points"], seeds)
    return write_outputs(out, summary, arrays, fig)


def main() -> None:
    study_main(run, NAME, __doc__)


if __name__ == "__main__":
    main()
