"""``sparkle reproduce``: composite-baseline data without test leaks, and the toy run end to end.

Run: .venv/bin/python -m pytest tests/test_reproduce.py -m "slow or not slow"
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkle_vlm.records import read_jsonl, response_text
from sparkle_vlm.train import reproduce as R


def test_composite_training_data_has_answers_and_no_test_instance(tmp_path: Path):
    manifest = R.build_composite(
        tmp_path / "composite", 12, seed=0, eval_seed=0, workers=1, log=lambda m: None
    )
    check = manifest["leakage_check"]
    assert (
        check["test_records"] == 600 and check["matched_and_dropped"] == 0
    )  # 200 SPP 4x4 + 200 5x5 + 200 TSP
    records = read_jsonl(str(tmp_path / "composite" / "data.jsonl"))
    assert len(records) == 12 == manifest["counts"]["records"]
    assert [r["task"] for r in records].count("tsp") == 6  # half TSP, half SPP
    test_sigs, test_ids, _ = R.held_out_instances(0)
    for rec in records:
        assert rec["split"] == "train" and response_text(rec) == rec["answer"]
        assert R.scene_signature(rec) not in test_sigs and rec["id"] not in test_ids
        assert (tmp_path / "composite" / rec["images"][0]).is_file()
    spp = [r for r in records if r["task"] == "spp"]
    assert {r["scene"]["grid"] for r in spp} == {4, 5} and all(r["scene"]["blocked"] for r in spp)


def test_leak_check_drops_test_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Obstacle-free 4x4 instances from the test seed are the test instances themselves: all must go.
    monkeypatch.setattr(R, "COMPOSITE_PARTS", (("spp4", "spp", {"grid": 4}, 1.0),))
    seed = 7
    manifest = R.build_composite(
        tmp_path / "c", 10, seed=seed, eval_seed=seed + R.COMPOSITE_SEED_OFFSET, workers=1, log=lambda m: None
    )
    assert manifest["leakage_check"]["matched_and_dropped"] == 10 and manifest["counts"]["records"] == 0
    # A different seed range still collides on a 4x4 grid (only 96 start/end pairs), which is why the
    # baseline trains with obstacles: most of these instances are dropped too.
    manifest = R.build_composite(tmp_path / "d", 40, seed=0, eval_seed=0, workers=1, log=lambda m: None)
    assert manifest["leakage_check"]["matched_and_dropped"] > 20


def test_split_counts_and_signature():
    assert R._split_counts(34_000, [0.25, 0.25, 0.5]) == [8500, 8500, 17000]
    assert sum(R._split_counts(7, [0.25, 0.25, 0.5])) == 7
    a = {"task": "tsp", "scene": {"nodes": [{"label": "N1", "x": 1.0, "y": 2.0}]}, "query": {"start": "N1"}}
    b = {"task": "tsp", "scene": {"nodes": [{"label": "N1", "x": 1.0, "y": 2.5}]}, "query": {"start": "N1"}}
    assert R.scene_signature(a) != R.scene_signature(b)


def test_bad_size_is_refused(tmp_path: Path):
    from sparkle_vlm.errors import SparkleError

    with pytest.raises(SparkleError, match="--size"):
        R.reproduce(R.ReproduceConfig(model="m", out=tmp_path, size="huge"))


@pytest.mark.torch
def test_toy_reproduction_end_to_end(
    tiny_qwen2vl_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    from sparkle_vlm.cli.main import main

    out = tmp_path / "repro"
    args = [
        "reproduce",
        "--model",
        str(tiny_qwen2vl_dir),
        "--out",
        str(out),
        "--size",
        "toy",
        "--workers",
        "1",
    ]
    assert main([*args, "--composite-baseline"]) == 0
    assert "table in" in capsys.readouterr().out
    for stage in (
        "data-instruct",
        "data-composite",
        "processor",
        "eval-baseline",
        "sft-instruct",
        "eval-instruct",
        "sft-composite",
        "eval-composite",
        "report",
    ):
        assert (out / "stages" / f"{stage}.json").is_file(), stage
    table = (out / "REPRODUCE.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].split(" | ")[1:3] == ["Direction", "Distance"] and "TSP" in rows[0]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        f"| {tiny_qwen2vl_dir.name} (base)",
        "| + Sparkle-Instruct",
        "| + SPP/TSP (reviewers' baseline)",
    ]
    assert "0 training records matched" in table
    for report in ("report", "report-composite", "report-all"):
        assert (out / report / "report.md").is_file()
    sig = json.loads((out / "report" / "report.json").read_text())["significance"]
    assert sig and all("mcnemar_p" in s for s in sig)
    # the fine-tuned model was evaluated with its adapter and the training processor
    run = json.loads((out / "eval" / "instruct" / "run.json").read_text())
    assert run["config"]["model_options"]["adapter"] == str(out / "train" / "instruct")
    assert run["config"]["model_options"]["processor"] == str(out / "processor")

    # re-running skips every finished stage: no training or evaluation happens again
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(R, "_sft", boom)
    monkeypatch.setattr(R, "_eval", boom)
    assert main([*args, "--composite-baseline"]) == 0
    assert "[sft-instruct] done, skipped" in capsys.readouterr().err
    # other settings in the same folder are refused
    assert main([*args, "--seed", "3"]) == 2
    assert "other settings (seed)" in capsys.readouterr().err


@pytest.mark.torch
@pytest.mark.slow
def test_toy_reproduction_with_ablations(tiny_qwen2vl_dir: Path, tmp_path: Path):
    from sparkle_vlm.cli.main import main

    out = tmp_path / "repro"
    assert (
        main(
            [
                "reproduce",
                "--model",
                str(tiny_qwen2vl_dir),
                "--out",
                str(out),
                "--size",
                "toy",
                "--workers",
                "1",
                "--ablations",
            ]
        )
        == 0
    )
    labels = [
        line.split(" | ")[0]
        for line in (out / "REPRODUCE.md").read_text().splitlines()[5:]
        if line.startswith("| ")
    ]
    assert labels == [
        f"| {tiny_qwen2vl_dir.name} (base)",
        "| + Sparkle-Instruct",
        "| + direction only",
        "| + distance only",
        "| + localization only",
        "| + w/o numbers",
    ]
    # the ablation sets share the Sparkle-Instruct images and ask fewer kinds of question
    full = read_jsonl(str(out / "data" / "instruct" / "data.jsonl"))
    direction = read_jsonl(str(out / "data" / "instruct-direction" / "data.jsonl"))
    assert {r["task"] for r in direction} == {"direction", "description"} and len(direction) < len(full)
    for name in R.ABLATIONS:
        assert (out / f"report-{name}" / "report.md").is_file()
