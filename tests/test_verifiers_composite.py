"""Graded verifiers of SPP and TSP answers: one line per case, every outcome class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparkle_vlm import solvers as S
from sparkle_vlm.answers.composite import score_path, score_tour
from sparkle_vlm.answers.lists import parse_list
from sparkle_vlm.answers.verify import SCORERS
from sparkle_vlm.tasks import get_task


def _grid_record(grid: int, start: str, end: str, blocked=(), weights=None) -> dict:
    return {
        "scene": {
            "grid": grid,
            "start": start,
            "end": end,
            "blocked": list(blocked),
            "weights": weights or {},
        }
    }


# (0,0) -> (2,2): 4 hops, 6 shortest paths; canonical up, up, right, right.
OPEN = _grid_record(4, "N1", "N11")
WALL = _grid_record(3, "N1", "N9", blocked=["N5"])  # centre blocked: only the two rims remain
# 3x3, start N1 (0,0), end N3 (0,2): the direct column costs 18, the detour through column 1 costs 4.
HEAVY = _grid_record(
    3, "N1", "N3", weights={**{S.edge_key(a, b): 1 for a, b in S.grid_edges(3)}, "N1-N2": 9, "N2-N3": 9}
)

# (record, model text, outcome, reward, reason fragment or None)
# fmt: off
SPP_CASES = [
    (OPEN, "['up', 'up', 'right', 'right']", "optimal", 1.0, None),  # the canonical path
    (OPEN, "['right', 'up', 'right', 'up']", "optimal", 1.0, None),  # any shortest path counts
    (OPEN, "```python\n['Up', 'UP', 'right', 'Right']\n```", "optimal", 1.0, None),  # fence + case
    (OPEN, '["up","up","right","right"]', "optimal", 1.0, None),  # double quotes, no spaces
    (OPEN, "Reasoning [N1, N5] ... so: [up, up, right, right]. Done!", "optimal", 1.0, None),  # last list wins
    (OPEN, "up, up, right, right", "optimal", 1.0, None),  # no brackets, comma list
    (OPEN, "[N1, N2, N3, N7, N11]", "optimal", 1.0, None),  # labels with the start
    (OPEN, "['N2', 'N3', 'N7', 'N11']", "optimal", 1.0, None),  # labels without the start
    (OPEN, "[2, 3, 7, 11]", "optimal", 1.0, None),  # bare numbers
    (OPEN, '["n1", "n5", "n9", "n10", "n11"]', "optimal", 1.0, None),  # lowercase labels, other path
    (OPEN, "N1 -> N2 -> N3 -> N7 -> N11", "optimal", 1.0, None),  # arrow chain
    (OPEN, "['up', 'up', 'up', 'right', 'right', 'down']", "suboptimal", 4 / 6, None),  # detour
    (OPEN, "[N1, N5, N9, N13, N14, N15, N11]", "suboptimal", 4 / 6, None),  # detour in labels
    (OPEN, "['left', 'up']", "infeasible", 0.0, "leaves the grid"),
    (OPEN, "['up', 'up', 'right']", "infeasible", 0.0, "ends at N7"),
    (OPEN, "['up', 'down', 'up', 'up', 'right', 'right']", "infeasible", 0.0, "N1 twice"),
    (OPEN, "[N1, N3, N7, N11]", "infeasible", 0.0, "N1 -> N3 is not an edge"),
    (OPEN, "[N1, N2, N3, N7, N11, N99]", "infeasible", 0.0, "unknown node N99"),
    (OPEN, "[N6, N7, N11]", "infeasible", 0.0, "neither the start node N1"),
    (OPEN, "[N1, N1, N2, N3, N7, N11]", "infeasible", 0.0, "repeats N1"),
    (OPEN, "[]", "infeasible", 0.0, "ends at N1"),
    (OPEN, "up up right right", "unparsable", 0.0, None),  # no separators
    (OPEN, "", "unparsable", 0.0, None),
    (OPEN, "The path is [(0,0), (0,1)]", "unparsable", 0.0, None),  # coordinates are not an answer format
    (OPEN, "[[0, 0], [0, 1], [1, 1]]", "unparsable", 0.0, None),  # nested lists are skipped
    (OPEN, "['up', 'north']", "unparsable", 0.0, None),  # unknown move word
    (WALL, "['up', 'up', 'right', 'right']", "optimal", 1.0, None),
    (WALL, "['right', 'right', 'up', 'up']", "optimal", 1.0, None),
    (WALL, "['right', 'up', 'up', 'right']", "infeasible", 0.0, "enters blocked node N5"),
    (WALL, "[N1, N4, N5, N6, N9]", "infeasible", 0.0, "visits blocked node N5"),
    (WALL, "[N5, N6, N9]", "infeasible", 0.0, "visits blocked node N5"),
    (HEAVY, "['right', 'up', 'up', 'left']", "optimal", 1.0, None),  # 4 hops but weight 4
    (HEAVY, "['up', 'up']", "suboptimal", 4 / 18, None),  # fewest hops, weight 18
]
# fmt: on


@pytest.mark.parametrize("record, text, outcome, reward, reason", SPP_CASES)
def test_spp_verifier(record: dict, text: str, outcome: str, reward: float, reason: str | None) -> None:
    v = score_path(record, text)
    assert v.outcome == outcome, v
    assert v.score == (1.0 if outcome == "optimal" else 0.0)
    assert v.details["reward"] == pytest.approx(reward)
    if reason is not None:
        assert reason in v.details["reason"], v.details
    if outcome in ("optimal", "suboptimal"):
        d = v.details
        assert d["ratio"] == pytest.approx(d["length"] / d["optimal_length"])
        assert d["gap"] == d["length"] - d["optimal_length"] and v.error == d["gap"]


def test_spp_exact_match_is_reported() -> None:
    assert score_path(OPEN, "['up', 'up', 'right', 'right']").details["exact_match"] is True
    assert score_path(OPEN, "[N2, N3, N7, N11]").details["exact_match"] is True  # start omitted, same path
    assert score_path(OPEN, "['right', 'right', 'up', 'up']").details["exact_match"] is False


def test_spp_every_shortest_path_is_optimal() -> None:
    # All C(4, 2) = 6 orderings of two ups and two rights.
    import itertools

    paths = {p for p in itertools.permutations(["up", "up", "right", "right"])}
    assert len(paths) == 6
    for p in paths:
        assert score_path(OPEN, str(list(p))).outcome == "optimal"


# Points on a line (start N2 at the left end) and a square.
LINE = [("N2", 1.0, 1.0), ("N1", 9.0, 1.0), ("N3", 5.0, 1.0), ("N4", 3.0, 1.0)]
SQUARE = [("N1", 1.0, 1.0), ("N2", 9.0, 1.0), ("N3", 9.0, 9.0), ("N4", 1.0, 9.0)]


def _tsp_record(points, variant: str) -> dict:
    nodes = [{"label": lb, "x": x, "y": y, "role": "basic"} for lb, x, y in points]
    start = None if variant == "free" else points[0][0]
    return {"scene": {"frame": 10, "nodes": nodes}, "query": {"variant": variant, "start": start}}


FIX = _tsp_record(LINE, "fixstart")
FREE = _tsp_record(LINE, "free")
CLOSED = _tsp_record(SQUARE, "closed")

# fmt: off
TSP_CASES = [
    (FIX, '["N2", "N4", "N3", "N1"]', "optimal", 1.0, None),
    (FIX, "[2, 4, 3, 1]", "optimal", 1.0, None),  # bare numbers
    (FIX, "Answer:\n```\n['n2', 'n4', 'n3', 'n1']\n```", "optimal", 1.0, None),
    (FIX, "[N2, N3, N4, N1]", "suboptimal", 8 / 12, None),
    (FIX, "[N1, N3, N4, N2]", "infeasible", 0.0, "starts at N1, not at N2"),  # reverse: optimal only when free
    (FIX, "[N2, N4, N3]", "infeasible", 0.0, "misses N1"),
    (FIX, "[N2, N4, N4, N3, N1]", "infeasible", 0.0, "N4 twice"),
    (FIX, "[N2, N4, N3, N1, N7]", "infeasible", 0.0, "unknown point N7"),
    (FIX, "['up', 'down']", "unparsable", 0.0, None),
    (FIX, "no list here", "unparsable", 0.0, None),
    (FREE, "[N1, N3, N4, N2]", "optimal", 1.0, None),  # the reverse of the canonical path
    (FREE, "[N4, N2, N3, N1]", "suboptimal", 8 / 10, None),
    (CLOSED, "[N1, N2, N3, N4]", "optimal", 1.0, None),
    (CLOSED, "[N3, N2, N1, N4]", "optimal", 1.0, None),  # rotated and reversed
    (CLOSED, "[N1, N2, N3, N4, N1]", "optimal", 1.0, None),  # the return to the start written out
    (CLOSED, "[N1, N3, N2, N4]", "suboptimal", 32 / (16 + 2 * math.hypot(8, 8)), None),
    (CLOSED, "[N1, N2, N3, N4, N2]", "infeasible", 0.0, "N2 twice"),
]
# fmt: on


@pytest.mark.parametrize("record, text, outcome, reward, reason", TSP_CASES)
def test_tsp_verifier(record: dict, text: str, outcome: str, reward: float, reason: str | None) -> None:
    v = score_tour(record, text)
    assert v.outcome == outcome, v
    assert v.score == (1.0 if outcome == "optimal" else 0.0)
    assert v.details["reward"] == pytest.approx(reward)
    if reason is not None:
        assert reason in v.details["reason"], v.details


def test_tsp_exact_match_and_tolerance() -> None:
    assert score_tour(FIX, '["N2", "N4", "N3", "N1"]').details["exact_match"] is True
    free_answers = [score_tour(FREE, t) for t in ("[N1, N3, N4, N2]", "[N2, N4, N3, N1]")]
    assert all(v.outcome == "optimal" for v in free_answers)
    assert sorted(v.details["exact_match"] for v in free_answers) == [False, True]  # one is canonical
    rng = np.random.default_rng(5)
    for _ in range(20):
        pts = [(f"N{i + 1}", float(x), float(y)) for i, (x, y) in enumerate(rng.uniform(0.5, 9.5, (8, 2)))]
        for variant in ("free", "closed"):
            rec = _tsp_record(pts, variant)
            d = S.distance_matrix([(x, y) for _, x, y in pts])
            sol = S.held_karp(d, variant, 0)
            rev = [pts[i][0] for i in reversed(sol.order)]
            # Reversed sums differ in the last bits; the tolerance must still call them optimal.
            assert score_tour(rec, str(rev)).outcome == "optimal"


def test_scorers_are_registered_and_never_raise() -> None:
    assert SCORERS.get("moves") is score_path and SCORERS.get("labels") is score_path
    assert SCORERS.get("tour") is score_tour
    for junk in ["[", "]", "[[[", "[N1,,N2]", "[N-1]", "[N" + "9" * 50 + "]", "\x00[up]", "[" * 500 + "up"]:
        assert score_path(OPEN, junk).outcome in ("unparsable", "infeasible")
        assert score_tour(FIX, junk).outcome in ("unparsable", "infeasible")


@pytest.mark.parametrize(
    "text, kinds, expected",
    [
        ("['up', 'Right']", ("moves", "labels"), ("moves", ["up", "right"])),
        ("[N1, N2] then [up]", ("moves", "labels"), ("moves", ["up"])),
        ("[up] then [N1, N2]", ("moves", "labels"), ("labels", ["N1", "N2"])),
        ("final: [N1, N2, N3]. See [1].", ("labels",), ("labels", ["N1", "N2", "N3"])),  # footnote ignored
        ("[1]", ("labels",), ("labels", ["N1"])),  # bare numbers still count when alone
        ("['up', 'right',]", ("moves",), ("moves", ["up", "right"])),  # trailing comma
        ("['Up.', ' down ']", ("moves",), ("moves", ["up", "down"])),
        ("[“N1”, ‘N2’]", ("labels",), ("labels", ["N1", "N2"])),  # typographic quotes
        ("[N 3, n4]", ("labels",), ("labels", ["N3", "N4"])),
        ("[up, N2]", ("moves", "labels"), None),  # mixed kinds
        ("[node one]", ("labels",), None),
        (None, ("labels",), None),
    ],
)
def test_parse_list(text, kinds, expected) -> None:
    got = parse_list(text, kinds)
    assert (None if got is None else (got.kind, got.items)) == expected


def _random_shortest_path(g: S.GridGraph, start: int, end: int, rng: np.random.Generator) -> list[int]:
    from_start, to_end = S.dijkstra(g, start), S.dijkstra(g, end)
    total = from_start[end]
    path = [start]
    while path[-1] != end:
        u = path[-1]
        nxt = [v for v, w in g.neighbours(u) if from_start[u] + w + to_end[v] == total]
        path.append(nxt[int(rng.integers(len(nxt)))])
    return path


def test_random_shortest_paths_always_score_one_and_edits_never_do() -> None:
    task_rng = np.random.default_rng(11)
    task = get_task("spp")
    cfg = task.make_config(n=40, grid=6, obstacles=0.25, weighted=True)
    for i in range(40):
        rec = task.sample(cfg, 0, i).records[0]
        g, s, e = S.grid_from_scene(rec["scene"])
        path = _random_shortest_path(g, s, e, task_rng)
        labels = [S.grid_label(v) for v in path]
        moves = S.moves_of(path, 6)
        assert score_path(rec, str(moves)).outcome == "optimal"
        assert score_path(rec, str(labels)).outcome == "optimal"
        assert score_path(rec, str(labels[1:])).outcome == "optimal"  # start omitted
        assert score_path(rec, str(moves[:-1])).outcome == "infeasible"  # stops one short
        k = int(task_rng.integers(len(moves)))
        back = {"up": "down", "down": "up", "left": "right", "right": "left"}
        detour = moves[:k] + [moves[k], back[moves[k]]] + moves[k:]  # steps forward and back: a revisit
        assert score_path(rec, str(detour)).outcome == "infeasible"
