"""`curriculab dryrun`: the paper profile's tables on synthetic data, train + resume + report (issue 15 §4)."""

from __future__ import annotations

import pytest
from conftest import ROOT

PAPER = ROOT / "profiles" / "paper.yaml"


def test_dryrun_baseline_table(tmp_path, capsys, monkeypatch):
    """One paper table end to end: runs counted as expand_table does, parameters > 0, every stage reached,
    nothing written to the project's runs/ or reports/."""
    from curriculab.cli import main
    from curriculab.project import load_params
    from curriculab.tables.spec import expand_table, get_spec

    monkeypatch.chdir(ROOT)
    code = main(["dryrun", "--profile", "paper", "--tables", "baseline", "--keep", str(tmp_path / "dry")])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = len(expand_table(get_spec("baseline"), load_params(PAPER)))
    row = next(line for line in out.splitlines() if line.startswith("| baseline |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(runs) and cells[2] == "2"  # 2 datasets × 3 seeds: 2 configurations
    assert "resnet18" in cells[3] and "11.17M" in cells[3]
    assert cells[8] == "train+resume+report" and cells[9] == "ok"
    assert "a guess, not a measurement" in out
    assert (tmp_path / "dry" / "baseline" / "reports" / "tables" / "baseline.md").is_file()
    recs = list((tmp_path / "dry" / "baseline" / "runs" / "baseline").glob("*/metrics.json"))
    assert len(recs) == runs


def test_dryrun_failure_is_reported(tmp_path, capsys, monkeypatch):
    """A table that cannot run is listed with its stage and error, and the command exits non-zero."""
    import curriculab.dryrun as dr
    from curriculab.cli import main

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(dr, "_train_and_resume", broken)
    code = main(["dryrun", "--profile", "paper", "--tables", "baseline", "--keep", str(tmp_path / "dry")])
    captured = capsys.readouterr()
    assert code == 1
    assert "baseline: failed: train: RuntimeError: boom" in captured.out
    assert "dry run failed for 1 table(s): baseline" in captured.err


def test_dryrun_unknown_table_is_one_line(capsys, monkeypatch):
    from curriculab.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["dryrun", "--profile", "paper", "--tables", "nosuch"]) == 2
    assert "unknown table" in capsys.readouterr().err


@pytest.mark.slow
def test_dryrun_paper_profile(capsys, monkeypatch):
    """Every table of the paper profile (slow: minutes on 2 CPU cores)."""
    from curriculab.cli import main

    monkeypatch.chdir(ROOT)
    code = main(["dryrun", "--profile", "paper", "--time-budget", "1500"])
    out = capsys.readouterr().out
    assert code == 0, out
