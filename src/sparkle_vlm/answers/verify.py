"""Scoring dispatch: one scorer per ``answer_type`` of the canonical record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparkle_vlm.answers.types import Verdict
from sparkle_vlm.registry import Registry

Scorer = Callable[[dict[str, Any], str], Verdict]

#: answer_type -> scorer(record, text) -> Verdict
SCORERS: Registry[Scorer] = Registry("answer type")


def score(record: dict[str, Any], text: Any) -> Verdict:
    """Score model output ``text`` against a canonical record. Never raises on bad text.

    Non-string output (None, numbers) is treated as its string form or as unparsable.
    """
    import sparkle_vlm.answers.scorers  # noqa: F401  (registers the built-in scorers)

    scorer = SCORERS.get(record["answer_type"])
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    try:
        return scorer(record, text)
    except Exception as exc:  # a scorer bug must not crash a long evaluation
        return Verdict("unparsable", 0.0, None, None, {"scorer_error": f"{type(exc).__name__}: {exc}"})
