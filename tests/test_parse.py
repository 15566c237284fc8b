"""Answer parsers: what they read, what they refuse to read, and that they never raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkle_vlm.answers.parse import (
    MAX_CHARS,
    find_coords,
    find_directions,
    find_labels,
    find_numbers,
    find_regions,
    parse_choice,
    parse_coord,
    parse_description,
    parse_direction,
    parse_number,
    parse_pair,
    parse_region,
)
from sparkle_vlm.geometry import DIRECTIONS_4, DIRECTIONS_8, REGIONS

D8 = list(DIRECTIONS_8)  # A. top left ... E. right ... H. down right
R9 = list(REGIONS)  # A. top left ... E. center ... I. down right
PAIRS = ["N4 to N1", "N4 to N2", "N1 to N2"]
LABELS = ["N1", "N2", "N3"]

CHOICE_CASES = [
    # the requested format and its variants
    ("\\boxed{E}", D8, "E"),
    ("\\boxed{E. right}", D8, "E"),
    ("\\boxed{ E }", D8, "E"),
    ("\\boxed{(C)}", D8, "C"),
    ("\\boxed{\\text{C}}", D8, "C"),
    ("\\boxed{\\textbf{G}}", D8, "G"),
    ("\\boxed{e}", D8, "E"),  # a lone boxed lower-case letter is still a letter
    ("\\boxed{Option F}", D8, "F"),
    ("$\\boxed{H}$", D8, "H"),
    ("boxed{B}", D8, "B"),
    ("E.", D8, "E"),
    ("(E)", D8, "E"),
    ("E", D8, "E"),
    ("E)", D8, "E"),
    ("[E]", D8, "E"),
    ("E: right", D8, "E"),
    ("Answer: E", D8, "E"),
    ("answer: e", D8, "E"),
    ("**E**", D8, "E"),
    ("**E. right**", D8, "E"),
    ("The answer is E", D8, "E"),
    ("The answer is: **D**", D8, "D"),
    ("The correct option is F.", D8, "F"),
    ("The correct answer is (B) top.", D8, "B"),
    ("Option G", D8, "G"),
    ("I choose H.", D8, "H"),
    ("Final answer: C", D8, "C"),
    ("Ｅ", D8, "E"),  # full-width letter (NFKC)
    ("C) top right", D8, "C"),
    # last explicit answer wins
    ("First I thought B. The answer is G.", D8, "G"),
    ("\\boxed{A} ... on reflection \\boxed{H}", D8, "H"),
    ("Answer: B\nActually, answer: D", D8, "D"),
    ("Respond with the correct option letter in \\boxed{option}.\n\\boxed{C}", D8, "C"),
    ("Let me think.\nN2 is lower right of N1.\nH", D8, "H"),
    ("E. The N2 point is right of N1.", D8, "E"),
    ("G. Not top right at all.", D8, "G"),  # a leading letter beats option text later on
    ("I. down right, because N1 is low.", R9, "I"),
    # option text alone, including synonyms, when it names one option
    ("down right", D8, "H"),
    ("Down-Right", D8, "H"),
    ("lower right", D8, "H"),
    ("It is to the upper left.", D8, "A"),
    ("\\boxed{down right}", D8, "H"),
    ("centre", R9, "E"),
    ("The upper left corner.", R9, "A"),
    ("middle", R9, "E"),
    ("N1 and N2", PAIRS, "C"),
    ("N2 to N1", PAIRS, "C"),
    ("The shortest is N4 to N2.", PAIRS, "B"),
    ("\\boxed{N1 to N4}", PAIRS, "A"),
    ("I", R9, "I"),  # a lone "I" line is option I when there are nine options
    ("\\boxed{I}", R9, "I"),
    ("The answer is I.", R9, "I"),
    ("top left", ["top left", "top right", "down left", "down right"], "A"),
]

CHOICE_NONE_CASES = [
    ("", D8),
    ("   \n  ", D8),
    ("A point can't be placed here.", D8),  # English "A", not option A
    ("I think so.", R9),  # English "I"
    ("I am not sure", R9),
    ("The answer is A bit unclear", D8),
    ("Options: A. top left, B. top, C. top right", D8),  # an echo of the options
    ("A. top left, B. top, C. top right, D. left", D8),
    ("Respond with the correct option letter in \\boxed{option}.", D8),
    ("\\boxed{J}", D8),  # no option J
    ("J", D8),
    ("\\boxed{I}", D8),  # only eight options
    ("It is top right or down left.", D8),  # names two options
    ("top", list(DIRECTIONS_4)),  # not an option of the 4-way set
    ("\\boxed{}", D8),
    ("\\boxed{", D8),
    ("c", D8),  # a stray lower-case letter on its own line
    ("e.g. it depends", D8),
    ("Answer: the N2 point", D8),
    ("N1 and N2 or N4 and N2", PAIRS),
    ("Based on the image, it's hard to say.", D8),
    ("I. Locate N1\nII. Locate N2\nIt is hard to tell.", R9),  # an outline, not option I
    ("A. First, find N1.\nB. Then N2.", D8),
]


@pytest.mark.parametrize("text, choices, want", CHOICE_CASES)
def test_parse_choice_reads(text: str, choices: list[str], want: str) -> None:
    assert parse_choice(text, choices) == want


@pytest.mark.parametrize("text, choices", CHOICE_NONE_CASES)
def test_parse_choice_refuses(text: str, choices: list[str]) -> None:
    assert parse_choice(text, choices) is None


def test_parse_choice_without_choices_accepts_any_letter() -> None:
    assert parse_choice("\\boxed{Q}", None) == "Q"
    assert parse_choice("down right", None) is None


DIRECTION_CASES = [
    ("top right", "top right"),
    ("top", "top"),
    ("Top Right", "top right"),
    ("upper right", "top right"),
    ("up-right", "top right"),
    ("top-right", "top right"),
    ("top_right", "top right"),
    ("northeast", "top right"),
    ("north-east", "top right"),
    ("North East", "top right"),
    ("up and to the right", "top right"),
    ("right and up", "top right"),
    ("above and to the left", "top left"),
    ("northwest", "top left"),
    ("bottom left", "down left"),
    ("lower-left", "down left"),
    ("southwest", "down left"),
    ("down right", "down right"),
    ("south east", "down right"),
    ("below", "down"),
    ("beneath", "down"),
    ("downward", "down"),
    ("above", "top"),
    ("upwards", "top"),
    ("north", "top"),
    ("to the left", "left"),
    ("west", "left"),
    ("rightward", "right"),
    ("east", "right"),
    ("The direction is top right.", "top right"),
    ("It is not top, it is down.", "down"),  # last mention without an explicit answer
    ("The answer is lower left, since N2 is below N1.", "down left"),  # first after the marker
    ("\\boxed{right} although it looked top", "right"),
    ("**top left**", "top left"),
    ("TOP RIGHT", "top right"),
    ("N2 is up and to the left of N1", "top left"),
    ("―left―", "left"),  # odd dashes
]

DIRECTION_NONE = ["", "upright", "downright", "leftmost", "center", "no idea", "N1 N2", "topright", "tops"]


@pytest.mark.parametrize("text, want", DIRECTION_CASES)
def test_parse_direction(text: str, want: str) -> None:
    assert parse_direction(text) == want


@pytest.mark.parametrize("text", DIRECTION_NONE)
def test_parse_direction_none(text: str) -> None:
    assert parse_direction(text) is None


REGION_CASES = [
    ("center", "center"),
    ("centre", "center"),
    ("middle", "center"),
    ("the middle center", "center"),
    ("upper left", "top left"),
    ("top-left corner", "top left"),
    ("up right", "top right"),
    ("northeast", "top right"),
    ("top center", "top"),
    ("upper middle", "top"),
    ("top", "top"),
    ("middle left", "left"),
    ("center-left", "left"),
    ("left", "left"),
    ("middle right", "right"),
    ("right side", "right"),
    ("bottom", "down"),
    ("down center", "down"),  # upstream's old 9-way label
    ("bottom right", "down right"),
    ("lower left", "down left"),
    ("The N1 object is located at the down right of the image.", "down right"),
    ("\\boxed{center}", "center"),
]

REGION_NONE = ["", "above", "below", "somewhere", "N1", "up"]


@pytest.mark.parametrize("text, want", REGION_CASES)
def test_parse_region(text: str, want: str) -> None:
    assert parse_region(text) == want


@pytest.mark.parametrize("text", REGION_NONE)
def test_parse_region_none(text: str) -> None:
    assert parse_region(text) is None


NUMBER_CASES = [
    ("4.37", 4.37),
    ("8.1", 8.1),
    ("8.10", 8.1),
    ("5", 5.0),
    (".5", 0.5),
    ("approximately 4.4 units", 4.4),
    ("The distance is 4.37.", 4.37),
    ("The distance between the N1 and N2 objects is 4.37", 4.37),
    ("4.37 between N1 and N2", 4.37),  # label digits are not numbers
    ("In a 10x10 image the distance is 3.2", 3.2),
    ("3.2 (10 by 10 frame)", 3.2),
    ("sqrt(18) ≈ 4.24", 4.24),  # the last number
    ("\\boxed{4.2} but maybe 5", 4.2),  # the box wins
    ("The answer is 4.2, i.e. about 4", 4.2),
    ("-1.5", -1.5),
    ("1e1", 10.0),
    ("４.３７", 4.37),  # full-width digits
]

NUMBER_NONE = ["", "far", "N1 and N2", "10x10", "inf", "nan", "∞", "four point four"]


@pytest.mark.parametrize("text, want", NUMBER_CASES)
def test_parse_number(text: str, want: float) -> None:
    assert parse_number(text) == pytest.approx(want)


@pytest.mark.parametrize("text", NUMBER_NONE)
def test_parse_number_none(text: str) -> None:
    assert parse_number(text) is None


COORD_CASES = [
    ("(7.12, 9.35)", (7.12, 9.35)),
    ("(7.9,6.35)", (7.9, 6.35)),
    ("x=7.1, y=9.3", (7.1, 9.3)),
    ("X = 1.5 and Y = 2", (1.5, 2.0)),
    ("x: 7.1 y: 9.3", (7.1, 9.3)),
    ("[7.1, 9.3]", (7.1, 9.3)),
    ("7.1, 9.3", (7.1, 9.3)),
    ("The coordinate of the N1 object is (7.12, 9.35).", (7.12, 9.35)),
    ("It is at (1, 2). No wait, (3, 4).", (3.0, 4.0)),
    ("\\boxed{(1, 2)} then (3, 4)", (1.0, 2.0)),
    ("N3 is at 2, 3 or rather (4.5, 6.5)", (4.5, 6.5)),  # bracketed beats bare
    ("（7.12，9.35）", (7.12, 9.35)),  # full-width brackets and comma
]

COORD_NONE = ["", "top left", "N1, N2", "(N1, N2)", "1 2", "7.12", "(7.12; )"]


@pytest.mark.parametrize("text, want", COORD_CASES)
def test_parse_coord(text: str, want: tuple[float, float]) -> None:
    assert parse_coord(text) == pytest.approx(want)


@pytest.mark.parametrize("text", COORD_NONE)
def test_parse_coord_none(text: str) -> None:
    assert parse_coord(text) is None


PAIR_CASES = [
    ("N2 and N3", ("N2", "N3")),
    ("N3 to N2", ("N2", "N3")),
    ("N2-N3", ("N2", "N3")),
    ("N2–N3", ("N2", "N3")),
    ("N2 & N3", ("N2", "N3")),
    ("(N2, N3)", ("N2", "N3")),
    ("N3/N1", ("N1", "N3")),
    ("n2 and n3", ("N2", "N3")),
    ("between the N2 and N3 objects", ("N2", "N3")),
    ("the N1 object and the N3 object", ("N1", "N3")),
    ("The answer is N1 and N3, shorter than N2 to N3.", ("N1", "N3")),
    ("N1 to N2 is 3.1 and N2 to N3 is 2.0, so N2 to N3", ("N2", "N3")),  # last pair
    ("N3 ... N1", ("N1", "N3")),  # exactly two labels named
]

PAIR_NONE = ["", "N1", "N1 N2 N3", "N2 and N2", "N12 and N3", "N4 and N5", "the short one"]


@pytest.mark.parametrize("text, want", PAIR_CASES)
def test_parse_pair(text: str, want: tuple[str, str]) -> None:
    assert parse_pair(text, LABELS) == want


@pytest.mark.parametrize("text", PAIR_NONE)
def test_parse_pair_none(text: str) -> None:
    assert parse_pair(text, LABELS) is None


def test_finders_report_positions() -> None:
    text = "N2 is top right of N1 at (3.0, 4.5), 2.5 apart"
    assert [d for *_, d in find_directions(text)] == ["top right"]
    assert [r for *_, r in find_regions(text)] == ["top right"]
    assert [(s, lab) for s, _, lab in find_labels(text, LABELS)] == [(0, "N2"), (19, "N1")]
    assert [c for *_, c in find_coords(text)] == [(3.0, 4.5)]
    assert [v for *_, v in find_numbers(text)] == [3.0, 4.5, 2.5]


def test_parse_description_reads_negations_and_free_forms() -> None:
    text = (
        "N1 is at the top left, N2 is at the center and N3 at the bottom right. "
        "N2 is above N3; the distance from N1 to N2 is not longer than the distance from N2 to N3. "
        "N1 and N3 are about 7.5 apart."
    )
    facts = parse_description(text, LABELS)
    assert {"kind": "region", "object": "N1", "value": "top left"} in facts
    assert {"kind": "region", "object": "N2", "value": "center"} in facts
    assert {"kind": "region", "object": "N3", "value": "down right"} in facts
    assert {"kind": "direction", "from": "N3", "to": "N2", "value": "top"} in facts
    assert {"kind": "compare", "pairs": [["N1", "N2"], ["N2", "N3"]], "relation": "<="} in facts
    assert {"kind": "distance", "pair": ["N1", "N3"], "value": 7.5} in facts
    assert len(facts) == 6


def test_parse_description_merges_axes_within_a_clause() -> None:
    facts = parse_description(
        "N2 is to the right of N1 and below it. N3 is in the upper part, on the left.", LABELS
    )
    assert facts == [
        {"kind": "direction", "from": "N1", "to": "N2", "value": "down right"},
        {"kind": "region", "object": "N3", "value": "top left"},
    ]


def test_parse_description_skips_directions_without_a_reference() -> None:
    assert parse_description("N1 and N2 point top right.", LABELS) == [
        {"kind": "region", "object": "N2", "value": "top right"}
    ]
    assert parse_description("Nothing to see here.", LABELS) == []


# -- robustness ---------------------------------------------------------------------------------

JUNK: list[Any] = [
    None,
    42,
    4.2,
    b"\\boxed{E}",
    ["E"],
    {"answer": "E"},
    "",
    "\x00\x01\x02",
    "\\boxed{" * 5000,
    "{" * 10_000 + "}" * 10_000,
    "(" * 50_000,
    "N1" * 30_000,
    "1." * 40_000,
    "x=" * 20_000,
    "top " * 50_000,
    "A. " * 30_000,
    "**" * 30_000,
    "🙂" * 10_000,
    "İ" * 5000 + " top right N1 (1, 2)",  # lower() grows this character
    "\u200b\u200d\ufeff",
    "ﬁ" * 1000,
    "\ud800",  # a lone surrogate
    "٤.٣٧",  # Arabic-Indic digits
    "answer is " * 10_000,
    "\\boxed{\\boxed{\\boxed{E}}}",
    "nan, inf",
    "1e999",
    "9" * 5000,
]
PARSERS = [
    lambda t: parse_choice(t, D8),
    lambda t: parse_choice(t, PAIRS),
    lambda t: parse_choice(t, None),
    parse_direction,
    parse_region,
    parse_number,
    parse_coord,
    lambda t: parse_pair(t, LABELS),
    lambda t: parse_pair(t, None),
    lambda t: parse_description(t, LABELS),
    find_directions,
    find_regions,
    find_numbers,
    find_coords,
    lambda t: find_labels(t, LABELS),
]


@pytest.mark.parametrize("junk", JUNK, ids=[f"junk{i}" for i in range(len(JUNK))])
def test_parsers_never_raise_on_junk(junk: Any) -> None:
    for parser in PARSERS:
        out = parser(junk)
        assert out is None or isinstance(out, str | float | tuple | list)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_raise_on_random_text(text: str) -> None:
    for parser in PARSERS:
        parser(text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "\\boxed{",
                "}",
                "E",
                "A",
                " ",
                "(",
                ")",
                "N1",
                "and",
                "top",
                "4.2",
                ",",
                "\n",
                "**",
                "answer is",
                "x=",
                "y=",
            ]
        ),
        max_size=60,
    )
)
def test_parsers_never_raise_on_answer_like_noise(parts: list[str]) -> None:
    text = "".join(parts)
    for parser in PARSERS:
        parser(text)


def test_huge_inputs_are_clipped_not_ignored() -> None:
    padding = "blah " * (MAX_CHARS // 2)
    assert parse_choice(padding + "\\boxed{G}", D8) == "G"  # the tail is kept for answers
    assert parse_number(padding + "4.37") == 4.37
    assert parse_choice("\\boxed{G}" + padding, D8) is None  # an answer buried at the head is dropped


def test_non_string_choices_are_tolerated() -> None:
    assert parse_choice("\\boxed{B}", [1, 2, 3]) == "B"  # type: ignore[list-item]
    assert parse_choice("B", ()) == "B"
