"""`sparkle demo --quick`: the whole loop at toy size, and resuming a finished demo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sparkle_vlm.cli.main import main
from sparkle_vlm.demo import PLANS, _Clock


class _FakeStages:
    """Stages that take the seconds they are told to and remember what is done."""

    def __init__(self, seconds: dict[str, float], done: dict[str, dict]) -> None:
        self.seconds, self.markers = seconds, done

    def done(self, name: str) -> dict | None:
        return self.markers.get(name)

    def run(self, name: str, fn, key: dict) -> dict:
        if name not in self.markers:
            self.markers[name] = {"key": key, "seconds": self.seconds[name], **fn()}
        return self.markers[name]


def test_the_time_left_is_rescaled_by_the_stages_that_ran() -> None:
    lines: list[str] = []
    key = {"seed": 0}
    # stage "a" was done by an earlier run: it is skipped and says nothing about this host
    stages = _FakeStages({"b": 20.0, "c": 120.0}, {"a": {"key": key, "seconds": 999.0}})
    clock = _Clock(stages, key, {"a": 50.0, "b": 10.0, "c": 60.0, "d": 120.0}, lines.append)
    for name in "abc":
        clock.run(name, dict)
    # b alone (10 s estimated) is too short to rescale by: 60 + 120 s left as estimated
    # after c, b and c took 140 s for 70 estimated: d's 120 s become 4 min
    assert lines == ["[b] done in 20.0 s; about 3 min left", "[c] done in 120.0 s; about 4 min left"]


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
    # every stage the demo ran has an estimate, so the time left it prints covers the whole run
    assert {Path(n).stem for n in stamps} == set(PLANS["quick"].stage_seconds())
    assert "min left" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == stamps
    assert "done, skipped" in capsys.readouterr().err


def test_bad_demo_options_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--size", "huge", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --size") and "\n" not in err
    assert not (tmp_path / "d").exists()


def _demo_outputs(out: Path) -> dict[str, object]:
    """What a demo produced: every model's weights and every evaluation's answers and scores."""
    got: dict[str, object] = {}
    for m in sorted(out.glob("model-*/model.safetensors")):
        got[m.parent.name] = m.read_bytes()
    for r in sorted(out.glob("runs/*/results.jsonl")):
        rows = [json.loads(line) for line in r.read_text().splitlines()]
        got[r.parent.name] = [(x["id"], x["output"], x["outcome"], x["score"]) for x in rows]
    return got


@pytest.mark.torch
def test_the_second_process_changes_nothing_the_demo_produces(tmp_path: Path) -> None:
    from sparkle_vlm.demo import BESIDE_SFT, BESIDE_TRANSFER, run_demo

    lines: list[str] = []
    run_demo(tmp_path / "beside", plan=PLANS["quick"], overlap=True, log=lines.append)
    run_demo(tmp_path / "serial", plan=PLANS["quick"], overlap=False, log=lambda m: None)
    beside, serial = _demo_outputs(tmp_path / "beside"), _demo_outputs(tmp_path / "serial")
    assert len(serial) == 6 + 4  # six model folders (untrained .. the composite arms), four evaluations
    assert beside == serial
    # the stages named to run beside the main line did run in another process, and only they
    started = [m for m in lines if "in a second process" in m]
    assert len(started) == 2 and all(n in started[0] for n in BESIDE_SFT) and BESIDE_TRANSFER[0] in started[1]
    markers = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "beside" / "stages").glob("*.json")}
    elsewhere = {name for name, m in markers.items() if m.get("process") not in (None, os.getpid())}
    assert elsewhere == set(BESIDE_SFT + BESIDE_TRANSFER)
