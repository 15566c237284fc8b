"""Read answers out of untrusted model text (basic tasks).

Every public function is pure and never raises: text that cannot be read gives ``None`` (or an
empty list), which scorers count as *unparsable*, apart from wrong answers. Non-string input is
unparsable too.

Where several answers appear, explicit ones win, latest first: ``\\boxed{...}``, then answer
markers ("The answer is ...", "Answer: ...", "the correct option is ...", "I choose ..."), then
``**bold**``. Inside such a fragment the first answer counts (the words after "answer is" are the
answer, the rest is justification). Without any explicit answer, label parsers take the last
mention in the text, the usual "final answer comes last" convention; ``parse_choice`` is stricter
and only reads bare option text when it names exactly one option.

Labels are matched longest first, so "top right" is never read as "top", and "upper-left",
"north-east", "up and to the right" map to canonical labels. Very long inputs are clipped to
:data:`MAX_CHARS` (the tail for answers, the head for descriptions) so that parsing stays fast.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from sparkle_vlm.geometry import DIRECTIONS_8, REGIONS

#: Longest text a parser reads; answers keep the tail, descriptions the head.
MAX_CHARS = 20_000
#: Longest fragment read after an answer marker or inside a box.
FRAGMENT_CHARS = 200

# -- normalisation ----------------------------------------------------------------------------

_TRANSLATE: dict[int, str | None] = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff"}
_TRANSLATE.update({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"})
# "top_right", "_top right_" (markdown italics): underscores never carry meaning in answers.
_TRANSLATE[ord("_")] = " "


def _prepare(value: Any, keep: str = "tail") -> str | None:
    """Clip, NFKC-normalise (full-width letters, subscript digits) and unify dashes."""
    if not isinstance(value, str):
        return None
    if len(value) > MAX_CHARS:
        value = value[-MAX_CHARS:] if keep == "tail" else value[:MAX_CHARS]
    return unicodedata.normalize("NFKC", value).translate(_TRANSLATE)


# -- label phrase tables ----------------------------------------------------------------------


def _phrase_finder(table: dict[str, str]) -> re.Pattern[str]:
    # Sorted longest first: Python tries alternatives in order, so the longest phrase wins at
    # each position ("top right" before "top").
    alts = sorted(table, key=len, reverse=True)
    body = "|".join(re.escape(p).replace(r"\ ", "[ \t]+") for p in alts)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")


def _direction_table() -> dict[str, str]:
    up = ("top", "up", "upper", "above", "north", "upward", "upwards")
    down = ("down", "bottom", "lower", "below", "beneath", "south", "downward", "downwards")
    left = ("left", "west", "leftward", "leftwards")
    right = ("right", "east", "rightward", "rightwards")
    t: dict[str, str] = {}
    for vwords, v in ((up, "top"), (down, "down")):
        t.update(dict.fromkeys(vwords, v))
        for hwords, h in ((left, "left"), (right, "right")):
            t.update(dict.fromkeys(hwords, h))
            for vw in vwords:
                for hw in hwords:
                    for sep in (" ", "-", " and ", " and to the ", " & "):
                        t[vw + sep + hw] = f"{v} {h}"
                    for sep in ("-", " and "):  # "right and up", "left-down"
                        t[hw + sep + vw] = f"{v} {h}"
    # Fused compass words only: fusing all words would read "upright"/"downright" as directions.
    t.update(northeast="top right", northwest="top left", southeast="down right", southwest="down left")
    return t


def _region_table() -> dict[str, str]:
    top = ("top", "upper", "north")
    up = ("up",)  # "up right" is a corner; a lone "up" is not a place
    down = ("down", "bottom", "lower", "south")
    left = ("left", "west")
    right = ("right", "east")
    center = ("center", "centre", "middle", "central")
    seps = (" ", "-")
    t: dict[str, str] = dict.fromkeys(center, "center")
    for c1 in center:
        for c2 in center:
            for sep in seps:
                t[c1 + sep + c2] = "center"
    for vwords, v in ((top, "top"), (down, "down")):
        t.update(dict.fromkeys(vwords, v))
        for vw in vwords:
            for c in center:
                for sep in seps:  # "top center", "middle-top", upstream's old "down center"
                    t[vw + sep + c] = v
                    t[c + sep + vw] = v
        for hwords, h in ((left, "left"), (right, "right")):
            t.update(dict.fromkeys(hwords, h))
            for hw in hwords:
                for c in center:
                    for sep in seps:  # "middle left", "left-center"
                        t[c + sep + hw] = h
                        t[hw + sep + c] = h
                for vw in vwords + (up if v == "top" else ()):
                    for sep in seps:
                        t[vw + sep + hw] = f"{v} {h}"
                        t[hw + sep + vw] = f"{v} {h}"
    t.update(northeast="top right", northwest="top left", southeast="down right", southwest="down left")
    return t


_DIRECTIONS = _direction_table()
_DIRECTION_RE = _phrase_finder(_DIRECTIONS)
_REGIONS = _region_table()
_REGION_RE = _phrase_finder(_REGIONS)


def _find_phrases(text: str, pattern: re.Pattern[str], table: dict[str, str]) -> list[tuple[int, int, str]]:
    out = []
    for m in pattern.finditer(_lower(text)):
        out.append((m.start(), m.end(), table[re.sub(r"[ \t]+", " ", m.group(0))]))
    return out


def find_directions(text: Any) -> list[tuple[int, int, str]]:
    """Every direction phrase in ``text`` as ``(start, end, canonical label)``, left to right.

    >>> [d for _, _, d in find_directions("up and to the right, then north-west, then below")]
    ['top right', 'top left', 'down']
    """
    try:
        t = _prepare(text)
        return [] if t is None else _find_phrases(t, _DIRECTION_RE, _DIRECTIONS)
    except Exception:
        return []


def find_regions(text: Any) -> list[tuple[int, int, str]]:
    """Every 3 x 3 region phrase in ``text`` as ``(start, end, canonical label)``.

    >>> [r for _, _, r in find_regions("the upper-left corner, the centre, the middle right")]
    ['top left', 'center', 'right']
    """
    try:
        t = _prepare(text)
        return [] if t is None else _find_phrases(t, _REGION_RE, _REGIONS)
    except Exception:
        return []


# -- explicit answer fragments ----------------------------------------------------------------

_BOXED_RE = re.compile(r"(?:\\|\b)(?:boxed|fbox)\s*\{")
_MARKER_RE = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is|:|=|would\s+be|should\s+be|will\s+be)\s*"
    r"|\banswer\s+(?=[(\[]?[a-z]\b)"
    r"|\b(?:correct|right|best)\s+(?:option|choice)\s*(?:is|:|=)?\s*"
    r"|\b(?:option|choice)\b\s*(?:is|:|=)?\s*(?=[(\[]?[a-z]\b)"
    r"|\bI\s+(?:would\s+|will\s+)?(?:choose|chose|select|pick|go\s+with)\s*",
    re.IGNORECASE,
)
_BOLD_RE = re.compile(r"\*\*([^*\n]{1,80})\*\*")


def _boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (nested braces allowed), in order."""
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, i, limit = 1, m.end(), min(len(text), m.end() + FRAGMENT_CHARS)
        while i < limit and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _fragments(text: str) -> list[tuple[str, str]]:
    """Explicit answers as (kind, text), most trusted first: boxes, then markers, then bold."""
    frags = [("boxed", b) for b in reversed(_boxed(text))]
    for m in reversed(list(_MARKER_RE.finditer(text))):
        frags.append(("marker", text[m.end() : m.end() + FRAGMENT_CHARS].split("\n", 1)[0]))
    frags += [("marker", m.group(1)) for m in reversed(list(_BOLD_RE.finditer(text)))]
    return frags


def _lower(text: str) -> str:
    """Lower case that keeps every index in place (a few characters grow under ``str.lower``)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


_LATEX_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|emph)\s*\{|\\[()\[\]]")
_LEAD_WORDS_RE = re.compile(
    r"^(?:(?:the|my)\s+)?(?:(?:correct|right|best|final)\s+)?(?:answer|option|choice|letter)\b\s*(?:is\b|:|=)?\s*",
    re.IGNORECASE,
)
_STRIP = " \t\r\n*_`'\"$"


def _clean(fragment: str) -> str:
    f = _LATEX_RE.sub(" ", fragment).replace("{", " ").replace("}", " ").strip(_STRIP)
    for _ in range(2):  # "the answer is: option E"
        f = _LEAD_WORDS_RE.sub("", f).strip(_STRIP)
    return f


# -- multiple choice --------------------------------------------------------------------------

_LETTER_RE = re.compile(r"\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])(?![A-Za-z0-9'])")
_DELIM_RE = re.compile(r"\s*[.:),;!\]]")
_ECHO_RE = re.compile(r"(?<![A-Za-z])([A-Z])[.)]\s")


def _norm_phrase(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower().replace("-", " ")).strip(" .,;:!?*_`'\"()")


def _starts_with_choice(rest: str, choices: Sequence[str]) -> bool:
    r = _norm_phrase(rest)
    return any(
        c and (r == c or r.startswith(c + " ") or r.startswith(c + ",")) for c in map(_norm_phrase, choices)
    )


def _read_letter(fragment: str, n: int, choices: Sequence[str], mode: str) -> str | None:
    """An option letter at the start of ``fragment``, if the rest does not make it a word.

    ``mode`` sets how sure we must be: "boxed" (anything boxed is an answer), "marker" (after
    "the answer is"), "line" (a whole line must be the answer, e.g. "E" or "E. right").
    """
    f = _clean(fragment)
    m = _LETTER_RE.match(f)
    if m is None:
        return None
    ch = m.group(1) or m.group(2) or m.group(3)
    bracketed = m.group(3) is None
    letter = ch.upper()
    if ord(letter) - ord("A") >= n:
        return None
    rest = f[m.end() :]
    d = _DELIM_RE.match(rest)
    after = rest[d.end() :] if d else rest
    if not after.strip(" .\t") or (choices and _starts_with_choice(after, choices)):
        if mode == "line" and ch.islower():
            return None
        if mode == "line" and after.strip(" .\t") and _norm_phrase(after) not in map(_norm_phrase, choices):
            return None
        return letter
    if mode == "line" or ch.islower():
        return None
    if bracketed or d is not None:
        return letter
    # "A" and "I" are English words ("A point ...", "I think ..."): a bare one needs more proof.
    if mode == "boxed" or (letter not in "AI" and re.match(r"\s", rest)):
        return letter
    return letter if re.match(r"\s+(?:-|\(|is\b|because\b|since\b|as\b|which\b)", rest) else None


def _label_kind(choices: Sequence[str]) -> str:
    norm = [_norm_phrase(c) for c in choices]
    if norm and all(c in DIRECTIONS_8 for c in norm):
        return "direction"
    if norm and all(c in REGIONS for c in norm):
        return "region"
    if norm and all(len(_GENERIC_LABEL_RE.findall(c)) == 2 for c in choices):
        return "pair"
    return "text"


_GENERIC_LABEL_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{1,3}[0-9]{1,3}(?![0-9])")


def _choice_mentions(text: str, choices: Sequence[str]) -> list[str]:
    """Letters of the options that ``text`` names, in text order (synonyms included)."""
    kind = _label_kind(choices)
    norm = [_norm_phrase(c) for c in choices]
    if kind in ("direction", "region"):
        found = (
            _find_phrases(text, _DIRECTION_RE, _DIRECTIONS)
            if kind == "direction"
            else _find_phrases(text, _REGION_RE, _REGIONS)
        )
        return [chr(ord("A") + norm.index(lab)) for _, _, lab in found if lab in norm]
    if kind == "pair":
        keys = [frozenset(x.upper() for x in _GENERIC_LABEL_RE.findall(c)) for c in choices]
        labels = sorted({lab for k in keys for lab in k})
        return [
            chr(ord("A") + keys.index(frozenset(p)))
            for _, p in _find_pairs(text, labels)
            if frozenset(p) in keys
        ]
    table = {c: chr(ord("A") + i) for i, c in enumerate(norm) if c}
    if not table:
        return []
    pattern = _phrase_finder(table)
    return [
        table[re.sub(r"[ \t]+", " ", m.group(0))] for m in pattern.finditer(_lower(text).replace("-", " "))
    ]


def parse_choice(text: Any, choices: Sequence[str] | None) -> str | None:
    """The option letter a model chose, or None.

    Reads ``\\boxed{E}``, ``\\boxed{E. right}``, ``E.``, ``(E)``, ``Answer: E``, ``**E**``, "The
    answer is E", a line holding only the letter, or option text alone ("down right", also
    "lower right") when it names exactly one option. Letters must be among ``choices`` (A-Z when
    ``choices`` is None). A bare "A"/"I" followed by words is English, not a letter.

    >>> opts = ["top left", "top", "top right", "left", "right", "down left", "down", "down right"]
    >>> parse_choice("\\\\boxed{E}", opts), parse_choice("Answer: (H)", opts), parse_choice("**C**", opts)
    ('E', 'H', 'C')
    >>> parse_choice("It is down right.", opts), parse_choice("A point can't be placed.", opts)
    ('H', None)
    >>> parse_choice("First I thought B. The answer is G.", opts)
    'G'
    """
    try:
        t = _prepare(text)
        if t is None:
            return None
        opts = [c if isinstance(c, str) else str(c) for c in choices] if choices else []
        n = min(len(opts), 26) if opts else 26
        for mode, frag in _fragments(t):
            letter = _read_letter(frag, n, opts, mode)
            if letter is None and opts:
                named = _choice_mentions(_clean(frag), opts)
                letter = named[0] if named else None
            if letter is not None:
                return letter
        for line in reversed(t.splitlines()):
            letter = _read_letter(line, n, opts, "line")
            if letter is not None:
                return letter
        first = t.lstrip().split("\n", 1)[0]
        lead = re.match(r"\s*(?:\(([A-Z])\)|([A-Z])[.:)])(?=\s|$)", first)
        # A first line listing several "X." options is an echo of the question, not an answer.
        if lead and len(set(_ECHO_RE.findall(first + " "))) < 2:
            letter = lead.group(1) or lead.group(2)
            # "A." and "I." also open outlines ("I. Locate N1"): they need their option text.
            plain = lead.group(2) in ("A", "I")
            if ord(letter) - ord("A") < n and (not plain or _starts_with_choice(first[lead.end() :], opts)):
                return letter
        if opts:
            named_set = set(_choice_mentions(t, opts))
            if len(named_set) == 1:
                return named_set.pop()
        return None
    except Exception:
        return None


# -- direction and region labels --------------------------------------------------------------


def _label_answer(text: Any, pattern: re.Pattern[str], table: dict[str, str]) -> str | None:
    t = _prepare(text)
    if t is None:
        return None
    for _, frag in _fragments(t):
        found = _find_phrases(frag, pattern, table)
        if found:
            return found[0][2]
    found = _find_phrases(t, pattern, table)
    return found[-1][2] if found else None


def parse_direction(text: Any) -> str | None:
    """The direction label in ``text`` (one of the 8 labels), or None.

    Synonyms map to the canonical labels ("upper right", "north-east", "up and to the right" ->
    "top right"; "below" -> "down"); the longest phrase wins.

    >>> parse_direction("top-right"), parse_direction("It lies below."), parse_direction("Northwest")
    ('top right', 'down', 'top left')
    >>> parse_direction("The answer is lower left, since N2 is below N1.")
    'down left'
    >>> parse_direction("no idea") is None
    True
    """
    try:
        return _label_answer(text, _DIRECTION_RE, _DIRECTIONS)
    except Exception:
        return None


def parse_region(text: Any) -> str | None:
    """The 3 x 3 region label in ``text`` (one of the 9 labels), or None.

    >>> parse_region("centre"), parse_region("The upper left corner."), parse_region("middle right")
    ('center', 'top left', 'right')
    >>> parse_region("bottom"), parse_region("") is None
    ('down', True)
    """
    try:
        return _label_answer(text, _REGION_RE, _REGIONS)
    except Exception:
        return None


# -- numbers and coordinates ------------------------------------------------------------------

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# A number is not part of a label ("N2") or a longer number; "10x10" and "10 by 10" are sizes.
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUM}(?![0-9])")
_SIZE_RE = re.compile(r"(?<![\w.])[0-9]+\s*(?:x|×|by|\*)\s*[0-9]+(?![0-9])", re.IGNORECASE)
_COORD_RE = re.compile(
    rf"(?<![a-z])x\s*[=:]\s*(?P<x1>{_NUM})\s*[,;]?\s*(?:and\s+)?(?<![a-z])y\s*[=:]\s*(?P<y1>{_NUM})"
    rf"|[(\[]\s*(?P<x2>{_NUM})\s*[,;]\s*(?P<y2>{_NUM})\s*[)\]]"
    rf"|(?<![\w.])(?P<x3>{_NUM})\s*,\s*(?P<y3>{_NUM})(?![0-9])",
    re.IGNORECASE,
)


def _finite(v: str) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


def find_numbers(text: Any) -> list[tuple[int, int, float]]:
    """Every number in ``text`` as ``(start, end, value)``, skipping label digits and "10x10".

    >>> [v for _, _, v in find_numbers("N1 and N2 in the 10x10 image are 4.37 apart")]
    [4.37]
    """
    try:
        t = _prepare(text)
        if t is None:
            return []
        t = _SIZE_RE.sub(lambda m: " " * len(m.group(0)), t)
        out = []
        for m in _NUMBER_RE.finditer(t):
            v = _finite(m.group(0))
            if v is not None:
                out.append((m.start(), m.end(), v))
        return out
    except Exception:
        return []


def parse_number(text: Any) -> float | None:
    """The number a model answered (the last one, unless an explicit answer names one), or None.

    >>> parse_number("4.37"), parse_number("approximately 4.4 units"), parse_number("8.1")
    (4.37, 4.4, 8.1)
    >>> parse_number("The distance between N1 and N2 in the 10x10 image is about 3.")
    3.0
    >>> parse_number("far") is None
    True
    """
    try:
        t = _prepare(text)
        if t is None:
            return None
        for _, frag in _fragments(t):
            nums = find_numbers(frag)
            if nums:
                return nums[0][2]
        nums = find_numbers(t)
        return nums[-1][2] if nums else None
    except Exception:
        return None


def find_coords(text: Any) -> list[tuple[int, int, tuple[float, float]]]:
    """Every coordinate pair in ``text`` as ``(start, end, (x, y))``.

    >>> [c for _, _, c in find_coords("N1 (7.12, 9.35); N2 x=1, y=2.5; N3 [3, 4]")]
    [(7.12, 9.35), (1.0, 2.5), (3.0, 4.0)]
    """
    try:
        t = _prepare(text)
        if t is None:
            return []
        out = []
        for m in _COORD_RE.finditer(t):
            xs = m.group("x1") or m.group("x2") or m.group("x3")
            ys = m.group("y1") or m.group("y2") or m.group("y3")
            x, y = _finite(xs), _finite(ys)
            if x is not None and y is not None:
                out.append((m.start(), m.end(), (x, y)))
        return out
    except Exception:
        return []


def _coord_in(text: str, last: bool) -> tuple[float, float] | None:
    found = find_coords(text)
    if not found:
        return None
    # Bracketed or "x=, y=" forms beat a bare "a, b" (which may be two separate numbers).
    structured = [c for s, e, c in found if not re.match(rf"{_NUM}\s*,", text[s:e])]
    pool = structured or [c for _, _, c in found]
    return pool[-1] if last else pool[0]


def parse_coord(text: Any) -> tuple[float, float] | None:
    """The coordinate a model answered as ``(x, y)``, or None.

    >>> parse_coord("(7.12, 9.35)"), parse_coord("x=7.1, y=9.3"), parse_coord("[7.1, 9.3]")
    ((7.12, 9.35), (7.1, 9.3), (7.1, 9.3))
    >>> parse_coord("The N1 object is at (7.9, 6.35).")
    (7.9, 6.35)
    >>> parse_coord("somewhere top left") is None
    True
    """
    try:
        t = _prepare(text)
        if t is None:
            return None
        for _, frag in _fragments(t):
            c = _coord_in(frag, last=False)
            if c is not None:
                return c
        return _coord_in(t, last=True)
    except Exception:
        return None


# -- pairs of labels --------------------------------------------------------------------------

_PAIR_SEP = r"(?:[ \t]+(?:object|point|node)s?)?\s*(?:and|to|with|&|/|,|-|<->|->|<-|→|←|↔)\s*(?:the[ \t]+)?"


def _label_re(labels: Iterable[str] | None) -> tuple[str, dict[str, str]]:
    """A regex (no groups) matching any of ``labels``, and lower case -> label."""
    labs = [str(x) for x in labels if str(x)] if labels is not None else []
    canon = {x.lower(): x for x in labs}
    body = "|".join(re.escape(x) for x in sorted(canon, key=len, reverse=True)) if canon else "n[0-9]+"
    return rf"(?<![a-z0-9])(?:{body})(?![0-9])", canon


def _find_pairs(text: str, labels: Iterable[str] | None) -> list[tuple[int, tuple[str, str]]]:
    lab, canon = _label_re(labels)
    pair_re = re.compile(rf"({lab}){_PAIR_SEP}({lab})", re.IGNORECASE)
    out = []
    for m in pair_re.finditer(text):
        a = canon.get(m.group(1).lower(), m.group(1))
        b = canon.get(m.group(2).lower(), m.group(2))
        if a != b:
            out.append((m.start(), (a, b)))
    return out


def find_labels(text: Any, labels: Iterable[str] | None) -> list[tuple[int, int, str]]:
    """Every mention of one of ``labels`` in ``text`` as ``(start, end, label)``.

    Case-insensitive; "N1" never matches inside "N10". ``labels=None`` accepts any ``N<k>``.

    >>> [x for _, _, x in find_labels("n2 is left of N1; N10 is far", ["N1", "N2"])]
    ['N2', 'N1']
    """
    try:
        t = _prepare(text, keep="head")
        if t is None:
            return []
        lab, canon = _label_re(labels)
        return [
            (m.start(), m.end(), canon.get(m.group(0).lower(), m.group(0)))
            for m in re.finditer(lab, t, re.IGNORECASE)
        ]
    except Exception:
        return []


def _pair_in(text: str, labels: Iterable[str] | None, last: bool) -> tuple[str, str] | None:
    pairs = _find_pairs(text, labels)
    if pairs:
        a, b = pairs[-1][1] if last else pairs[0][1]
        return (a, b) if a <= b else (b, a)
    named = list(dict.fromkeys(x for _, _, x in find_labels(text, labels)))
    if len(named) == 2:
        return (named[0], named[1]) if named[0] <= named[1] else (named[1], named[0])
    return None


def parse_pair(text: Any, labels: Iterable[str] | None) -> tuple[str, str] | None:
    """The pair of labels a model answered, as a sorted tuple (order-insensitive), or None.

    Reads "N2 and N3", "N3 to N2", "N2-N3", "between the N2 and N3 objects"; otherwise a text
    that names exactly two labels.

    >>> parse_pair("N3 to N2", ["N1", "N2", "N3"]), parse_pair("N2-N3", ["N1", "N2", "N3"])
    (('N2', 'N3'), ('N2', 'N3'))
    >>> parse_pair("The answer is N1 and N3, shorter than N2 to N3.", ["N1", "N2", "N3"])
    ('N1', 'N3')
    >>> parse_pair("N1", ["N1", "N2", "N3"]) is None
    True
    """
    try:
        t = _prepare(text)
        if t is None:
            return None
        for _, frag in _fragments(t):
            p = _pair_in(frag, labels, last=False)
            if p is not None:
                return p
        return _pair_in(t, labels, last=True)
    except Exception:
        return None


# -- descriptions -----------------------------------------------------------------------------

_SENTENCE_RE = re.compile(r"\n|[!?;]|\.(?![0-9])")
_COMPARE_RE = re.compile(
    r"\b(longer|shorter|greater|smaller|less|more|farther|further|closer|nearer|larger|bigger|same|equal)\b"
)
_GREATER = {"longer", "greater", "more", "farther", "further", "larger", "bigger"}
_NEGATION_RE = re.compile(r"\bnot\b|n't\b|\bno\b")
_NEGATE = {">": "<=", "<": ">=", "=": "!="}
_DISTANCE_WORD_RE = re.compile(r"\b(?:distance|distances|apart|away|far)\b")
_SOURCE_CUE_RE = re.compile(
    r"(?:\bfrom|\bstart(?:ing)?\s+(?:at|from)|\bbeginning\s+at|\brelative\s+to|\bcompared\s+to|"
    r"\bwith\s+respect\s+to)\s+(?:the\s+)?(?:(?:object|point|node)\s+)?$"
)


def _direction_ends(
    low: str, mentions: list[tuple[int, int, str]], first_dir: tuple[int, int, str]
) -> tuple[str, str] | None:
    """(from, to) of a direction sentence, read from "from X"/"starting at X"/"X is above Y"."""
    cued = {lab for s, _, lab in mentions if _SOURCE_CUE_RE.search(low[max(0, s - 60) : s])}
    labs = list(dict.fromkeys(lab for _, _, lab in mentions))
    if len(cued) == 1:
        src = cued.pop()
        return src, next(x for x in labs if x != src)
    if cued:
        return None
    # "N2 is top right of N1", "N2 is above N1": the second object is the reference.
    (_, e0, l0), (s1, _, l1) = mentions[0], next(m for m in mentions if m[2] != mentions[0][2])
    ds, de, _ = first_dir
    if e0 <= ds and de <= s1:
        tail = low[de:s1]
        if re.match(r"\s*(?:of|from)\b", tail) or low[ds:de].strip() in ("above", "below", "beneath"):
            return l1, l0
    return None


def _merge_axes(found: list[tuple[int, int, str]]) -> str:
    """One label from a clause's phrases: "right ... and below" is "down right", else the first."""
    labs = list(dict.fromkeys(lab for _, _, lab in found))
    if len(labs) == 2:
        v = [x for x in labs if x in ("top", "down")]
        h = [x for x in labs if x in ("left", "right")]
        if len(v) == 1 and len(h) == 1:
            return f"{v[0]} {h[0]}"
    return labs[0]


def _sentence_facts(sentence: str, labels: Sequence[str]) -> list[dict[str, Any]]:
    mentions = find_labels(sentence, labels)
    if not mentions:
        return []
    low = _lower(sentence)
    masked = list(low)
    facts: list[dict[str, Any]] = []
    for s, e, (x, y) in find_coords(sentence):
        before = [m for m in mentions if m[1] <= s]
        owner = before[-1][2] if before else next((m[2] for m in mentions if m[0] >= e), None)
        if owner is not None:
            facts.append({"kind": "coord", "object": owner, "value": [x, y]})
        masked[s:e] = " " * (e - s)
    for s, e, _ in mentions:
        masked[s:e] = " " * (e - s)
    text = "".join(masked)
    labs = list(dict.fromkeys(lab for _, _, lab in mentions))

    comp = _COMPARE_RE.search(text)
    if comp and len(mentions) >= 4:
        p1 = (mentions[0][2], mentions[1][2])
        p2 = (mentions[2][2], mentions[3][2])
        if p1[0] != p1[1] and p2[0] != p2[1] and set(p1) != set(p2):
            word = comp.group(1)
            rel = ">" if word in _GREATER else "=" if word in ("same", "equal") else "<"
            if _NEGATION_RE.search(text[: comp.start()]):
                rel = _NEGATE[rel]
            facts.append({"kind": "compare", "pairs": [list(p1), list(p2)], "relation": rel})
        return facts
    if len(labs) == 2 and _DISTANCE_WORD_RE.search(text):
        nums = find_numbers(text)
        if nums:
            facts.append({"kind": "distance", "pair": labs, "value": nums[-1][2]})
        return facts
    if len(labs) == 2:
        dirs = _find_phrases(text, _DIRECTION_RE, _DIRECTIONS)
        ends = _direction_ends(low, mentions, dirs[0]) if dirs else None
        if ends is not None:
            facts.append({"kind": "direction", "from": ends[0], "to": ends[1], "value": _merge_axes(dirs)})
            return facts
    found = False
    for i, (_, e, lab) in enumerate(mentions):
        stop = mentions[i + 1][0] if i + 1 < len(mentions) else len(text)
        regs = _find_phrases(text[e:stop], _REGION_RE, _REGIONS)
        if regs:
            facts.append({"kind": "region", "object": lab, "value": _merge_axes(regs)})
            found = True
    if not found and len(labs) == 1:
        regs = _find_phrases(text, _REGION_RE, _REGIONS)
        if regs:
            facts.append({"kind": "region", "object": labs[0], "value": _merge_axes(regs)})
    return facts


def parse_description(text: Any, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The checkable facts a scene description states, sentence by sentence.

    Fact kinds: ``region`` (object, label), ``coord`` (object, [x, y]), ``direction`` (from,
    to, label), ``compare`` (two pairs and a relation ``>``, ``<``, ``=`` or a negation
    ``<=``, ``>=``, ``!=``: "the distance from a to b is longer than ..."), ``distance`` (pair,
    value). Sentences naming no label are skipped; so are directions whose reference object
    cannot be told.

    >>> text = ("The N1 object is at the top left of the image. The coordinate of the N1 object is (2.1, 8.0).\\n"
    ...         "You can reach the N2 object by going down right from the N1 object.\\n"
    ...         "The distance from N1 to N2 is longer than the distance from N2 to N3.\\n"
    ...         "The distance between the N1 and N2 objects is 6.4.")
    >>> for f in parse_description(text, ["N1", "N2", "N3"]): print(f)
    {'kind': 'region', 'object': 'N1', 'value': 'top left'}
    {'kind': 'coord', 'object': 'N1', 'value': [2.1, 8.0]}
    {'kind': 'direction', 'from': 'N1', 'to': 'N2', 'value': 'down right'}
    {'kind': 'compare', 'pairs': [['N1', 'N2'], ['N2', 'N3']], 'relation': '>'}
    {'kind': 'distance', 'pair': ['N1', 'N2'], 'value': 6.4}
    """
    try:
        t = _prepare(text, keep="head")
        if t is None:
            return []
        labs = [str(x) for x in labels]
        facts: list[dict[str, Any]] = []
        for sentence in _SENTENCE_RE.split(t):
            facts.extend(_sentence_facts(sentence, labs))
        return facts
    except Exception:
        return []
