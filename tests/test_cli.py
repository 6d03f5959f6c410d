"""The `jaxq` command end to end: help, a small sweep's outputs, clear errors."""

import json

import numpy as np
import pytest

from jaxq.cli import default_log_every, main


def test_help_is_useful(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "sweep" in out and "bench" in out
    with pytest.raises(SystemExit):
        main(["sweep", "chain", "--help"])
    out = capsys.readouterr().out
    for option in ("--gamma", "--alpha", "--epsilon", "--depth", "--variant", "--seeds", "--steps", "--resume",
                   "--checkpoint-dir", "--coordinator", "--num-processes", "--process-id"):
        assert option in out
    assert "discount factor, in [0, 1)" in out


def test_sweep_writes_summary_curves_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "chain", "--learner", "q", "--depth", "2", "4", "--gamma", "0.9", "0.99",
            "--seeds", "8", "--steps", "400", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["axes"] == ["depth", "gamma", "seed", "t"]
    assert summary["coords"] == {"depth": [2, 4], "gamma": [0.9, 0.99]}
    assert len(summary["grid"]) == 4
    for row in summary["grid"]:
        err = row["final_error"]
        assert err["n"] == 8 and err["ci95_low"] <= err["mean"] <= err["ci95_high"]
        assert {"std", "median", "iqm", "diverged_fraction"} <= set(err)
    for key in ("wall_s", "compile_s", "run_s", "env_steps_per_s"):
        assert summary["timing"][key] > 0
    curves = np.load(out / "curves.npz")
    assert curves["error"].shape == (2, 2, 8, len(summary["log_steps"]))
    assert (out / "sweep.png").stat().st_size > 10_000
    assert "final error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "maze"], "env='maze' is not a known environment"),
        (["sweep", "chain", "--learner", "dnq"], "learner='dnq' is not allowed (did you mean 'dqn'?)"),
        (["sweep", "chain", "--gamma", "1.0"], "gamma=1.0 is not allowed; gamma must be a number in [0, 1)"),
        (["sweep", "chain", "--seeds", "-1"], "seeds=-1 is not allowed"),
        (["sweep", "chain", "--steps", "-5"], "steps=-5 is not allowed"),
        (["sweep", "chain", "--depth", "0", "4"], "depth=0 is not allowed"),
        (["sweep", "gridworld", "--env-option", "layout=S.#"], "layout has no goal"),
        (["bench", "nothing"], "benchmark='nothing' is not allowed"),
        (["sweep", "chain", "--max-lanes", "0"], "max_lanes=0 is not allowed"),
        (["sweep", "chain", "--checkpoint-every", "0"], "checkpoint_every=0 is not allowed"),
        (["sweep", "chain", "--num-processes", "2"], "coordinator, process_id missing"),
        (["sweep", "chain", "--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
         "coordinator='localhost' is not allowed"),
        (["sweep", "chain", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
         "process_id=2 is not allowed; it must be in [0, 1]"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_default_log_every_divides_steps():
    for steps in (1, 100, 10_000, 12_345, 60_000):
        k = default_log_every(steps)
        assert steps % k == 0 and 1 <= steps // k <= max(steps, 100)


def test_checkpoint_folders_that_cannot_be_used_are_clear_errors(tmp_path, capsys):
    base = ["sweep", "chain", "--steps", "100", "--seeds", "2"]
    assert main([*base, "--resume", "--out", str(tmp_path / "new")]) == 2
    assert "--resume: there is no checkpoint folder" in capsys.readouterr().err
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    assert main([*base, "--checkpoint-dir", str(tmp_path / "photos"), "--out", str(tmp_path / "run")]) == 2
    assert "holds something else" in capsys.readouterr().err
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_any_checkpoint_interval_and_a_resume_of_a_finished_run(tmp_path, capsys):
    """500 steps between saves with a log point every 40 steps: saves every 480 steps."""
    out = tmp_path / "run"
    argv = ["sweep", "chain", "--steps", "4000", "--seeds", "2", "--checkpoint-every", "500", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timing"]["saves"] == 9  # 100 log points in segments of 12: 8 of 12 and one of 4
    first = np.load(out / "curves.npz")["error"]
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "nothing left to run" in capsys.readouterr().out  # not "in 0.00 s (nan M/s)"
    np.testing.assert_array_equal(np.load(out / "curves.npz")["error"], first)
    assert json.loads((out / "summary.json").read_text())["timing"]["resumed_step"] == 8
