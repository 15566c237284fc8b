"""The shortest-path task: config checks, determinism, distinctness policy, ladders, text twins."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from sparkle_vlm import solvers as S
from sparkle_vlm.answers.composite import score_path
from sparkle_vlm.answers.lists import parse_list
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.records import dumps, prompt_text
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.tasks import composite_templates as T
from sparkle_vlm.tasks import get_task
from sparkle_vlm.tasks.spp import valid_pairs

TASK = get_task("spp")


def _records(n: int = 20, seed: int = 0, **over) -> list[dict]:
    cfg = TASK.make_config(n=n, **over)
    return [TASK.sample(cfg, seed, i).records[0] for i in range(n)]


@pytest.mark.parametrize(
    "field, value",
    [
        ("grid", 1), ("grid", 11), ("grid", "4"), ("grid", True),
        ("obstacles", -0.1), ("obstacles", 0.5), ("obstacles", "0.2"),
        ("weighted", "yes"), ("prompt", "path"), ("modality", "video"),
        ("min_hops", 0), ("min_hops", 7),  # 7 > 2 * (4 - 1)
    ],
)  # fmt: skip
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TASK.make_config(**{field: value})


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"grid": 5, "obstacles": 0.2, "weighted": True},
        {"prompt": "labels"},
        {"prompt": "steps", "modality": "text"},
    ],
)
def test_deterministic_records_and_png(over: dict) -> None:
    cfg = TASK.make_config(n=4, size=224, **over)
    for i in range(4):
        a, b = TASK.sample(cfg, 3, i), TASK.sample(cfg, 3, i)
        assert dumps(a.records[0]) == dumps(b.records[0])
        if a.image:
            assert encode_png(TASK.render(a.scene, 224)) == encode_png(TASK.render(b.scene, 224))
    other = TASK.sample(cfg, 4, 0).records[0]
    assert [TASK.sample(cfg, 3, i).records[0]["scene"] for i in range(4)] != [other["scene"]] * 4


def _pair(rec: dict) -> frozenset[str]:
    return frozenset((rec["scene"]["start"], rec["scene"]["end"]))


def test_distinct_pairs_policy_4x4() -> None:
    recs = _records(200, seed=1)
    pairs = [_pair(r) for r in recs]
    P = len(valid_pairs(4, 2))
    assert P == 96
    assert len(set(pairs[:P])) == P  # the first epoch never repeats an unordered pair
    assert len(set(pairs[P : 2 * P])) == P
    counts = Counter(pairs)
    assert set(counts.values()) <= {2, 3} and len(counts) == P  # 200 = 2 * 96 + 8
    assert [r["meta"]["pairing"]["epoch"] for r in recs[94:98]] == [0, 0, 1, 1]
    # Epochs use different permutations, and seeds too.
    assert pairs[:P] != pairs[P : 2 * P]
    assert pairs[:10] != [_pair(r) for r in _records(10, seed=2)]


def test_random_access_matches_sequential() -> None:
    cfg = TASK.make_config(n=300)
    seq = _records(150, seed=5)
    assert dumps(TASK.sample(cfg, 5, 123).records[0]) == dumps(seq[123])


def test_path_length_distribution_matches_upstream_shape() -> None:
    # Upstream 4x4 (200 items): 2:82, 3:55, 4:33, 5:20, 6:10, i.e. most paths have length 2-3.
    # Uniform start/end at distance >= 2 expects 70.8, 66.7, 41.7, 16.7, 4.2 per 200.
    ref = Counter(abs(a % 4 - b % 4) + abs(a // 4 - b // 4) for a in range(16) for b in range(a + 1, 16))
    ref = Counter({d: c for d, c in ref.items() if d >= 2})
    assert ref == {2: 34, 3: 32, 4: 20, 5: 8, 6: 2}
    recs = _records(200, seed=0)
    lengths = Counter(r["meta"]["difficulty"]["optimal_length"] for r in recs)
    assert lengths[2] + lengths[3] > 120
    assert lengths[3] > lengths[4] > lengths[5] > lengths[6] > 0
    # Each full epoch is exactly the pair population; the 8 left over add at most 8 per length.
    first = Counter(r["meta"]["difficulty"]["optimal_length"] for r in recs[:96])
    assert first == ref
    for d, c in ref.items():
        assert 2 * c <= lengths[d] <= 2 * c + 8


def test_five_by_five_distribution_is_close_to_upstream() -> None:
    # Upstream 5x5 (200 items): 2:45, 3:61, 4:47, 5:25, 6:14, 7:6, 8:2.
    upstream = {2: 45, 3: 61, 4: 47, 5: 25, 6: 14, 7: 6, 8: 2}
    lengths = Counter(r["meta"]["difficulty"]["optimal_length"] for r in _records(200, seed=0, grid=5))
    assert sum(abs(lengths[d] - c) for d, c in upstream.items()) <= 40


def test_open_grid_answers_and_difficulty() -> None:
    for rec in _records(30, seed=2, grid=5):
        d = rec["meta"]["difficulty"]
        s = S.label_index(rec["scene"]["start"])
        e = S.label_index(rec["scene"]["end"])
        (si, sj), (ei, ej) = S.node_ij(s, 5), S.node_ij(e, 5)
        dx, dy = abs(si - ei), abs(sj - ej)
        assert d["manhattan"] == d["optimal_length"] == dx + dy >= 2
        assert d["num_optimal_paths"] == math.comb(dx + dy, dx)
        moves = parse_list(rec["answer"], ("moves",))
        assert moves is not None and len(moves.items) == dx + dy
        assert rec["answer"] == str(moves.items)  # a Python list string
        assert rec["query"] == {"start": rec["scene"]["start"], "end": rec["scene"]["end"]}
        assert rec["answer_type"] == "moves" and rec["task"] == "spp" and rec["split"] == "test"
        v = score_path(rec, rec["answer"])
        assert v.outcome == "optimal" and v.score == 1.0 and v.details["exact_match"]


def test_scene_layout() -> None:
    rec = _records(1, grid=4)[0]
    nodes = rec["scene"]["nodes"]
    assert len(nodes) == 16 and rec["scene"]["grid"] == 4
    n6 = next(nd for nd in nodes if nd["label"] == "N6")
    assert (n6["i"], n6["j"], n6["x"], n6["y"]) == (1, 1, 3.75, 3.75)
    assert nodes[15]["label"] == "N16" and (nodes[15]["i"], nodes[15]["j"]) == (3, 3)


@pytest.mark.parametrize("grid, frac", [(4, 0.2), (5, 0.3), (6, 0.4), (2, 0.25)])
def test_obstacle_ladder(grid: int, frac: float) -> None:
    recs = _records(25, seed=0, grid=grid, obstacles=frac)
    k = round(frac * grid * grid)
    for rec in recs:
        scene = rec["scene"]
        assert len(scene["blocked"]) == k
        assert scene["start"] not in scene["blocked"] and scene["end"] not in scene["blocked"]
        assert score_path(rec, rec["answer"]).outcome == "optimal"
        g, s, e = S.grid_from_scene(scene)
        sol = S.shortest_path(g, s, e)
        assert sol is not None and sol.length == rec["meta"]["difficulty"]["optimal_length"]
        assert not {S.grid_label(v) for v in sol.path} & set(scene["blocked"])
    assert len({tuple(r["scene"]["blocked"]) for r in recs}) > 1


def test_weighted_ladder() -> None:
    for rec in _records(20, seed=0, grid=5, obstacles=0.2, weighted=True, prompt="labels"):
        scene = rec["scene"]
        blocked = [S.label_index(b) for b in scene["blocked"]]
        assert set(scene["weights"]) == {S.edge_key(a, b) for a, b in S.grid_edges(5, blocked)}
        assert all(isinstance(w, int) and 1 <= w <= 9 for w in scene["weights"].values())
        labels = json.loads(rec["answer"])
        assert labels[0] == scene["start"] and labels[-1] == scene["end"]
        g, _, _ = S.grid_from_scene(scene)
        assert (
            S.path_length(g, [S.label_index(lb) for lb in labels])
            == rec["meta"]["difficulty"]["optimal_length"]
        )
        assert score_path(rec, rec["answer"]).outcome == "optimal"
    prompt = prompt_text(rec)
    assert T.SPP_WEIGHT_NOTE in prompt and T.SPP_OBSTACLE_NOTE in prompt


def test_upstream_prompts_are_used_verbatim() -> None:
    assert prompt_text(_records(1)[0]) == T.SHORTEST_QUESTION_TEMPLATES[0]
    labels = prompt_text(_records(1, prompt="labels")[0])
    assert labels == T.SHORTEST_QUESTION_TEMPLATES[3].replace("{n}", "16")
    assert labels.startswith("The image shows a grid graph where each node is labeled (N1, N2, ... N16)")
    steps = prompt_text(_records(1, grid=5, prompt="steps")[0])
    assert "(N1, N2, ... N25)" in steps and steps.endswith("[node1 text label, node2 text label, ...].")


def test_text_twin_matches_image_version() -> None:
    over = {"grid": 5, "obstacles": 0.2, "weighted": True}
    for prompt in ("moves", "labels", "steps"):
        img = _records(8, seed=9, prompt=prompt, **over)
        txt = _records(8, seed=9, prompt=prompt, modality="text", **over)
        for a, b in zip(img, txt, strict=True):
            assert a["answer"] == b["answer"] and a["scene"] == b["scene"] and a["query"] == b["query"]
            assert b["images"] == [] and all(p["type"] == "text" for p in b["messages"][0]["content"])
            text = prompt_text(b)
            assert (
                f"The start node is {b['scene']['start']}" in text
                and f"end node is {b['scene']['end']}" in text
            )
            for lb in b["scene"]["blocked"]:
                assert lb in text
            for key, w in b["scene"]["weights"].items():
                assert f"{key}: {w}" in text
            assert score_path(b, b["answer"]).outcome == "optimal"
    assert "image" not in prompt_text(_records(1, modality="text")[0]).lower()


def test_tags_differ_per_variant() -> None:
    variants = [
        {}, {"grid": 5}, {"obstacles": 0.2}, {"weighted": True}, {"prompt": "labels"},
        {"prompt": "steps"}, {"modality": "text"}, {"min_hops": 3}, {"obstacles": 0.125},
    ]  # fmt: skip
    tags = [TASK.tag(TASK.make_config(**v)) for v in variants]
    assert len(set(tags)) == len(tags) and all("." not in t for t in tags)
    assert TASK.tag(TASK.make_config(grid=5, obstacles=0.2, weighted=True)) == "spp5-obst20-w"


def test_min_hops_is_respected() -> None:
    for rec in _records(40, grid=5, min_hops=5):
        assert rec["meta"]["difficulty"]["manhattan"] >= 5


def test_rendered_colours_mark_start_end_and_blocked() -> None:
    cfg = TASK.make_config(n=3, grid=4, obstacles=0.25)
    size = 448
    for i in range(3):
        s = TASK.sample(cfg, 0, i)
        img = TASK.render(s.scene, size).convert("RGB")
        by_label = {nd["label"]: nd for nd in s.scene["nodes"]}

        def px(label: str, img=img, by_label=by_label) -> tuple[int, int, int]:
            nd = by_label[label]
            # Just off-centre, to miss the label's ink.
            return img.getpixel(
                (int((nd["i"] + 0.5) / 4 * size) + 15, int(size - (nd["j"] + 0.5) / 4 * size))
            )

        assert px(s.scene["start"]) == (0, 128, 0)
        assert px(s.scene["end"]) == (255, 0, 0)
        for lb in s.scene["blocked"]:
            assert px(lb) == (64, 64, 64)


def test_impossible_obstacles_fail_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sparkle_vlm.tasks.spp as spp

    monkeypatch.setattr(spp, "MAX_OBSTACLE_TRIES", 0)
    with pytest.raises(SparkleError, match="^obstacles:"):
        TASK.sample(TASK.make_config(obstacles=0.2), 0, 0)
