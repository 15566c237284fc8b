"""Scorers of the basic answer types: correct / wrong / unparsable, tolerances, descriptions."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sparkle_vlm.answers import basic
from sparkle_vlm.answers.basic import NUMBER_TOLERANCE, check_fact
from sparkle_vlm.answers.verify import SCORERS
from sparkle_vlm.geometry import DIRECTIONS_8, REGIONS
from sparkle_vlm.scene import Node, Scene

# N1 at (1, 1), N2 at (4, 5): distance exactly 5, direction N1 -> N2 "top right".
# N3 at (8, 2): N1-N3 = sqrt(50) ~ 7.07, N2-N3 = 5.0. N4 is a distractor.
SCENE = Scene(
    (Node("N1", 1.0, 1.0), Node("N2", 4.0, 5.0), Node("N3", 8.0, 2.0), Node("N4", 5.0, 8.5, "distractor"))
).to_dict()


def rec(answer_type: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {"answer_type": answer_type, "answer": answer, "scene": SCENE, "query": {}, "meta": {}, **extra}


def run(record: dict[str, Any], text: Any):
    return SCORERS.get(record["answer_type"])(record, text)


def test_all_basic_answer_types_are_registered() -> None:
    for t in ("mcq", "direction", "region", "pair", "number", "coord", "description"):
        assert t in SCORERS
    assert basic.NUMBER_TOLERANCE == 0.25


MCQ = rec("mcq", "C", choices=list(DIRECTIONS_8))
LABEL_CASES = [
    # (record, model text, outcome)
    (MCQ, "\\boxed{C}", "correct"),
    (MCQ, "C. top right", "correct"),
    (MCQ, "upper right", "correct"),
    (MCQ, "\\boxed{D}", "wrong"),
    (MCQ, "The answer is A.", "wrong"),
    (MCQ, "A point is hard to place.", "unparsable"),
    (MCQ, "", "unparsable"),
    (rec("direction", "top right"), "top right", "correct"),
    (rec("direction", "top right"), "north-east", "correct"),
    (rec("direction", "top right"), "top", "wrong"),  # "top" is a different label, not a prefix match
    (rec("direction", "top"), "top right", "wrong"),
    (rec("direction", "down"), "below", "correct"),
    (rec("direction", "down"), "hmm", "unparsable"),
    (rec("region", "center"), "centre", "correct"),
    (rec("region", "top left"), "upper-left corner", "correct"),
    (rec("region", "top left"), "top", "wrong"),
    (rec("region", "left"), "middle left", "correct"),
    (rec("region", "left"), "no idea", "unparsable"),
    (rec("pair", "N1 and N2"), "N2 and N1", "correct"),
    (rec("pair", "N1 and N2"), "N1-N2", "correct"),
    (rec("pair", "N1 and N2"), "N2 to N3", "wrong"),
    (rec("pair", "N1 and N2"), "N1 and N4", "wrong"),  # a distractor is a label too
    (rec("pair", "N1 and N2"), "N1", "unparsable"),
]


@pytest.mark.parametrize("record, text, outcome", LABEL_CASES)
def test_label_scorers(record: dict[str, Any], text: str, outcome: str) -> None:
    v = run(record, text)
    assert v.outcome == outcome
    assert v.score == (1.0 if outcome == "correct" else 0.0)
    assert (v.parsed is None) == (outcome == "unparsable")
    json.dumps(v.to_dict())


def test_mcq_wrong_and_unparsable_are_distinct() -> None:
    wrong, unparsable = run(MCQ, "B"), run(MCQ, "???")
    assert (wrong.outcome, wrong.parsed) == ("wrong", "B")
    assert (unparsable.outcome, unparsable.parsed) == ("unparsable", None)


def test_region_mcq_on_nine_options() -> None:
    r = rec("mcq", "I", choices=list(REGIONS))
    assert run(r, "I").correct
    assert run(r, "I think it's bottom right.").correct  # the option text, not the pronoun
    assert run(r, "I think so.").outcome == "unparsable"


NUMBER = rec("number", "5.0", query={"pair": ["N1", "N2"]})
NUMBER_CASES = [
    ("5", "correct", 0.0),
    ("5.0", "correct", 0.0),
    ("about 5.2 units", "correct", 0.2),
    ("5.25", "correct", 0.25),  # the tolerance is inclusive
    ("4.75", "correct", 0.25),
    ("5.26", "wrong", 0.26),
    ("4.7", "wrong", 0.3),
    ("7.07", "wrong", 2.07),
    ("The distance between N1 and N2 in the 10x10 image is 5.1", "correct", 0.1),
]


@pytest.mark.parametrize("text, outcome, error", NUMBER_CASES)
def test_number_error_against_the_scene(text: str, outcome: str, error: float) -> None:
    v = run(NUMBER, text)
    assert v.outcome == outcome
    assert v.error == pytest.approx(error)
    assert v.details["tolerance"] == NUMBER_TOLERANCE and v.details["true"] == 5.0


def test_number_uses_the_unrounded_truth_not_the_answer_text() -> None:
    r = rec("number", "7.07", query={"pair": ["N1", "N3"]})  # true value sqrt(50) = 7.0710678...
    v = run(r, "7.07")
    assert v.error == pytest.approx(math.sqrt(50) - 7.07)
    # and the upstream "8.1" style or fixed "8.10" give the same verdict
    r2 = rec("number", "5.0", query={"pair": ["N2", "N3"]})
    assert run(r2, "5.0").error == run(r2, "5.00").error == 0.0


def test_number_tolerance_override_and_unparsable() -> None:
    strict = {**NUMBER, "meta": {"tolerance": 0.05}}
    v = run(strict, "5.1")
    assert v.outcome == "wrong" and v.details["tolerance"] == 0.05
    u = run(NUMBER, "far away")
    assert u.outcome == "unparsable" and u.error is None and u.score == 0.0


COORD = rec("coord", "(4.0, 5.0)", query={"object": "N2"})
COORD_CASES = [
    ("(4.0, 5.0)", "correct", 0.0),
    ("(4, 5)", "correct", 0.0),
    ("x=4.1, y=5.1", "correct", math.hypot(0.1, 0.1)),
    ("(4.15, 5.2)", "correct", math.hypot(0.15, 0.2)),  # 0.25 on paper, a hair more in floats
    ("(4.0, 5.25)", "correct", 0.25),
    ("(4.2, 5.2)", "wrong", math.hypot(0.2, 0.2)),  # 0.28: each axis within 0.25, but not the distance
    ("(5.0, 4.0)", "wrong", math.hypot(1.0, 1.0)),  # swapped axes
]


@pytest.mark.parametrize("text, outcome, error", COORD_CASES)
def test_coord_euclidean_error(text: str, outcome: str, error: float) -> None:
    v = run(COORD, text)
    assert v.outcome == outcome
    assert v.error == pytest.approx(error)
    assert v.details["tolerance"] == NUMBER_TOLERANCE


def test_coord_unparsable() -> None:
    assert run(COORD, "top left").outcome == "unparsable"


def test_scorers_accept_non_string_text() -> None:
    from sparkle_vlm.answers.verify import score

    for r in (MCQ, NUMBER, COORD, rec("direction", "top"), rec("pair", "N1 and N2")):
        assert score(r, None).outcome == "unparsable"
    assert score(NUMBER, 5).outcome == "correct"  # score() turns numbers into text


# -- descriptions -------------------------------------------------------------------------------

TRUE_DESCRIPTION = (
    "Here's a breakdown of the spatial relationships between the objects in the image:\n\n"
    "Positions:\n"
    "The N1 object is at the down left of the image.\n"
    "The N2 object is at the center of the image.\n"
    "The coordinate of the N1 object is (1.00, 1.00).\n"
    "Directions:\n"
    "You can reach the N2 object by going top right from the N1 object.\n"
    "Starting at the N2 object, head down right to find the N3 object.\n\n"
    "Comparing distances:\n"
    "The distance from N1 to N3 is longer than the distance from N1 to N2.\n"
    "The distance from N1 to N2 is the same as the distance from N2 to N3.\n"
    "The distance between the N1 and N3 objects is 7.07."
)
DESC = rec("description", TRUE_DESCRIPTION)


def test_true_description_scores_one() -> None:
    v = run(DESC, TRUE_DESCRIPTION)
    assert v.outcome == "correct" and v.score == 1.0
    assert v.details["facts"] == 8 and v.details["correct"] == 8
    assert v.details["by_kind"] == {
        "compare": {"correct": 2, "total": 2},
        "coord": {"correct": 1, "total": 1},
        "direction": {"correct": 2, "total": 2},
        "distance": {"correct": 1, "total": 1},
        "region": {"correct": 2, "total": 2},
    }
    json.dumps(v.to_dict())


@pytest.mark.parametrize(
    "old, new, kind",
    [
        ("at the down left of", "at the top left of", "region"),
        ("(1.00, 1.00)", "(1.50, 1.50)", "coord"),
        ("going top right from", "going top from", "direction"),
        ("N1 to N3 is longer", "N1 to N3 is shorter", "compare"),
        ("objects is 7.07", "objects is 6.5", "distance"),
    ],
)
def test_one_wrong_fact_costs_its_share(old: str, new: str, kind: str) -> None:
    text = TRUE_DESCRIPTION.replace(old, new)
    assert text != TRUE_DESCRIPTION
    v = run(DESC, text)
    assert v.outcome == "wrong"
    assert v.score == pytest.approx(7 / 8)
    assert v.details["by_kind"][kind]["correct"] == v.details["by_kind"][kind]["total"] - 1
    assert [f["kind"] for f in v.details["wrong_facts"]] == [kind]


def test_description_reversed_direction_sentence_is_checked_from_its_reference() -> None:
    v = run(DESC, "From the N2 object, you can go down left to reach the N1 object.")
    assert v.outcome == "correct"
    v = run(DESC, "N1 is down left of N2.")
    assert v.outcome == "correct"
    v = run(DESC, "N1 is top right of N2.")
    assert v.outcome == "wrong"


def test_description_without_facts_is_unparsable() -> None:
    v = run(DESC, "The image shows some grey circles.")
    assert v.outcome == "unparsable" and v.score == 0.0 and v.details["facts"] == 0


def test_description_unknown_label_is_wrong() -> None:
    v = run(DESC, "The N9 object is at the center.")  # N9 is not in the scene: not even read
    assert v.outcome == "unparsable"
    assert not check_fact({"kind": "region", "object": "N9", "value": "center"}, Scene.from_dict(SCENE))


def test_description_coverage_for_instruct_records() -> None:
    r = {**DESC, "query": {"focus": "all", "numbers": True}}
    v = run(r, TRUE_DESCRIPTION)
    # 3 regions + 3 coords + 3 directions + 3 comparisons + 3 distances (basic objects only)
    assert v.details["expected_facts"] == 15
    assert v.details["coverage"] == pytest.approx(8 / 15)


@pytest.mark.parametrize(
    "relation, holds",
    [(">", False), ("<", False), ("=", True), ("<=", True), (">=", True), ("!=", False)],
)
def test_compare_relations(relation: str, holds: bool) -> None:
    # N1-N2 = 5.0 and N2-N3 = 5.0: equal
    fact = {"kind": "compare", "pairs": [["N1", "N2"], ["N2", "N3"]], "relation": relation}
    assert check_fact(fact, Scene.from_dict(SCENE)) is holds


def test_check_fact_on_malformed_facts_is_false() -> None:
    s = Scene.from_dict(SCENE)
    for fact in ({}, {"kind": "coord", "object": "N1"}, {"kind": "compare", "pairs": [], "relation": ">"},
                 {"kind": "teleport"}, {"kind": "direction", "from": "N1", "to": "N1", "value": "top"}):  # fmt: skip
        assert check_fact(fact, s) is False
