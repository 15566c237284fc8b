"""Read a Python-list answer (grid moves or node labels) out of untrusted model text.

Rules (all parsers return None instead of raising):

- Candidates are the innermost bracketed lists ``[...]`` of the text that are not nested inside
  another list. The **last** candidate that reads completely as the wanted kind wins, so
  reasoning that quotes other lists before the final answer is fine. A list of bare numbers
  (``[1]``, a footnote or a citation) only counts when no list with moves or ``N``-prefixed
  labels exists, so ``... [N1, N2, N3]. See [1]`` still reads as ``['N1', 'N2', 'N3']``.
- Items are split on commas and stripped of spaces, quotes (``' " `` and typographic ones),
  backticks and a trailing full stop. Moves are case-insensitive ``up/down/left/right``;
  labels are ``N<k>``, ``n<k>``, ``N <k>`` or a bare ``<k>`` and come back as ``"N<k>"``.
- Without any bracketed list, the last non-empty line (after the last colon, code fences and
  a trailing full stop removed) is tried as a list separated by commas, ``->`` or ``→``.
- An empty list ``[]`` reads as an empty answer of the wanted kind (a wrong answer, not an
  unreadable one).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LIST = re.compile(r"\[([^\[\]]*)\]")
_LABEL = re.compile(r"[nN]?\s*(\d{1,6})")
_ARROWS = re.compile(r"\s*(?:->|→|=>|,|;)\s*")
_STRIP = " \t\r\n'\"`‘’“”"
_MOVES = {"up": "up", "down": "down", "left": "left", "right": "right"}

KINDS = ("moves", "labels")


class ParsedList(NamedTuple):
    """A list read from model text: its ``kind`` ("moves" or "labels") and normalised ``items``."""

    kind: str
    items: list[str]


def _clean(item: str) -> str:
    item = item.strip(_STRIP)
    if item.endswith("."):
        item = item[:-1].strip(_STRIP)
    return item


def read_moves(items: list[str]) -> list[str] | None:
    """Normalise raw list items as moves, or None if any item is not a move.

    >>> read_moves(["'Up'", ' "RIGHT" ', "left."])
    ['up', 'right', 'left']
    >>> read_moves(["up", "N3"]) is None
    True
    """
    out = []
    for raw in items:
        m = _MOVES.get(_clean(raw).lower())
        if m is None:
            return None
        out.append(m)
    return out


def read_labels(items: list[str]) -> list[str] | None:
    """Normalise raw list items as node labels ``N<k>``, or None if any item is not a label.

    >>> read_labels(["'N3'", "n12", "7", '"N 4"'])
    ['N3', 'N12', 'N7', 'N4']
    >>> read_labels(["N3", "up"]) is None
    True
    """
    out = []
    for raw in items:
        m = _LABEL.fullmatch(_clean(raw))
        if m is None:
            return None
        out.append(f"N{int(m.group(1))}")
    return out


def _read(content: str, kinds: tuple[str, ...]) -> tuple[ParsedList | None, bool]:
    """The list read from one candidate and whether it is strong (not only bare numbers)."""
    stripped = content.strip()
    if not stripped:
        return ParsedList(kinds[0], []), False
    items = stripped.split(",")
    if items[-1].strip(_STRIP) == "":  # a trailing comma, as in Python
        items.pop()
    return _read_items(items, kinds)


def _read_items(items: list[str], kinds: tuple[str, ...]) -> tuple[ParsedList | None, bool]:
    for kind in kinds:
        if kind == "moves":
            moves = read_moves(items)
            if moves is not None:
                return ParsedList(kind, moves), True
        else:
            labels = read_labels(items)
            if labels is not None:
                strong = any(_clean(raw)[:1] in ("n", "N") for raw in items)
                return ParsedList(kind, labels), strong
    return None, False


def list_candidates(text: str) -> list[str]:
    """Contents of the top-level innermost ``[...]`` lists of ``text``, in order of appearance.

    >>> list_candidates("try [1, 2] then [[0, 1], [2]] and finally ['up']")
    ['1, 2', "'up'"]
    """
    out = []
    for m in _LIST.finditer(text):
        s = m.start()
        # Lists nested in an outer list (coordinates like [[0, 1], [1, 1]]) are not answers.
        if text.count("[", 0, s) > text.count("]", 0, s):
            continue
        out.append(m.group(1))
    return out


def parse_list(text: object, kinds: tuple[str, ...] = KINDS) -> ParsedList | None:
    """The answer list of model output ``text``: the last list that reads as one of ``kinds``.

    Never raises; returns None when no list can be read.

    >>> parse_list("Path: ['up', 'Right'] done.")
    ParsedList(kind='moves', items=['up', 'right'])
    >>> parse_list('```python\\n["n1", "N2", 6]\\n```')
    ParsedList(kind='labels', items=['N1', 'N2', 'N6'])
    >>> parse_list("neighbours [N2, N5] ... final answer: [N1, N2, N3]. See [1].", ("labels",))
    ParsedList(kind='labels', items=['N1', 'N2', 'N3'])
    >>> parse_list("N1 -> N2 -> N6", ("labels",))
    ParsedList(kind='labels', items=['N1', 'N2', 'N6'])
    >>> parse_list("I cannot tell.") is None
    True
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        if "[" in text:
            weak: ParsedList | None = None
            for content in reversed(list_candidates(text)):
                got, strong = _read(content, kinds)
                if got is not None:
                    if strong:
                        return got
                    if weak is None:
                        weak = got
            return weak
        return _read_bare(text, kinds)
    except Exception:  # untrusted input must never crash an evaluation
        return None


def _read_bare(text: str, kinds: tuple[str, ...]) -> ParsedList | None:
    lines = [ln.strip() for ln in text.replace("```", "\n").splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(("python", "json"))]
    if not lines:
        return None
    line = lines[-1].rsplit(":", 1)[-1].strip().rstrip(".")
    items = [p for p in _ARROWS.split(line) if p.strip()]
    if not items:
        return None
    return _read_items(items, kinds)[0]
