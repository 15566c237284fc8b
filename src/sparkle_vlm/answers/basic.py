"""Scorers of the basic tasks, registered in :data:`SCORERS` by the record's ``answer_type``.

Labels and multiple choice score 1/0 against the record's ``answer`` (a label computed from the
scene at generation time). Numbers and coordinates are checked against the *unrounded* scene,
not the rounded answer text: an answer scores 1 when its error is at most
:data:`NUMBER_TOLERANCE` frame units (a record may override it with ``meta["tolerance"]``).
Descriptions are split into facts, each checked against the scene.

Outcomes: ``correct`` / ``wrong`` / ``unparsable`` (nothing readable; never counted as wrong).
"""

from __future__ import annotations

import math
from typing import Any

from sparkle_vlm import geometry as geo
from sparkle_vlm.answers.parse import (
    parse_choice,
    parse_coord,
    parse_description,
    parse_direction,
    parse_number,
    parse_pair,
    parse_region,
)
from sparkle_vlm.answers.types import Verdict
from sparkle_vlm.answers.verify import SCORERS
from sparkle_vlm.scene import Scene

#: Largest error (frame units) of a correct distance or coordinate; also the margin within which
#: two distances count as "the same" in a description. Upstream answers carry 2 decimals, so
#: exact match would be meaningless; 0.25 is a quarter of a grid unit.
NUMBER_TOLERANCE = 0.25
#: How many wrong facts a description verdict lists in its details.
MAX_LISTED = 10
# Slack for float noise at the tolerance edge: "(4.15, 5.2)" is 0.25 from (4, 5) on paper but
# 0.2500000000000002 in floats, and an inclusive tolerance must include it.
_EPS = 1e-9


def _tolerance(record: dict[str, Any]) -> float:
    tol = (record.get("meta") or {}).get("tolerance", NUMBER_TOLERANCE)
    return float(tol)


def _labels(record: dict[str, Any]) -> list[str]:
    scene = record.get("scene") or {}
    return [str(n["label"]) for n in scene.get("nodes", [])]


def _label_verdict(parsed: str | None, expected: str) -> Verdict:
    if parsed is None:
        return Verdict("unparsable", 0.0, None, None, {"expected": expected})
    ok = parsed == expected
    return Verdict("correct" if ok else "wrong", float(ok), parsed, None, {"expected": expected})


@SCORERS.register("mcq")
def score_mcq(record: dict[str, Any], text: str) -> Verdict:
    """An option letter against the record's letter.

    >>> rec = {"answer": "E", "choices": ["top left", "top", "top right", "left", "right"]}
    >>> score_mcq(rec, "\\\\boxed{E}").outcome, score_mcq(rec, "B").outcome, score_mcq(rec, "hmm").outcome
    ('correct', 'wrong', 'unparsable')
    """
    return _label_verdict(parse_choice(text, record.get("choices")), str(record["answer"]))


@SCORERS.register("direction")
def score_direction(record: dict[str, Any], text: str) -> Verdict:
    """A direction label against the record's label.

    >>> score_direction({"answer": "top right"}, "upper-right").score
    1.0
    """
    return _label_verdict(parse_direction(text), str(record["answer"]))


@SCORERS.register("region")
def score_region(record: dict[str, Any], text: str) -> Verdict:
    """A 3 x 3 region label against the record's label.

    >>> score_region({"answer": "center"}, "It is in the middle.").outcome
    'correct'
    """
    return _label_verdict(parse_region(text), str(record["answer"]))


@SCORERS.register("pair")
def score_pair(record: dict[str, Any], text: str) -> Verdict:
    """A pair of labels (order-insensitive) against the record's pair.

    >>> rec = {"answer": "N1 and N3", "scene": {"nodes": [{"label": f"N{i}"} for i in (1, 2, 3)]}}
    >>> score_pair(rec, "N3 to N1").outcome, score_pair(rec, "N2 and N3").outcome
    ('correct', 'wrong')
    """
    labels = _labels(record)
    for pair in (record.get("query") or {}).get("pairs", []):
        labels += [str(x) for x in pair]
    expected = parse_pair(record["answer"], labels)
    if expected is None:
        raise ValueError(f"record answer {record['answer']!r} is not a pair")
    parsed = parse_pair(text, labels)
    details: dict[str, Any] = {"expected": list(expected)}
    if parsed is None:
        return Verdict("unparsable", 0.0, None, None, details)
    ok = parsed == expected
    return Verdict("correct" if ok else "wrong", float(ok), list(parsed), None, details)


def _true_distance(record: dict[str, Any]) -> float:
    pair = (record.get("query") or {}).get("pair")
    if pair and record.get("scene"):
        scene = Scene.from_dict(record["scene"])
        a, b = scene.node(str(pair[0])), scene.node(str(pair[1]))
        return geo.distance(a.x, a.y, b.x, b.y)
    return float(record["answer"])  # no scene: the rounded answer is the best truth we have


def _true_coord(record: dict[str, Any]) -> tuple[float, float]:
    obj = (record.get("query") or {}).get("object")
    if obj is not None and record.get("scene"):
        n = Scene.from_dict(record["scene"]).node(str(obj))
        return n.x, n.y
    xy = parse_coord(record["answer"])
    if xy is None:
        raise ValueError(f"record answer {record['answer']!r} is not a coordinate")
    return xy


def _error_verdict(parsed: Any, error: float | None, tol: float, truth: Any) -> Verdict:
    details = {"tolerance": tol, "true": truth}
    if parsed is None or error is None:
        return Verdict("unparsable", 0.0, None, None, details)
    ok = error <= tol + _EPS
    return Verdict("correct" if ok else "wrong", float(ok), parsed, error, details)


@SCORERS.register("number")
def score_number(record: dict[str, Any], text: str) -> Verdict:
    """An absolute distance: the error against the unrounded scene distance, within the tolerance.

    >>> rec = {"answer": "5.0", "query": {"pair": ["N1", "N2"]}, "scene": {"frame": 10, "nodes": [
    ...     {"label": "N1", "x": 1.0, "y": 1.0}, {"label": "N2", "x": 4.0, "y": 5.0}]}}
    >>> v = score_number(rec, "approximately 5.2 units")
    >>> v.outcome, round(v.error, 3), score_number(rec, "5.3").outcome
    ('correct', 0.2, 'wrong')
    """
    truth = _true_distance(record)
    value = parse_number(text)
    error = None if value is None else abs(value - truth)
    return _error_verdict(value, error, _tolerance(record), truth)


@SCORERS.register("coord")
def score_coord(record: dict[str, Any], text: str) -> Verdict:
    """An absolute position: Euclidean error (frame units) against the unrounded scene point.

    >>> rec = {"answer": "(7.12, 9.35)", "query": {"object": "N1"}, "scene": {"frame": 10, "nodes": [
    ...     {"label": "N1", "x": 7.123, "y": 9.349}]}}
    >>> score_coord(rec, "x=7.1, y=9.3").outcome, score_coord(rec, "(9.35, 7.12)").outcome
    ('correct', 'wrong')
    """
    tx, ty = _true_coord(record)
    xy = parse_coord(text)
    error = None if xy is None else math.hypot(xy[0] - tx, xy[1] - ty)
    return _error_verdict(None if xy is None else list(xy), error, _tolerance(record), [tx, ty])


# -- descriptions -----------------------------------------------------------------------------


def _fact_key(fact: dict[str, Any]) -> tuple[Any, ...]:
    kind = fact["kind"]
    if kind in ("region", "coord"):
        return (kind, fact["object"])
    if kind == "direction":
        return (kind, frozenset((fact["from"], fact["to"])))
    if kind == "distance":
        return (kind, frozenset(fact["pair"]))
    return (kind, frozenset(frozenset(p) for p in fact["pairs"]))


def check_fact(fact: dict[str, Any], scene: Scene, ways: int = 8, tol: float = NUMBER_TOLERANCE) -> bool:
    """Whether one parsed description fact holds in ``scene``; unknown labels make it false.

    >>> from sparkle_vlm.scene import Node, Scene
    >>> s = Scene((Node("N1", 1.0, 1.0), Node("N2", 4.0, 5.0)))
    >>> check_fact({"kind": "direction", "from": "N1", "to": "N2", "value": "top right"}, s)
    True
    >>> check_fact({"kind": "distance", "pair": ["N1", "N2"], "value": 4.0}, s)
    False
    """
    try:
        kind = fact["kind"]
        if kind == "region":
            n = scene.node(fact["object"])
            return bool(geo.region(n.x, n.y) == fact["value"])
        if kind == "coord":
            n = scene.node(fact["object"])
            return math.hypot(fact["value"][0] - n.x, fact["value"][1] - n.y) <= tol + _EPS
        if kind == "direction":
            a, b = scene.node(fact["from"]), scene.node(fact["to"])
            return bool(geo.direction(a.x, a.y, b.x, b.y, ways) == fact["value"])

        def dist(pair: list[str]) -> float:
            a, b = scene.node(pair[0]), scene.node(pair[1])
            return geo.distance(a.x, a.y, b.x, b.y)

        if kind == "distance":
            return abs(dist(fact["pair"]) - fact["value"]) <= tol + _EPS
        if kind == "compare":
            d1, d2 = dist(fact["pairs"][0]), dist(fact["pairs"][1])
            return {
                ">": d1 > d2,
                "<": d1 < d2,
                "=": abs(d1 - d2) <= tol + _EPS,
                "<=": d1 <= d2,
                ">=": d1 >= d2,
                "!=": abs(d1 - d2) > tol + _EPS,
            }[fact["relation"]]
    except (KeyError, ValueError, TypeError, IndexError):
        return False
    return False


def _expected_keys(scene: Scene, query: dict[str, Any]) -> set[tuple[Any, ...]] | None:
    """The facts a complete description of this focus states (None when the record does not say)."""
    focus = query.get("focus")
    if focus not in ("all", "direction", "distance", "localization"):
        return None
    numbers = bool(query.get("numbers", True))
    labs = [n.label for n in scene.basic]
    pairs = [frozenset((labs[i], labs[j])) for i in range(len(labs)) for j in range(i + 1, len(labs))]
    keys: set[tuple[Any, ...]] = set()
    if focus in ("all", "localization"):
        keys |= {("region", x) for x in labs}
        if numbers:
            keys |= {("coord", x) for x in labs}
    if focus in ("all", "direction"):
        keys |= {("direction", p) for p in pairs}
    if focus in ("all", "distance"):
        keys |= {("compare", frozenset((p, q))) for i, p in enumerate(pairs) for q in pairs[i + 1 :]}
        if numbers:
            keys |= {("distance", p) for p in pairs}
    return keys


@SCORERS.register("description")
def score_description(record: dict[str, Any], text: str) -> Verdict:
    """A holistic description: the fraction of its stated facts that hold in the scene.

    ``correct`` only when every stated fact is right; ``unparsable`` when no fact can be read.
    Details count facts per kind and, for Sparkle-Instruct records, the coverage of the facts a
    complete description states (a short but right description still scores 1).

    >>> rec = {"query": {}, "meta": {}, "scene": {"frame": 10, "nodes": [
    ...     {"label": "N1", "x": 1.0, "y": 1.0}, {"label": "N2", "x": 4.0, "y": 5.0}]}}
    >>> v = score_description(rec, "The N1 object is at the down left. The N2 object is at the top right.")
    >>> v.outcome, v.score, v.details["facts"], v.details["correct"]
    ('wrong', 0.5, 2, 1)
    """
    scene = Scene.from_dict(record["scene"])
    meta = record.get("meta") or {}
    query = record.get("query") or {}
    ways = int(meta.get("ways", query.get("ways", 8)))
    tol = _tolerance(record)
    facts = parse_description(text, [n.label for n in scene.nodes])
    by_kind: dict[str, list[int]] = {}
    wrong: list[dict[str, Any]] = []
    n_right = 0
    for fact in facts:
        ok = check_fact(fact, scene, ways, tol)
        counts = by_kind.setdefault(fact["kind"], [0, 0])
        counts[0] += int(ok)
        counts[1] += 1
        n_right += int(ok)
        if not ok and len(wrong) < MAX_LISTED:
            wrong.append(fact)
    details: dict[str, Any] = {
        "facts": len(facts),
        "correct": n_right,
        "by_kind": {k: {"correct": c, "total": t} for k, (c, t) in sorted(by_kind.items())},
        "wrong_facts": wrong,
        "tolerance": tol,
    }
    expected = _expected_keys(scene, query)
    if expected is not None:
        stated = {_fact_key(f) for f in facts} & expected
        details["expected_facts"] = len(expected)
        details["coverage"] = len(stated) / len(expected) if expected else 1.0
    if not facts:
        return Verdict("unparsable", 0.0, None, None, details)
    frac = n_right / len(facts)
    return Verdict("correct" if n_right == len(facts) else "wrong", frac, facts, None, details)
