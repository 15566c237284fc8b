"""Rationale answers: the cells of the named objects, computed from the scene record."""

from __future__ import annotations

import json
from pathlib import Path

from sparkle_vlm import geometry
from sparkle_vlm.answers.basic import score_mcq
from sparkle_vlm.generate import generate_dataset
from sparkle_vlm.tasks import get_task
from sparkle_vlm.train.rationale import cell_digits, named_labels, rationale, with_rationale


def _records(tmp_path: Path, task_name: str, **overrides: object) -> list[dict]:
    task = get_task(task_name)
    config = task.make_config(n=6, **overrides)
    generate_dataset(task, config, 3, tmp_path / task_name, progress=False)
    lines = (tmp_path / task_name / "data.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_basic_mcq_answers_keep_their_letter_and_still_score(tmp_path: Path) -> None:
    for rec in _records(tmp_path, "basic_mcq", split="train"):
        new = with_rationale(rec)
        text = new["messages"][-1]["content"][0]["text"]
        assert text.endswith(f". \\boxed{{{rec['answer']}}}") and new["answer"] == rec["answer"]
        assert score_mcq(rec, text).score == 1.0  # the eval parser reads the boxed letter
        nodes = {n["label"]: n for n in rec["scene"]["nodes"]}
        for lab in named_labels(rec["query"]):
            assert f" {lab} {cell_digits(nodes[lab]['x'], nodes[lab]['y'])}" in text
        assert rec["messages"][-1]["content"][0]["text"] == rec["answer"]  # the input is not modified


def test_floor_cells_decide_every_localization_answer(tmp_path: Path) -> None:
    for rec in _records(tmp_path, "basic_mcq", split="train"):
        if rec["task"] != "localization":
            continue
        digits = rationale(rec).split()[-1]
        # a cell's corner lies in the same region as every point of the cell (cuts at 4 and 6)
        region = geometry.region(int(digits[0]), int(digits[1]))
        assert rec["choices"][ord(rec["answer"]) - ord("A")] == region


def test_instruct_answers_follow_the_rationale_and_descriptions_are_left_alone(tmp_path: Path) -> None:
    records = _records(tmp_path, "instruct")
    changed = 0
    for rec in records:
        new = with_rationale(rec)
        if rec["task"] == "description":
            assert new is rec
            continue
        text = new["messages"][-1]["content"][0]["text"]
        assert text.endswith(". " + rec["answer"]) and text.startswith(" N")
        changed += 1
    assert changed > 0


def test_untrusted_records_never_raise() -> None:
    for rec in (
        {},
        {"query": "x"},
        {"query": {"object": "N1"}, "scene": {"nodes": "bad"}},
        {"query": {"pairs": 3}},
    ):
        assert rationale(rec) is None and with_rationale(rec) is rec
