"""The ``random`` and ``oracle`` baselines on real generated datasets of every task."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.answers import score
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.models import GenerationConfig, Request, load_backend
from sparkle_vlm.models.baselines import MOVES, random_answer
from sparkle_vlm.records import read_jsonl

DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "instruct": ("instruct", {"n": 3, "size": 112}),
    "basic": ("basic_mcq", {"n": 6, "size": 112}),
    "spp": ("spp", {"n": 8, "size": 112}),
    "spp-hard": (
        "spp",
        {"n": 8, "size": 112, "grid": 5, "obstacles": 0.2, "weighted": True, "prompt": "labels"},
    ),
    "tsp": ("tsp", {"n": 6, "size": 112}),
    "tsp-free": ("tsp", {"n": 6, "size": 112, "variant": "free", "modality": "text"}),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks.base import get_task

    out = {}
    for name, (task, overrides) in DATASETS.items():
        folder = tmp_path_factory.mktemp(name) / "data"
        generate_dataset(task, get_task(task).make_config(**overrides), 0, folder, workers=1, progress=False)
        out[name] = read_jsonl(str(folder / "data.jsonl"))
    return out


def _requests(records: list[dict[str, Any]]) -> list[Request]:
    return [
        Request(r["id"], [t for t in r["messages"] if t["role"] == "user"], list(r["images"]), r)
        for r in records
    ]


@pytest.mark.parametrize("name", list(DATASETS))
def test_oracle_scores_everything_correct(datasets: dict[str, list[dict[str, Any]]], name: str) -> None:
    records = datasets[name]
    comps = load_backend("oracle:").generate(_requests(records), GenerationConfig())
    assert len(comps) == len(records)
    for rec, comp in zip(records, comps, strict=True):
        assert comp.error is None
        assert comp.text == rec["answer"]
        assert score(rec, comp.text).correct, (rec["id"], comp.text)


@pytest.mark.parametrize("name", list(DATASETS))
def test_random_is_well_formed_and_reproducible(datasets: dict[str, list[dict[str, Any]]], name: str) -> None:
    records = datasets[name]
    backend = load_backend("random:")
    reqs = _requests(records)
    first = backend.generate(reqs, GenerationConfig(seed=3))
    # Same seed, reversed order and a fresh backend: identical answers per record.
    again = load_backend("random:").generate(reqs[::-1], GenerationConfig(seed=3))[::-1]
    assert [c.text for c in first] == [c.text for c in again]
    other = backend.generate(reqs, GenerationConfig(seed=4))
    assert [c.text for c in first] != [c.text for c in other]
    for rec, comp in zip(records, first, strict=True):
        assert comp.error is None, comp.error
        verdict = score(rec, comp.text)
        # Random answers are wrong often, but always readable by the scorers.
        assert verdict.outcome != "unparsable", (rec["answer_type"], comp.text, verdict)


def test_random_never_reads_the_answer(datasets: dict[str, list[dict[str, Any]]]) -> None:
    for records in datasets.values():
        for rec in records:
            blind = {k: v for k, v in rec.items() if k != "answer"}
            assert random_answer(blind, 0) == random_answer(rec, 0)


def test_random_mcq_letters_cover_the_options(datasets: dict[str, list[dict[str, Any]]]) -> None:
    letters: dict[int, set[str]] = {}
    for rec in datasets["basic"]:
        for seed in range(12):
            letters.setdefault(len(rec["choices"]), set()).add(random_answer(rec, seed))
    for n, seen in letters.items():
        allowed = {chr(ord("A") + i) for i in range(n)}
        assert seen <= allowed
        assert len(seen) >= 2


def _cells(rec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {n["label"]: (n["i"], n["j"]) for n in rec["scene"]["nodes"]}


@pytest.mark.parametrize("name", ["spp", "spp-hard"])
def test_random_walks_are_valid_and_optimal_length(
    datasets: dict[str, list[dict[str, Any]]], name: str
) -> None:
    for rec in datasets[name]:
        scene = rec["scene"]
        n, cells = scene["grid"], _cells(rec)
        blocked = {cells[b] for b in scene["blocked"]}
        hops = rec["meta"]["difficulty"]["optimal_hops"]
        for seed in range(5):
            text = random_answer(rec, seed)
            if rec["answer_type"] == "moves":
                moves = ast.literal_eval(text)
                pos = cells[scene["start"]]
                visited = [pos]
                for m in moves:
                    di, dj = MOVES[m]
                    pos = (pos[0] + di, pos[1] + dj)
                    visited.append(pos)
            else:
                labels = json.loads(text)
                assert labels[0] == scene["start"]
                visited = [cells[lb] for lb in labels]
                for a, b in zip(visited, visited[1:], strict=False):
                    assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
            assert len(visited) - 1 == hops
            assert all(0 <= i < n and 0 <= j < n and (i, j) not in blocked for i, j in visited)


@pytest.mark.parametrize("name", ["tsp", "tsp-free"])
def test_random_tours_are_permutations_from_the_start(
    datasets: dict[str, list[dict[str, Any]]], name: str
) -> None:
    starts = set()
    for rec in datasets[name]:
        labels = [n["label"] for n in rec["scene"]["nodes"]]
        for seed in range(5):
            tour = json.loads(random_answer(rec, seed))
            assert sorted(tour) == sorted(labels)
            if rec["query"]["start"] is not None:
                assert tour[0] == rec["query"]["start"]
            starts.add(tour[0])
    if name == "tsp-free":
        assert len(starts) > 1


def test_unknown_answer_type_fails_softly() -> None:
    req = Request("r1", [], [], {"id": "r1", "answer_type": "haiku", "choices": None, "answer": "x"})
    (comp,) = load_backend("random:").generate([req], GenerationConfig())
    assert comp.text == "" and comp.error and "haiku" in comp.error
    (comp,) = load_backend("oracle:").generate([Request("r2", [], [], {"id": "r2"})], GenerationConfig())
    assert comp.text == "" and comp.error and "no answer" in comp.error


def test_bad_spec_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="takes no model name"):
        load_backend("random:foo")
    with pytest.raises(ConfigError, match="seeed"):
        load_backend("oracle:", seeed=1)
    load_backend("random:", batch_size="8")  # the runner's option is accepted


def test_records_without_images_field_paths_are_not_read(tmp_path: Path) -> None:
    # Baselines never open images: a request whose image is missing still gets an answer.
    rec = {"id": "x", "answer_type": "region", "choices": None, "answer": "top", "scene": {"nodes": []}}
    req = Request("x", [], [str(tmp_path / "missing.png")], rec)
    (comp,) = load_backend("random:").generate([req], GenerationConfig())
    assert comp.error is None and comp.text
