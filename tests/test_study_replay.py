"""Study 10's statistics on hand-made arrays (censored steps to threshold, the second-half variance,
paired bootstrap ratios of medians, how a claimed ratio is judged) and the study at size tiny."""

import json
import shutil

import numpy as np
import pytest

from jaxq.studies.replay import (CLAIMS, METHODS, censored_steps, judge, median_ci, paired_ratio, resized, run,
                                 second_half_variance, size_of)

# the studies of the `reproduced` folder (tests/conftest.py) these tests read
READS = ("replay",)

NAN = np.nan


def test_steps_to_threshold_is_the_first_evaluation_at_or_above_it_and_unreached_seeds_count_as_the_budget():
    t = np.array([1000, 2000, 3000, 4000])
    evaluation = np.array([
        [NAN, 150.0, NAN, 210.0],   # evaluated at 2000 and 4000: reaches at 4000
        [200.0, NAN, 100.0, NAN],   # reaches at the first evaluation (>= counts), then falls back
        [NAN, 199.9, NAN, 150.0],   # never
    ])
    steps, reached = censored_steps(t, evaluation, 200.0, budget=4000)
    np.testing.assert_array_equal(steps, [4000, 1000, 4000])
    np.testing.assert_array_equal(reached, [True, True, False])
    # a censored seed sits at the budget: the median of 3 reached + 2 censored is exact
    steps, _ = censored_steps(t, np.array([[250.0, NAN, NAN, NAN]] * 3 + [[0.0] * 4] * 2), 200.0, 5000)
    assert np.median(steps) == 1000


def test_second_half_variance_is_the_sample_variance_of_the_late_intervals_per_seed():
    steps, log_every = 1000, 100
    t = np.arange(100, 1001, 100)  # intervals (t - 100, t]; the second half: t - 100 >= 500, i.e. t >= 600
    curves = np.zeros((3, 10))
    curves[0, 5:] = [1.0, 2.0, 3.0, 4.0, 5.0]  # variance 2.5 (ddof 1)
    curves[0, :5] = 1e6  # the first half does not count
    curves[1, 5:] = [7.0, NAN, 7.0, NAN, 9.0]  # intervals without an ended episode are skipped: var of 7, 7, 9
    curves[2, 5:] = [3.0, NAN, NAN, NAN, NAN]  # one value: undefined
    v = second_half_variance(t, curves, steps, log_every)
    np.testing.assert_allclose(v[:2], [2.5, np.var([7.0, 7.0, 9.0], ddof=1)])
    assert np.isnan(v[2])


def test_median_ci_brackets_the_median_and_collapses_for_constant_values():
    x = np.random.default_rng(0).normal(10.0, 1.0, 200)
    summary = median_ci(x)
    assert summary["ci95"][0] < np.median(x) < summary["ci95"][1] and summary["ci95"][1] - summary["ci95"][0] < 0.6
    assert median_ci(np.full(8, 3.0))["ci95"] == [3.0, 3.0]
    assert median_ci(np.array([1.0, NAN, NAN]))["n"] == 1


def test_paired_ratio_of_medians_resamples_the_same_seeds_for_both_methods():
    rng = np.random.default_rng(1)
    difficulty = rng.lognormal(11.0, 0.8, 40)  # seeds differ a lot...
    a = 0.5 * difficulty * rng.uniform(0.97, 1.03, 40)  # ...but A needs half of B's steps on every seed
    b = difficulty
    r = paired_ratio(a, b)
    assert r["ratio"] == pytest.approx(np.median(a) / np.median(b)) and r["pairs"] == 40
    low, high = r["ci95"]
    assert 0.4 < low < r["ratio"] < high < 0.6  # tight: the seed-to-seed spread cancels in pairs
    # the same numbers resampled independently give a much wider interval, so pairing is what the CI uses
    idx = rng.integers(0, 40, (2000, 2, 40))
    unpaired = np.median(a[idx[:, 0]], 1) / np.median(b[idx[:, 1]], 1)
    assert np.percentile(unpaired, 97.5) - np.percentile(unpaired, 2.5) > 3 * (high - low)
    # a pair with a non-finite member is dropped; mismatched shapes are an error
    assert paired_ratio(np.r_[a, NAN], np.r_[b, 1.0])["pairs"] == 40
    with pytest.raises(ValueError, match="same seeds"):
        paired_ratio(a, b[:-1])


@pytest.mark.parametrize("ci,held", [
    ((0.10, 0.50), True),    # significantly faster, and 4x is within the CI
    ((0.05, 0.20), True),    # faster than claimed
    ((0.30, 0.90), False),   # faster, but 4x is ruled out
    ((0.80, 1.30), False),   # no speed-up at all
    ((0.20, 1.10), None),    # 4x is possible, and so is no difference
])
def test_a_claimed_ratio_is_judged_by_the_ci(ci, held):
    assert judge({"ratio": float(np.mean(ci)), "ci95": list(ci)}, 0.25) is held


@pytest.mark.parametrize("ci,censored,held", [
    ((0.30, 0.90), (False, True), None),   # the denominator's median is a lower bound: 4x is not ruled out
    ((0.10, 0.50), (False, True), True),   # an upper bound already below the claim: held
    ((1.50, 3.00), (True, False), False),  # the numerator's median is a lower bound: a lower bound > claim
    ((0.10, 0.50), (True, False), None),   # a lower bound of the ratio cannot show it is small
    ((1.00, 1.00), (True, True), None),    # both censored (nobody reached the threshold): no verdict
])
def test_a_ratio_of_censored_medians_is_judged_only_on_the_side_it_bounds(ci, censored, held):
    assert judge({"ratio": float(np.mean(ci)), "ci95": list(ci)}, 0.25, censored) is held


# -- the study at size tiny ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(reproduced):
    """The study as ``jaxq reproduce --size tiny`` wrote it: its folder and ``summary.json``."""
    out = reproduced / "replay"
    return out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_tiny_study_writes_every_method_the_table_the_figure_and_a_verdict_per_claim(tiny):
    out, summary = tiny
    assert (out / summary["figure"]).stat().st_size > 5_000
    rows = summary["results"]["CartPole-v1"]["methods"]
    assert [r["method"] for r in rows] == list(METHODS)
    assert summary["setup"]["CartPole-v1"]["below_issue_budget"]
    table = (out / "table.md").read_text()
    assert table.count("| CartPole-v1 (2 x 1,000) |") == len(METHODS)
    for name, *_ in CLAIMS:
        assert summary["verdicts"][name].split(":")[0] in ("HELD", "NOT HELD", "MIXED")
        assert summary["verdicts"][name] in table


def test_tiny_study_censors_unreached_seeds_and_pairs_seeds_across_methods(tiny):
    out, summary = tiny
    curves = np.load(out / "curves.npz")
    for row in summary["results"]["CartPole-v1"]["methods"]:
        reached = np.nanmax(curves[f"cartpole_{row['method']}_eval_return"], axis=1) >= 475.0
        np.testing.assert_array_equal(row["steps_to_threshold"]["reached"], reached)
        assert all(s == 1_000 for s, r in zip(row["steps_to_threshold"]["per_seed"], reached) if not r)
    if not any(r["steps_to_threshold"]["reached_fraction"] for r in summary["results"]["CartPole-v1"]["methods"]):
        # nobody reached the threshold in 1000 steps: a ratio of two censored medians is no evidence
        assert summary["verdicts"]["annealed 4x faster than PER"].startswith("MIXED")
    # seed s starts from the same key under every method: the same episodes until the first update
    first = [curves[f"cartpole_{m}_train_return"][:, 1] for m in METHODS]
    assert all(np.array_equal(f, first[0]) for f in first) and np.isfinite(first[0]).all()


def test_size_overrides_are_checked_before_anything_runs():
    sizes = resized(size_of("full"), ["LunarLander-v3"], seeds=4, steps=20_000, eval_every=10_000, final_episodes=None)
    lunar, full = sizes["LunarLander-v3"], size_of("full")["LunarLander-v3"]
    assert list(sizes) == ["LunarLander-v3"] and (lunar.seeds, lunar.steps) == (4, 20_000)
    assert lunar.options == {**full.options, "eval_every": 10_000} and lunar.final_episodes == full.final_episodes
    with pytest.raises(ValueError, match="override='widths'"):
        resized(size_of("full"), widths=2)
    with pytest.raises(ValueError, match="env='Lunar'"):
        resized(size_of("full"), ["Lunar"])
    with pytest.raises(ValueError, match="seeds=0"):
        resized(size_of("tiny"), seeds=0)


def test_a_rerun_with_reuse_reads_the_finished_methods_back_and_gives_the_same_numbers(tiny, tmp_path):
    out, summary = tiny
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    run(tmp_path, "tiny", reuse=True)
    again = json.loads((tmp_path / "summary.json").read_text())
    rows = again["results"]["CartPole-v1"]["methods"]
    assert all(r["timing"] == {"reused": str(tmp_path / f"cartpole_{r['method']}.npz")} for r in rows)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "timing"} for r in rows]  # noqa: E731
    assert strip(rows) == strip(summary["results"]["CartPole-v1"]["methods"])
    assert again["verdicts"] == summary["verdicts"]


def test_a_subset_of_methods_judges_only_the_claims_it_can(tiny, tmp_path):
    out, summary = tiny
    for name in ("uniform", "reaper", "per"):  # a run stopped part-way: these finished
        (tmp_path / f"cartpole_{name}.npz").write_bytes((out / f"cartpole_{name}.npz").read_bytes())
    part = run(tmp_path, "tiny", methods=["uniform", "reaper", "per"], reuse=True)
    assert [r["method"] for r in part["results"]["CartPole-v1"]["methods"]] == ["uniform", "per", "reaper"]
    assert part["verdicts"]["ReaPER -21% steps vs PER"] == summary["verdicts"]["ReaPER -21% steps vs PER"]
    assert part["verdicts"]["annealed 4x faster than PER"].startswith("NOT RUN: seed article")
    with pytest.raises(ValueError, match="method='rank'"):
        run(tmp_path, "tiny", methods=["rank"])
