"""The basic-capability MCQ test set (protocol 4 and 6.7) and its text twin."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from sparkle_vlm import geometry as geo
from sparkle_vlm.answers import basic  # noqa: F401  (registers the basic scorers)
from sparkle_vlm.answers.verify import SCORERS
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import dumps, prompt_text
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.scene import Scene
from sparkle_vlm.tasks import get_task
from sparkle_vlm.tasks import templates as T
from sparkle_vlm.tasks.base import Sample

N = 40
SEED = 3


@pytest.fixture(scope="module")
def task():
    return get_task("basic_mcq")


@pytest.fixture(scope="module")
def image_samples(task) -> list[Sample]:
    cfg = task.make_config(n=N)
    return [task.sample(cfg, SEED, i) for i in range(N)]


@pytest.fixture(scope="module")
def text_samples(task) -> list[Sample]:
    cfg = task.make_config(n=N, modality="text")
    return [task.sample(cfg, SEED, i) for i in range(N)]


def _letter_index(letter: str) -> int:
    return ord(letter) - ord("A")


def _expected_letter(rec: dict[str, Any], ways: int = 8) -> str:
    """The answer recomputed from the scene record alone."""
    scene = Scene.from_dict(rec["scene"])
    q = rec["query"]
    if rec["task"] == "direction":
        a, b = scene.node(q["from"]), scene.node(q["to"])
        options = geo.DIRECTIONS_8 if ways == 8 else geo.DIRECTIONS_4
        return T.letter(options.index(geo.direction(a.x, a.y, b.x, b.y, ways)))
    if rec["task"] == "localization":
        n = scene.node(q["object"])
        return T.letter(geo.REGIONS.index(geo.region(n.x, n.y)))
    assert rec["task"] == "distance"

    def dist(pair: list[str]) -> float:
        a, b = scene.node(pair[0]), scene.node(pair[1])
        return geo.distance(a.x, a.y, b.x, b.y)

    pick = min if q["ask"] in ("shortest", "shorter") else max
    best = pick(q["pairs"], key=dist)
    return T.letter(rec["choices"].index(f"{best[0]} to {best[1]}"))


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "over, field",
    [({"ways": 6}, "ways"), ({"modality": "audio"}, "modality"), ({"n": -1}, "n"), ({"size": 10}, "size")],
)
def test_bad_config_names_the_field(task, over: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        task.make_config(**over)


def test_defaults_follow_the_paper(task) -> None:
    cfg = task.make_config()
    assert (cfg.n, cfg.size, cfg.ways, cfg.modality) == (200, 448, 8, "image")
    assert task.split == "test" and task.version == 1
    assert task.tag(cfg) == "basic-test"
    assert task.tag(task.make_config(modality="text")) == "basic-test-text"
    assert task.tag(task.make_config(ways=4)) != task.tag(cfg)


# -- structure ----------------------------------------------------------------------------------


def test_three_questions_per_image(image_samples: list[Sample]) -> None:
    counts: Counter[str] = Counter()
    for s in image_samples:
        assert [r["task"] for r in s.records] == ["direction", "distance", "localization"]
        counts.update(r["task"] for r in s.records)
    assert counts == {"direction": N, "distance": N, "localization": N}


def test_scene_has_three_basic_and_two_distractors(image_samples: list[Sample]) -> None:
    for s in image_samples:
        scene = Scene.from_dict(s.scene)
        assert sorted(n.label for n in scene.nodes) == ["N1", "N2", "N3", "N4", "N5"]
        assert [n.role for n in scene.nodes] == ["basic"] * 3 + ["distractor"] * 2
        basic_labels = {n.label for n in scene.basic}
        for rec in s.records:
            q = rec["query"]
            named = {q.get("from"), q.get("to"), q.get("object")} - {None}
            named |= {lab for pair in q.get("pairs", []) for lab in pair}
            assert named and named <= basic_labels, "questions name only the 3 basic objects"


def test_records_are_mcq_with_fixed_options(image_samples: list[Sample]) -> None:
    for s in image_samples:
        d, dist, loc = s.records
        assert d["choices"] == list(geo.DIRECTIONS_8)
        assert loc["choices"] == list(geo.REGIONS)
        basic_labels = [n["label"] for n in s.scene["nodes"][:3]]
        a, b, c = basic_labels
        assert dist["choices"] == [f"{a} to {b}", f"{a} to {c}", f"{b} to {c}"]
        # direction pairs run from the earlier- to the later-generated object
        assert basic_labels.index(d["query"]["from"]) < basic_labels.index(d["query"]["to"])
        for rec in s.records:
            assert rec["answer_type"] == "mcq" and rec["split"] == "test" and rec["source"] == "basic_mcq"
            assert re.fullmatch(r"[A-I]", rec["answer"]) and _letter_index(rec["answer"]) < len(
                rec["choices"]
            )
            text = prompt_text(rec)
            assert T.options_text(rec["choices"]) in text
            assert text.endswith("option letter in \\boxed{option}.")
            assert len(rec["messages"]) == 1, "test records carry no assistant turn"
            assert rec["images"] == [s.image] and s.image.startswith("images/basic-test-test-")


def test_answers_agree_with_geometry(image_samples: list[Sample]) -> None:
    for s in image_samples:
        for rec in s.records:
            assert rec["answer"] == _expected_letter(rec), rec["id"]


def test_distance_questions_use_the_upstream_templates(image_samples: list[Sample]) -> None:
    seen: Counter[str] = Counter()
    for s in image_samples:
        rec = s.records[1]
        t = rec["meta"]["template"]
        ask = rec["query"]["ask"]
        assert ask == T.MCQ_DISTANCE_ASKS[t]
        seen[ask] += 1
        if ask in ("shorter", "longer"):
            p1, p2 = (f"{p[0]} to {p[1]}" for p in rec["query"]["pairs"])
            assert p1 != p2
            assert f"{p1} or {p2}" in prompt_text(rec) or f"{p1} and {p2}" in prompt_text(rec)
            assert rec["choices"][_letter_index(rec["answer"])] in (p1, p2)
        else:
            assert len(rec["query"]["pairs"]) == 3
    assert set(seen) == {"shortest", "longest", "shorter", "longer"}


def test_templates_are_all_used(image_samples: list[Sample]) -> None:
    used = {
        task: {s.records[i]["meta"]["template"] for s in image_samples}
        for i, task in enumerate(["d", "r", "l"])
    }
    assert used["d"] == set(range(len(T.MCQ_DIRECTION_TEMPLATES)))
    assert used["r"] == set(range(len(T.MCQ_DISTANCE_TEMPLATES)))
    assert used["l"] == set(range(len(T.MCQ_LOCALIZATION_TEMPLATES)))


# -- text twin ----------------------------------------------------------------------------------


def test_text_twin_has_same_scene_and_answers(
    image_samples: list[Sample], text_samples: list[Sample]
) -> None:
    for img, txt in zip(image_samples, text_samples, strict=True):
        assert txt.scene == img.scene and txt.image is None
        for ri, rt in zip(img.records, txt.records, strict=True):
            for key in ("task", "answer", "choices", "query", "scene", "answer_type"):
                assert rt[key] == ri[key], key
            assert rt["images"] == []
            assert all(p["type"] == "text" for t in rt["messages"] for p in t["content"])
            assert prompt_text(rt).endswith("\n\n" + prompt_text(ri)), "same question after the description"
            assert rt["id"].startswith("basic-test-text-") and rt["id"] != ri["id"]


def test_text_twin_lists_every_object_with_two_decimals(text_samples: list[Sample]) -> None:
    for s in text_samples:
        text = prompt_text(s.records[0])
        listed = re.findall(r"- (N\d) at \((\d+\.\d\d), (\d+\.\d\d)\)", text)
        assert len(listed) == 5, "distractors are described too"
        for label, x, y in listed:
            node = Scene.from_dict(s.scene).node(label)
            assert x == f"{node.x:.2f}" and y == f"{node.y:.2f}"
        assert "origin (0, 0) at the bottom-left" in text and "y grows upward" in text


# -- variants, determinism, serialisation -------------------------------------------------------


def test_four_way_variant_shares_scenes(task, image_samples: list[Sample]) -> None:
    cfg = task.make_config(n=N, ways=4)
    for i, ref in enumerate(image_samples):
        s = task.sample(cfg, SEED, i)
        assert s.scene == ref.scene
        d = s.records[0]
        assert d["choices"] == list(geo.DIRECTIONS_4)
        assert d["answer"] == _expected_letter(d, ways=4)
        assert s.records[2]["answer"] == ref.records[2]["answer"]


def test_deterministic_and_seed_sensitive(task) -> None:
    cfg = task.make_config(n=3)
    a = [dumps(r) for i in range(3) for r in task.sample(cfg, 11, i).records]
    b = [dumps(r) for i in range(3) for r in task.sample(cfg, 11, i).records]
    assert a == b
    other = task.sample(cfg, 12, 0)
    assert other.scene != task.sample(cfg, 11, 0).scene
    assert task.sample(cfg, 11, 1).scene != task.sample(cfg, 11, 0).scene


def test_json_round_trip_and_unique_ids(image_samples: list[Sample], text_samples: list[Sample]) -> None:
    ids = set()
    for s in image_samples + text_samples:
        for rec in s.records:
            assert json.loads(dumps(rec)) == rec
            assert "." not in rec["id"] and rec["id"] not in ids
            ids.add(rec["id"])


def test_render_is_deterministic(task, image_samples: list[Sample]) -> None:
    scene = image_samples[0].scene
    png = encode_png(task.render(scene, 224))
    assert png == encode_png(task.render(json.loads(json.dumps(scene)), 224))
    img = task.render(scene, 224)
    assert img.size == (224, 224)
    # five discs drawn: the image is not blank
    assert img.getextrema()[0] < 255


# -- scoring the oracle -------------------------------------------------------------------------


def test_oracle_and_wrong_letters_score(image_samples: list[Sample]) -> None:
    scorer = SCORERS.get("mcq")
    for s in image_samples:
        for rec in s.records:
            assert scorer(rec, f"\\boxed{{{rec['answer']}}}").score == 1.0
            assert scorer(rec, rec["answer"]).correct
            wrong = T.letter((_letter_index(rec["answer"]) + 1) % len(rec["choices"]))
            v = scorer(rec, f"The answer is {wrong}.")
            assert v.outcome == "wrong" and v.score == 0.0
            # the option text alone also counts
            assert scorer(rec, rec["choices"][_letter_index(rec["answer"])]).correct
            assert scorer(rec, "I cannot tell.").outcome == "unparsable"
