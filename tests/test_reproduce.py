"""`jaxq reproduce` at the tiny size produces every study's figure, summary and the report page."""

import json

import pytest

from jaxq.cli import main
from jaxq.studies import STUDIES


def test_reproduce_tiny_writes_every_figure_summary_and_the_report(tmp_path):
    out = tmp_path / "reproduce"
    assert main(["reproduce", "--size", "tiny", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in STUDIES:
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["verdict"].split(":")[0] in ("HELD", "NOT HELD", "MIXED"), name
        assert summary["claim"] and summary["setup"], name
        assert (out / name / summary["figure"]).stat().st_size > 5_000, name
        assert (out / name / "curves.npz").exists(), name
        assert summary["verdict"] in report
    assert len(json.loads((out / "report.json").read_text())["studies"]) == len(STUDIES)


def test_unknown_study_is_a_clear_error(capsys):
    assert main(["reproduce", "--only", "chain_dept"]) == 2
    assert "study='chain_dept' is not allowed; choose one of" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["tabular"])
def test_benchmarks_run_in_their_quick_form(name, tmp_path, capsys):
    path = tmp_path / f"{name}.json"
    assert main(["bench", name, "--quick", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["quick"] and report["rows"] and report["environment"]["jax_version"]
    assert all(row["env_steps_per_s"] > 0 for row in report["rows"])
