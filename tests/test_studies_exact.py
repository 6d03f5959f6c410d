"""The exact studies at size "tiny": the contraction bound holds at every k, backups fix one state per sweep."""

import json

import numpy as np
import pytest

from jaxq.studies import bellman_backups, tabular_q, vi_contraction

# the studies of the `reproduced` folder (tests/conftest.py) these tests read
READS = ("vi_contraction", "bellman_backups")


@pytest.fixture(scope="module")
def outputs(reproduced):
    """Both exact studies as ``jaxq reproduce --size tiny`` wrote them: ``name -> (summary, arrays, folder)``."""
    returned = {s["study"]: s for s in json.loads((reproduced / "report.json").read_text())["studies"]}
    results = {}
    for module in (vi_contraction, bellman_backups):
        out = reproduced / module.NAME
        summary = json.loads((out / "summary.json").read_text())
        assert summary["verdict"] == returned[module.NAME]["verdict"]
        assert (out / summary["figure"]).stat().st_size > 20_000
        results[module.NAME] = (summary, dict(np.load(out / "curves.npz")), out)
    return results


def test_contraction_bound_holds_at_every_k_for_every_initial_table(outputs):
    summary, arrays, _ = outputs["vi_contraction"]
    assert summary["held"] and summary["verdict"].startswith("HELD: ")
    errors, gammas = arrays["errors"], arrays["gammas"]  # [G, n + 1, K + 1]
    assert errors.shape == (3, 33, vi_contraction.SWEEPS + 1)
    k = np.arange(errors.shape[-1])
    slack = 1e-6 * np.maximum(1.0, np.abs(arrays["initial_tables"]).max(axis=(-2, -1)))[..., None]
    assert np.all(errors <= gammas[:, None, None] ** k * errors[..., :1] + slack)
    for stats in summary["per_gamma"].values():
        assert stats["bound_held_every_k_every_q0"] and stats["violations"] == 0
        assert stats["worst_ratio"] <= 1 + 1e-4


def test_contraction_is_tight_from_zero_and_exact_after_the_trees_depth(outputs):
    summary, arrays, _ = outputs["vi_contraction"]
    errors, gammas = arrays["errors"], arrays["gammas"]
    # From Q_0 = 0 (row 0): e_0 = ||Q*||_inf = 1 and e_1 = gamma exactly (the bound is attained).
    np.testing.assert_allclose(errors[:, 0, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(errors[:, 0, 1], gammas, rtol=1e-5)
    # The tree has 4 levels of states: 4 backups make every Q_0 exact, whatever gamma; 3 do not.
    assert {s["exact_from_sweep"] for s in summary["per_gamma"].values()} == {4}
    assert np.all(errors[:, :, 4:] <= 1e-5) and np.all(errors[:, 1:, 3].max(1) > 1e-3)


def test_backups_on_chain5_make_exactly_the_last_k_states_exact(outputs):
    summary, arrays, _ = outputs["bellman_backups"]
    assert summary["held"] and summary["verdict"].startswith("HELD: ")
    depth, gamma = bellman_backups.DEPTH, bellman_backups.GAMMA
    v_star = gamma ** (depth - 1 - np.arange(depth))
    for variant in ("reset", "stay"):
        path = arrays[f"q_path_{variant}"]  # [sweeps + 1, D, 2]
        np.testing.assert_allclose(arrays[f"q_star_{variant}"].max(-1), v_star, rtol=1e-6)
        for k in range(path.shape[0]):
            last_k = np.arange(depth) >= depth - k
            np.testing.assert_allclose(path[k, last_k].max(-1), v_star[last_k], rtol=1e-6)
            assert np.all(path[k, ~last_k] == 0.0), (variant, k)
        checks = summary["checks"][variant]
        assert checks["exact_states_per_sweep"] == [0, 1, 2, 3, 4, 5, 5, 5]
        assert checks["whole_table_exact_at_sweep"] == depth + 1  # the other action waits for s_0


def test_sizes_are_checked(tmp_path):
    for module in (vi_contraction, bellman_backups):
        with pytest.raises(ValueError, match="size='huge' is not allowed"):
            module.run(tmp_path, size="huge")


def test_staircase_measure_counts_unchanged_steps():
    errors = np.array([[1.0, 1.0, 0.5, 0.5, 0.5, 0.2], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]])
    np.testing.assert_allclose(tabular_q.flat_fraction(errors), [0.6, 0.0])
    result = tabular_q.convergence(final=np.array([0.01, 0.02, 0.2]), midway=np.array([0.04, 0.04, 0.4]))
    assert result["fraction_below_tolerance"] == pytest.approx(2 / 3)
    assert result["second_half_reduction"] == pytest.approx(0.5)
    assert tabular_q.convergence_word(0.5) == "still decreasing"
    assert tabular_q.convergence_word(0.98) == "stalled at a noise floor"
