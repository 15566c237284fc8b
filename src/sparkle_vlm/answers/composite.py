"""Graded verifiers of the composite tasks (shortest path, travelling salesman).

Outcomes: ``optimal`` (score 1), ``suboptimal`` (a valid answer that is longer), ``infeasible``
(an answer that breaks a rule; ``details["reason"]`` says which) and ``unparsable`` (no list
could be read). The primary ``score`` is 1.0 for optimal and 0.0 otherwise, so accuracy stays
honest; the graded RL reward is ``details["reward"]``: 1 for optimal, ``optimal / length`` for
suboptimal, 0 otherwise. Feasible answers also report ``length``, ``optimal_length``, ``ratio``
(length / optimal), ``gap`` (length - optimal, also in ``error``) and ``exact_match`` (same
sequence as the record's canonical answer).

Shortest path (answer types ``moves`` and ``labels``). Any shortest path is optimal, whichever
format the prompt asked for: a list of moves (``up/down/left/right``, up = row + 1) or a list of
node labels. A label list may include or omit the start node: when its first label is not the
start, the start is put in front (so ``[N2, N6]`` from start N1 means N1, N2, N6). A path that
leaves the grid, enters a blocked node, jumps between non-neighbours, names an unknown node,
visits a node twice or does not end at the end node is infeasible.

Travelling salesman (answer type ``tour``). The answer must name every point exactly once;
``fixstart`` answers must begin at the given start; ``closed`` answers may start anywhere, go
either way and may repeat the first label at the end. Lengths use the scene's unrounded
coordinates and count as optimal within a relative tolerance of 1e-9 (so the reverse of an
optimal free path is optimal too).

Compiled problems (graph tables, optimum) are cached by scene content, which keeps the hot path
free of graph searches: scoring many answers to one instance costs one solve.
"""

from __future__ import annotations

from typing import Any

from sparkle_vlm import solvers as S
from sparkle_vlm.answers.lists import parse_list
from sparkle_vlm.answers.types import Verdict
from sparkle_vlm.answers.verify import SCORERS

REL_TOL = 1e-9
_CACHE_LIMIT = 4096
_MOVE_INDEX = {m: i for i, m in enumerate(S.MOVES)}


def _verdict(outcome: str, parsed: Any, reason: str | None = None, **details: Any) -> Verdict:
    if reason is not None:
        details["reason"] = reason
    details.setdefault("reward", 1.0 if outcome == "optimal" else 0.0)
    return Verdict(outcome, 1.0 if outcome == "optimal" else 0.0, parsed, details.get("gap"), details)


def _graded(parsed: Any, length: float, opt: float, exact: bool, fmt: str, optimal: bool) -> Verdict:
    return _verdict(
        "optimal" if optimal else "suboptimal",
        parsed,
        reward=1.0 if optimal else opt / length,
        length=length,
        optimal_length=opt,
        ratio=length / opt if opt else 1.0,
        gap=0.0 if optimal else length - opt,
        exact_match=exact,
        format=fmt,
    )


# -- shortest path -------------------------------------------------------------------------------


class _SppProblem:
    __slots__ = ("n", "step", "weight", "start", "end", "blocked", "optimum", "canonical")

    def __init__(self, scene: dict[str, Any]) -> None:
        g, start, end = S.grid_from_scene(scene)
        sol = S.shortest_path(g, start, end)
        self.n = g.n
        self.step = g.step
        self.weight = g.weight
        self.start = start
        self.end = end
        self.blocked = g.blocked
        self.optimum = None if sol is None else sol.length
        self.canonical = None if sol is None else sol.path


_SPP: dict[tuple[Any, ...], _SppProblem] = {}


def _spp_problem(scene: dict[str, Any]) -> _SppProblem:
    weights = scene.get("weights")
    key = (
        scene["grid"],
        scene["start"],
        scene["end"],
        tuple(scene.get("blocked") or ()),
        tuple(weights.items()) if weights else (),
    )
    prob = _SPP.get(key)
    if prob is None:
        if len(_SPP) >= _CACHE_LIMIT:
            _SPP.clear()
        prob = _SPP[key] = _SppProblem(scene)
    return prob


def _lab(k: int) -> str:
    return f"N{k + 1}"


def score_path(record: dict[str, Any], text: str) -> Verdict:
    """Score a shortest-path answer (moves or node labels) against an SPP record.

    >>> rec = {"scene": {"grid": 4, "start": "N1", "end": "N6", "blocked": [], "weights": {}}}
    >>> v = score_path(rec, "['right', 'up']")  # another shortest path than the canonical up, right
    >>> v.outcome, v.score, v.details["exact_match"]
    ('optimal', 1.0, False)
    >>> v = score_path(rec, "[N1, N2, N3, N7, N6]")
    >>> v.outcome, v.score, v.details["reward"]
    ('suboptimal', 0.0, 0.5)
    >>> score_path(rec, "['left', 'up']").details["reason"]
    "move 1 'left' from N1 leaves the grid"
    >>> score_path(rec, "no idea").outcome
    'unparsable'
    """
    parsed = parse_list(text)
    if parsed is None:
        return _verdict("unparsable", None, "no Python list of moves or node labels found")
    prob = _spp_problem(record["scene"])
    if prob.optimum is None:
        return _verdict("infeasible", parsed.items, "the instance has no path", format=parsed.kind)
    n, step, start = prob.n, prob.step, prob.start
    if parsed.kind == "moves":
        path = [start]
        u = start
        for t, m in enumerate(parsed.items, 1):
            v = step[u][_MOVE_INDEX[m]]
            if v < 0:
                i, j = divmod(u, n)
                di, dj = S.MOVE_STEPS[m]
                ni, nj = i + di, j + dj
                if 0 <= ni < n and 0 <= nj < n:
                    why = f"enters blocked node {_lab(ni * n + nj)}"
                else:
                    why = "leaves the grid"
                return _verdict(
                    "infeasible", parsed.items, f"move {t} '{m}' from {_lab(u)} {why}", format="moves"
                )
            path.append(v)
            u = v
    else:
        nodes = []
        for lb in parsed.items:
            k = int(lb[1:]) - 1
            if not 0 <= k < n * n:
                return _verdict("infeasible", parsed.items, f"unknown node {lb}", format="labels")
            nodes.append(k)
        if nodes and nodes[0] != start:
            # The start may be left out: then the list must begin at one of its neighbours.
            if nodes[0] not in step[start]:
                why = f"starts at {_lab(nodes[0])}, which is neither the start node {_lab(start)} nor next to it"
                if nodes[0] in prob.blocked:
                    why = f"visits blocked node {_lab(nodes[0])}"
                return _verdict("infeasible", parsed.items, why, format="labels")
            nodes.insert(0, start)
        path = nodes or [start]
        for a, b in zip(path, path[1:], strict=False):
            if b not in step[a]:
                if b in prob.blocked:
                    why = f"visits blocked node {_lab(b)}"
                elif a == b:
                    why = f"repeats {_lab(a)}"
                else:
                    why = f"{_lab(a)} -> {_lab(b)} is not an edge"
                return _verdict("infeasible", parsed.items, why, format="labels")
    if len(set(path)) != len(path):
        seen: set[int] = set()
        for v in path:
            if v in seen:
                return _verdict("infeasible", parsed.items, f"visits {_lab(v)} twice", format=parsed.kind)
            seen.add(v)
    if path[-1] != prob.end:
        return _verdict(
            "infeasible",
            parsed.items,
            f"ends at {_lab(path[-1])}, not at the end node {_lab(prob.end)}",
            format=parsed.kind,
        )
    weight = prob.weight
    length = 0
    for a, b in zip(path, path[1:], strict=False):
        length += weight[(a, b)]
    opt = prob.optimum
    return _graded(parsed.items, length, opt, tuple(path) == prob.canonical, parsed.kind, length == opt)


# -- travelling salesman -------------------------------------------------------------------------


class _TspProblem:
    __slots__ = ("labels", "index", "dist", "variant", "start", "optimum", "canonical")

    def __init__(self, scene: dict[str, Any], variant: str, start: str | None) -> None:
        nodes = [nd for nd in scene["nodes"] if nd.get("role", "basic") == "basic"]
        self.labels = [nd["label"] for nd in nodes]
        self.index = {lb: i for i, lb in enumerate(self.labels)}
        d = S.distance_matrix([(float(nd["x"]), float(nd["y"])) for nd in nodes])
        self.dist = d
        self.variant = variant
        self.start = None if start is None else self.index[start]
        sol = S.held_karp(d, variant, self.start or 0)
        self.optimum = sol.length
        self.canonical = sol.order


_TSP: dict[tuple[Any, ...], _TspProblem] = {}


def _tsp_problem(record: dict[str, Any]) -> _TspProblem:
    scene = record["scene"]
    query = record.get("query") or {}
    variant = query.get("variant", "fixstart")
    start = query.get("start")
    if variant == "fixstart" and start is None:
        start = scene["nodes"][0]["label"]
    key = (variant, start, tuple((nd["label"], nd["x"], nd["y"], nd.get("role")) for nd in scene["nodes"]))
    prob = _TSP.get(key)
    if prob is None:
        if len(_TSP) >= _CACHE_LIMIT:
            _TSP.clear()
        prob = _TSP[key] = _TspProblem(scene, variant, start if variant != "free" else None)
    return prob


def score_tour(record: dict[str, Any], text: str) -> Verdict:
    """Score a travelling-salesman answer (a list of labels) against a TSP record.

    >>> nodes = [{"label": lb, "x": x, "y": 1.0} for lb, x in (("N2", 1.0), ("N1", 9.0), ("N3", 5.0))]
    >>> rec = {"scene": {"nodes": nodes}, "query": {"variant": "free", "start": None}}
    >>> v = score_tour(rec, '["N1", "N3", "N2"]')  # the reverse of N2, N3, N1: optimal too
    >>> v.outcome, v.details["optimal_length"]
    ('optimal', 8.0)
    >>> v = score_tour(rec, "[N3, N2, N1]")
    >>> v.outcome, round(v.details["reward"], 3)
    ('suboptimal', 0.667)
    >>> score_tour(rec, "[N1, N3]").details["reason"]
    'misses N2'
    """
    parsed = parse_list(text, ("labels",))
    if parsed is None:
        return _verdict("unparsable", None, "no Python list of point labels found")
    prob = _tsp_problem(record)
    items = parsed.items
    order = []
    for lb in items:
        k = prob.index.get(lb)
        if k is None:
            return _verdict("infeasible", items, f"unknown point {lb}", format="labels")
        order.append(k)
    closed = prob.variant == "closed"
    if closed and len(order) == len(prob.labels) + 1 and order[0] == order[-1]:
        order.pop()
    seen: set[int] = set()
    for k in order:
        if k in seen:
            return _verdict("infeasible", items, f"visits {prob.labels[k]} twice", format="labels")
        seen.add(k)
    if len(order) < len(prob.labels):
        missing = [lb for i, lb in enumerate(prob.labels) if i not in seen]
        return _verdict(
            "infeasible", items, f"misses {', '.join(sorted(missing, key=_label_key))}", format="labels"
        )
    if prob.variant == "fixstart" and order[0] != prob.start:
        assert prob.start is not None
        return _verdict(
            "infeasible",
            items,
            f"starts at {prob.labels[order[0]]}, not at {prob.labels[prob.start]}",
            format="labels",
        )
    length = S.tour_length(prob.dist, order, closed)
    opt = prob.optimum
    optimal = length <= opt * (1 + REL_TOL)
    return _graded(items, length, opt, tuple(order) == prob.canonical, "labels", optimal)


def _label_key(label: str) -> tuple[int, str]:
    digits = label[1:]
    return (int(digits), label) if digits.isdigit() else (1 << 30, label)


SCORERS.add("moves", score_path)
SCORERS.add("labels", score_path)
SCORERS.add("tour", score_tour)
