"""Scene-grounded rationales: answers that first write where each named object is.

A model trained from random weights cannot learn the basic questions in one step within a CPU
budget: "the direction from N2 to N1" asks it to find two discs among five, read both positions
and compare them in the single token of the answer (docs/embedded-model.md, rounds 1-7). With a
rationale the answer is written one lookup at a time::

    question: What is the direction from the N2 point to the N1 point? ... \\boxed{option}.
    answer:    N2 18, N1 85. \\boxed{H}

``N2 18`` is the cell of N2: floor(x) then floor(y) in frame units of 10, so each digit is read
from the image token of the label just written, and the letter is a function of the digits
before it. The rationale is computed from the scene record (never from pixels), so it is exact;
the eval parser reads the boxed letter as before. Floor cells decide every localization answer
exactly (the region cuts are at 4 and 6) and 90 / 93 % of the basic direction / distance
answers of the test set; the rest lies on cell boundaries the digits cannot resolve.

Records without a point scene, without named labels (the holistic description) or whose labels
are missing from the scene are left unchanged.
"""

from __future__ import annotations

from typing import Any

#: Keys of a record's ``query`` that name one label; ``pairs`` / ``pair`` name two per pair.
_LABEL_KEYS = ("from", "to", "object")


def named_labels(query: dict[str, Any]) -> list[str]:
    """The labels a question names, in order of first mention, each once.

    >>> named_labels({"from": "N2", "to": "N1"})
    ['N2', 'N1']
    >>> named_labels({"pairs": [["N2", "N1"], ["N4", "N2"]], "ask": "shorter"})
    ['N2', 'N1', 'N4']
    >>> named_labels({"focus": "all"})
    []
    """
    labels = [query[k] for k in _LABEL_KEYS if isinstance(query.get(k), str)]
    pairs = query.get("pairs")
    if not isinstance(pairs, list):
        pairs = [query["pair"]] if isinstance(query.get("pair"), list) else []
    labels += [lab for pair in pairs if isinstance(pair, list) for lab in pair if isinstance(lab, str)]
    return list(dict.fromkeys(labels))


def cell_digits(x: float, y: float, frame: float = 10.0) -> str:
    """floor(x) then floor(y), in units of a tenth of the frame, clipped to 0-9.

    >>> cell_digits(1.51, 8.29), cell_digits(10.0, 0.0), cell_digits(3.999, 6.0)
    ('18', '90', '36')
    """
    return "".join(str(min(9, max(0, int(v * 10 / frame)))) for v in (x, y))


def rationale(record: dict[str, Any]) -> str | None:
    """`` N2 18, N1 85`` for a record whose question names labels of its point scene, else None.

    >>> rec = {"query": {"object": "N1"}, "scene": {"frame": 10, "nodes": [
    ...     {"label": "N1", "x": 8.9, "y": 5.9}, {"label": "N2", "x": 1.5, "y": 8.3}]}}
    >>> rationale(rec)
    ' N1 85'
    >>> rationale({"query": {"object": "N7"}, "scene": rec["scene"]}) is None
    True
    """
    query, scene = record.get("query"), record.get("scene")
    if not isinstance(query, dict) or not isinstance(scene, dict):
        return None
    labels = named_labels(query)
    nodes = {n.get("label"): n for n in scene.get("nodes") or [] if isinstance(n, dict)}
    if not labels or not all(lab in nodes and "x" in nodes[lab] and "y" in nodes[lab] for lab in labels):
        return None
    frame = float(scene.get("frame", 10))
    return ",".join(
        f" {lab} {cell_digits(float(nodes[lab]['x']), float(nodes[lab]['y']), frame)}" for lab in labels
    )


def with_rationale(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` whose assistant answer starts with its :func:`rationale`.

    Multiple-choice answers become ``<rationale>. \\boxed{X}`` (what the prompts ask for), other
    answers ``<rationale>. <answer>``. Records without a rationale come back unchanged.

    >>> rec = {"task": "localization", "answer": "F", "answer_type": "mcq",
    ...        "query": {"object": "N1"}, "scene": {"nodes": [{"label": "N1", "x": 8.9, "y": 5.9}]},
    ...        "messages": [{"role": "user", "content": "Where is N1?"},
    ...                     {"role": "assistant", "content": [{"type": "text", "text": "F"}]}]}
    >>> with_rationale(rec)["messages"][-1]["content"][0]["text"]
    ' N1 85. \\\\boxed{F}'
    """
    text = rationale(record)
    messages = record.get("messages")
    if text is None or not isinstance(messages, list) or not messages:
        return record
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return record
    answer = str(record.get("answer", ""))
    full = f"{text}. \\boxed{{{answer}}}" if record.get("answer_type") == "mcq" else f"{text}. {answer}"
    content: Any = [{"type": "text", "text": full}] if isinstance(last.get("content"), list) else full
    # a new record and a new last turn; the shared parts are never modified
    return {**record, "messages": [*messages[:-1], {**last, "content": content}]}
