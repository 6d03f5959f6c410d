"""Studies 4, 5, 7 and 8 at size "tiny": every output is written and the numbers mean what they say."""

import json

import numpy as np
import pytest

from jaxq.studies import chain_depth, discount_sweep, per_state_bias, td_gallery, verdicts
from jaxq.td import Bootstrap

# the studies of the `reproduced` folder (tests/conftest.py) these tests read
READS = ("chain_depth", "per_state_bias", "discount_sweep", "td_gallery")


def load(out):
    assert {p.name for p in out.iterdir()} == {"summary.json", "curves.npz", "figure.png"}
    summary = json.loads((out / "summary.json").read_text())
    for key in ("study", "title", "claim", "setup", "held", "verdict"):
        assert key in summary
    tag = {True: "HELD:", False: "NOT HELD:", None: "MIXED:"}[summary["held"]]
    assert summary["verdict"].startswith(tag)
    return summary, np.load(out / "curves.npz")


@pytest.fixture(scope="module")
def outputs(reproduced):
    """Studies 4, 5, 7 and 8 as ``jaxq reproduce --size tiny`` wrote them."""
    return {name: load(reproduced / name) for name in READS}


# -- helpers ------------------------------------------------------------------------------------------
def test_volatility_is_the_rms_around_the_trend_of_the_second_half():
    t = np.arange(40, dtype=float)
    line = 2.0 - 0.01 * t
    zigzag = line + 0.1 * (-1.0) ** t
    first_half_noise = np.where(t < 20, np.sin(t), 0.0) + line
    assert verdicts.volatility(line) == pytest.approx(0.0, abs=1e-12)
    assert verdicts.volatility(line, detrend=False) == pytest.approx(0.01 * np.arange(20).std())
    assert verdicts.volatility(zigzag) == pytest.approx(0.1, rel=1e-2)
    assert verdicts.volatility(first_half_noise) == pytest.approx(0.0, abs=1e-12)
    assert verdicts.volatility(np.stack([line, zigzag])).shape == (2,)


def test_trend_needs_the_ends_apart_and_no_significant_drop():
    assert verdicts.trend([(0, 1), (2, 3), (4, 5)]) is True
    assert verdicts.trend([(0, 1), (0.5, 1.5), (4, 5)]) is True  # overlapping steps are not drops
    assert verdicts.trend([(2, 3), (0, 1), (4, 5)]) is None  # up overall, significantly down once
    assert verdicts.trend([(0, 2), (3, 4), (1, 3)]) is False  # the ends overlap
    assert verdicts.all_of([True, True]) is True and verdicts.all_of([False, False]) is False
    assert verdicts.all_of([True, False]) is None
    assert verdicts.both([True, None]) is None and verdicts.both([True, False]) is False


def test_chain_q_star_scales_and_coverage():
    sup, mean_abs = chain_depth.q_star_scales(2, 0.9, "reset")
    assert sup == pytest.approx(1.0) and mean_abs == pytest.approx((0.81 + 0.9 + 0.81 + 1.0) / 4)
    cov = verdicts.coverage(np.array([0, 0, 3, 5]))
    assert cov == {"reached_fraction": 0.5, "episodes_median": 1.5, "episodes_mean": 2.0}


def test_bias_growth_statistic():
    rng = np.random.default_rng(0)
    rising = 0.05 * np.arange(1, 9) + 0.02 * rng.standard_normal((200, 8))
    growth = per_state_bias.growth(rising)
    assert growth["rho"] == pytest.approx(1.0) and growth["rho_ci95"][0] > 0.8
    assert per_state_bias.growth(-rising[:, ::-1])["rho_ci95"][1] < -0.8  # large near the terminal
    bias = np.arange(10.0)  # states 0..9 of a padded chain of depth 4
    np.testing.assert_array_equal(per_state_bias.by_distance(bias, 4), [3.0, 2.0, 1.0, 0.0])


def test_diverged_lanes_are_non_finite_or_beyond_every_return():
    final = np.array([0.5, np.nan, np.inf, 11.0, 9.0])
    np.testing.assert_array_equal(discount_sweep.diverged(final, 0.9), [False, True, True, True, False])


def test_mellowmax_is_a_soft_maximum():
    def y(q):
        q = np.asarray(q, np.float32)
        successor = Bootstrap(q_online=q, q_target=q, policy=np.full(2, 0.5, np.float32), action=np.int32(0))
        return float(td_gallery.mellowmax(np.float32(1.0), np.float32(0.5), successor))

    assert y([0.4, 0.4]) == pytest.approx(1.2)  # equal values: exactly the value
    assert 1.0 + 0.5 * 0.45 < y([0.3, 0.6]) < 1.0 + 0.5 * 0.6  # between the mean and the max
    assert td_gallery.source_lines(td_gallery.mellowmax) <= td_gallery.SMALL


# -- the studies at size tiny ----------------------------------------------------------------------------
@pytest.mark.slow
def test_chain_depth_outputs(outputs):
    summary, curves = outputs["chain_depth"]
    seeds = summary["setup"]["seeds"]
    assert curves["error"].shape == (2, 3, seeds, len(curves["t"]))
    rows = {(r["variant"], r["depth"]): r for r in summary["results"]}
    assert len(rows) == 6
    for r in rows.values():
        assert r["final_error_rel_sup"]["mean"] == pytest.approx(r["final_error"]["mean"])  # ||Q*||_inf = 1
        assert r["final_error_rel_mean"]["mean"] == pytest.approx(r["final_error"]["mean"] / r["q_star_mean_abs"])
        assert r["volatility"]["mean"] >= 0 and r["volatility_raw"]["mean"] >= r["volatility"]["mean"] - 1e-9
    # Coverage pitfall: on "stay" every seed finds the reward; on "reset" the deep chain is rarely solved.
    assert all(rows["stay", d]["coverage"]["reached_fraction"] == 1.0 for d in (2, 8, 32))
    assert rows["reset", 2]["coverage"]["reached_fraction"] == 1.0
    assert rows["reset", 32]["coverage"]["reached_fraction"] < 0.5
    assert set(summary["judgement"]) == {"reset", "stay"}


@pytest.mark.slow
def test_per_state_bias_outputs(outputs):
    summary, curves = outputs["per_state_bias"]
    assert curves["bias"].shape == (2, 3, summary["setup"]["seeds"], 33)
    judged = [r for r in summary["results"] if r["growth"] is not None]
    assert {(r["variant"], r["depth"]) for r in judged} == {(v, d) for v in ("reset", "stay") for d in (8, 32)}
    for r in summary["results"]:
        assert len(r["bias_mean"]) == r["depth"]
        assert r["bias_mean"][0] == pytest.approx(r["nearest"]["mean"])  # distance 1 = the last state


def test_discount_sweep_outputs(outputs):
    summary, curves = outputs["discount_sweep"]
    assert curves["error"].shape[:3] == (2, len(discount_sweep.GAMMAS), summary["setup"]["seeds"])
    rows = summary["results"]
    assert len(rows) == 2 * len(discount_sweep.GAMMAS)
    for r in rows:
        assert 0.0 <= r["diverged_fraction"] <= 1.0 and r["q_star_sup"] == pytest.approx(1.0, rel=1e-5)
    scales = [r["q_star_mean_abs"] for r in rows if r["variant"] == "stay"]
    assert scales == sorted(scales)  # mean |Q*| grows with gamma: absolute and relative errors can disagree
    assert "rests on stay" in summary["verdict"]  # every stay seed finds the reward, even at size tiny
    # The capacity check: regression brings the same 257-parameter network close to Q* at every gamma.
    fit = curves["supervised_fit_error"]
    assert fit.shape == (2, len(discount_sweep.GAMMAS)) and fit.max() < 0.05
    assert fit.max() == pytest.approx(max(r["supervised_fit_error"] for r in rows))


def test_td_gallery_outputs(outputs):
    summary, curves = outputs["td_gallery"]
    assert summary["held"] is True
    assert curves["error"].shape[:4] == (len(td_gallery.GALLERY), 2, 3, len(td_gallery.GAMMAS))
    rows = {(r["td"], r["variant"], r["depth"], r["gamma"]): r for r in summary["results"]}
    assert len(rows) == len(td_gallery.GALLERY) * 2 * 3 * len(td_gallery.GAMMAS)
    assert rows["Q-learning", "stay", 2, 0.9]["final_error"]["mean"] < 1e-3  # tabular Q-learning solves chain-2
    assert all(r["final_error"]["mean"] == pytest.approx(1.0, abs=1e-6)  # never saw the reward: Q stays 0
               for (_, variant, depth, _), r in rows.items() if variant == "reset" and depth == 32
               and r["coverage"]["reached_fraction"] == 0.0)
