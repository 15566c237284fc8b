"""`sparkle demo --quick`: the whole loop at toy size, and resuming a finished demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkle_vlm.cli.main import main


@pytest.mark.torch
def test_quick_demo_runs_end_to_end_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    page = (out / "DEMO.md").read_text()
    for title in ("Direction", "Distance", "Localization", "SPP 4x4", "SPP 5x5", "TSP", "Transfer"):
        assert title in page
    for f in (
        "report/report.html",
        "report/report.md",
        "report-transfer/report.html",
        "model-sparkle/config.json",
        "model-practice/config.json",  # the practice part of SFT, then Sparkle-Instruct from it
    ):
        assert (out / f).is_file(), f
    practice = json.loads((out / "stages" / "train-practice.json").read_text())
    assert practice["global_step"] == 2 and "2 steps on the practice MCQ alone" in page
    # Both models were really evaluated on the same samples.
    a = json.loads((out / "runs" / "untrained" / "summary.json").read_text())
    b = json.loads((out / "runs" / "sparkle" / "summary.json").read_text())
    assert a["overall"]["n"] == b["overall"]["n"] == 4 * 6
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == stamps
    assert "done, skipped" in capsys.readouterr().err


def test_bad_demo_options_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--size", "huge", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --size") and "\n" not in err
    assert not (tmp_path / "d").exists()
