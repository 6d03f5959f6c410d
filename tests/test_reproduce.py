"""`jaxq reproduce` at the tiny size produces every study's figure, summary and the report page."""

import json

import pytest

from jaxq import bench
from jaxq.cli import main
from jaxq.studies import STUDIES


@pytest.mark.slow
def test_reproduce_tiny_writes_every_figure_summary_and_the_report(reproduced):
    out = reproduced
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
    assert "study='chain_dept' is not allowed (did you mean 'chain_depth'?); choose one of" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bench.BENCHMARKS))
def test_benchmarks_run_in_their_quick_form(name, tmp_path):
    for peer in bench.PEERS[name]:
        pytest.importorskip(peer, reason=f"the peer of jaxq bench {name} (the bench extra)")
    path = tmp_path / f"{name}.json"
    assert main(["bench", name, "--quick", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["quick"] and report["rows"] and report["environment"]["jax_version"]
    for row in report["rows"]:
        rates = [value for key, value in row.items() if key.endswith("steps_per_s") and value != "not run"]
        assert rates and all(rate > 0 for rate in rates), row


def test_a_benchmark_without_its_peer_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(bench, "missing_peers", lambda name: ["torch"])
    assert main(["bench", "mlp", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "needs torch" in err and '.[bench]' in err
