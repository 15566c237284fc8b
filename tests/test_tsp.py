"""The travelling-salesman task: scenes, exact answers, upstream prompts, variants, text twins."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from sparkle_vlm import solvers as S
from sparkle_vlm.answers.composite import score_tour
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import dumps, prompt_text
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.scene import sample_point_scene
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import composite_templates as T
from sparkle_vlm.tasks import get_task
from sparkle_vlm.tasks.tsp import min_distance_for

TASK = get_task("tsp")


def _records(n: int = 10, seed: int = 0, **over) -> list[dict]:
    cfg = TASK.make_config(n=n, **over)
    return [TASK.sample(cfg, seed, i).records[0] for i in range(n)]


@pytest.mark.parametrize(
    "field, value",
    [
        ("points", 3),
        ("points", 13),
        ("points", "5"),
        ("points", True),
        ("variant", "open"),
        ("modality", "audio"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TASK.make_config(**{field: value})


@pytest.mark.parametrize(
    "over", [{}, {"variant": "free", "points": 8}, {"variant": "closed", "modality": "text"}]
)
def test_deterministic_records_and_png(over: dict) -> None:
    cfg = TASK.make_config(n=3, size=224, **over)
    for i in range(3):
        a, b = TASK.sample(cfg, 1, i), TASK.sample(cfg, 1, i)
        assert dumps(a.records[0]) == dumps(b.records[0])
        if a.image:
            assert encode_png(TASK.render(a.scene, 224)) == encode_png(TASK.render(b.scene, 224))
    assert len({json.dumps(TASK.sample(cfg, 1, i).scene) for i in range(3)}) == 3


def test_five_point_scenes_are_basic_scenes() -> None:
    for i, rec in enumerate(_records(5, seed=3)):
        expected = sample_point_scene(sample_rng("tsp5", "test", 3, i), 5).to_dict()
        assert rec["scene"] == expected


@pytest.mark.parametrize("points", range(4, 13))
def test_min_distance_schedule(points: int) -> None:
    d_min = min_distance_for(points)
    assert (d_min == 3.0) if points <= 7 else (2.0 <= d_min < 3.0)
    for rec in _records(3, seed=0, points=points):
        nodes = rec["scene"]["nodes"]
        assert len(nodes) == points
        assert sorted(int(nd["label"][1:]) for nd in nodes) == list(range(1, points + 1))
        xy = np.array([(nd["x"], nd["y"]) for nd in nodes])
        d = S.distance_matrix(xy)
        assert d[~np.eye(points, dtype=bool)].min() >= d_min
        assert rec["meta"]["difficulty"]["min_distance"] == d_min


def _brute(d: np.ndarray, variant: str, start: int) -> float:
    k = d.shape[0]
    return min(
        S.tour_length(d, p, closed=variant == "closed")
        for p in itertools.permutations(range(k))
        if variant == "free" or p[0] == start
    )


@pytest.mark.parametrize("variant", S.TSP_VARIANTS)
def test_answers_are_optimal_by_brute_force(variant: str) -> None:
    for rec in _records(6, seed=4, points=6, variant=variant):
        nodes = rec["scene"]["nodes"]
        labels = [nd["label"] for nd in nodes]
        d = S.distance_matrix([(nd["x"], nd["y"]) for nd in nodes])
        order = [labels.index(lb) for lb in json.loads(rec["answer"])]
        assert sorted(order) == list(range(6))
        if variant != "free":
            assert rec["query"]["start"] == labels[0] and order[0] == 0
        else:
            assert rec["query"]["start"] is None
        length = S.tour_length(d, order, closed=variant == "closed")
        assert length == pytest.approx(_brute(d, variant, 0), rel=1e-12)
        assert rec["meta"]["difficulty"]["optimal_length"] == pytest.approx(length)
        assert rec["meta"]["difficulty"]["greedy_ratio"] >= 1.0 - 1e-12
        v = score_tour(rec, rec["answer"])
        assert v.outcome == "optimal" and v.score == 1.0 and v.details["exact_match"]


def test_upstream_prompts() -> None:
    rec = _records(1, seed=0)[0]
    labels = [nd["label"] for nd in rec["scene"]["nodes"]]
    start = labels[0]
    expected = T.TSP_QUESTION_TEMPLATES[1].format(
        num_objects=5, objects_string="\n".join(f"- {lb}" for lb in labels), start_color=start,
        objects=json.dumps(labels),
    )  # fmt: skip
    text = prompt_text(rec)
    assert text == expected
    assert f"   a. Starts at the {start} object\n" in text and f"- The list must start with {start}." in text
    assert text.endswith(f"Example output format: {json.dumps(labels)}")  # the scene's own order
    assert rec["meta"]["template"] == 1 and rec["answer_type"] == "tour"
    free = prompt_text(_records(1, seed=0, variant="free")[0])
    assert "2. Determine the shortest path that visits each object exactly once." in free
    assert "must start" not in free


def test_variants_and_twins_share_scenes() -> None:
    base = _records(6, seed=2, points=7)
    for over in ({"variant": "free"}, {"variant": "closed"}, {"modality": "text"}):
        other = _records(6, seed=2, points=7, **over)
        assert [r["scene"] for r in other] == [r["scene"] for r in base]
    tags = {
        TASK.tag(TASK.make_config(**o))
        for o in ({}, {"variant": "free"}, {"variant": "closed"}, {"modality": "text"}, {"points": 8})
    }
    assert tags == {"tsp5", "tsp5-free", "tsp5-closed", "tsp5-text", "tsp8"}


@pytest.mark.parametrize("variant", S.TSP_VARIANTS)
def test_text_twin(variant: str) -> None:
    img = _records(5, seed=6, points=6, variant=variant)
    txt = _records(5, seed=6, points=6, variant=variant, modality="text")
    for a, b in zip(img, txt, strict=True):
        assert a["answer"] == b["answer"] and a["query"] == b["query"] and b["images"] == []
        assert all(p["type"] == "text" for p in b["messages"][0]["content"])
        text = prompt_text(b)
        assert "image" not in text.split("Task:")[0]
        for nd in b["scene"]["nodes"]:
            assert f"- {nd['label']}: ({nd['x']:.2f}, {nd['y']:.2f})" in text
        # Everything after the opening is the image prompt's wording.
        assert text.split("\n\nTask:")[1] == prompt_text(a).split("\n\nTask:")[1]
        assert score_tour(b, b["answer"]).outcome == "optimal"


def test_rounding_safety_flag() -> None:
    recs = _records(40, seed=0, points=8, variant="free", modality="text")
    flags = [r["meta"]["difficulty"]["rounding_safe"] for r in recs]
    assert sum(flags) >= 38  # near-ties within rounding error are rare
    for rec in recs:
        nodes = rec["scene"]["nodes"]
        labels = [nd["label"] for nd in nodes]
        d_r = S.distance_matrix(np.round([(nd["x"], nd["y"]) for nd in nodes], 2))
        order = [labels.index(lb) for lb in json.loads(rec["answer"])]
        safe = S.tour_length(d_r, order) <= S.held_karp(d_r, "free").length * (1 + 1e-9)
        assert safe == rec["meta"]["difficulty"]["rounding_safe"]


def test_closed_answer_lists_each_label_once_from_the_start() -> None:
    for rec in _records(5, seed=1, variant="closed"):
        tour = json.loads(rec["answer"])
        assert len(tour) == len(set(tour)) == 5 and tour[0] == rec["query"]["start"]
        assert score_tour(rec, json.dumps(tour + tour[:1])).outcome == "optimal"
        assert score_tour(rec, json.dumps(tour[2:] + tour[:2])).outcome == "optimal"  # rotation
        assert math.isfinite(rec["meta"]["difficulty"]["optimal_length"])
