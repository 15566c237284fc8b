"""The result of scoring one answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Outcome classes. Basic tasks use correct / wrong / unparsable; composite tasks use
#: optimal / suboptimal / infeasible / unparsable.
OUTCOMES = ("correct", "wrong", "optimal", "suboptimal", "infeasible", "unparsable")


@dataclass(frozen=True)
class Verdict:
    """How one model answer fared.

    ``score`` is the primary score in [0, 1] (1 = right); ``parsed`` is the normalised answer
    read from the text (JSON-serialisable) or None; ``error`` is a numeric error where one
    exists (distance or coordinate error in frame units); ``details`` holds task-specific
    extras (exact match, optimality gap, ...).
    """

    outcome: str
    score: float
    parsed: Any = None
    error: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")

    @property
    def correct(self) -> bool:
        return self.outcome in ("correct", "optimal")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "score": self.score,
            "parsed": self.parsed,
            "error": self.error,
            "details": self.details,
        }
