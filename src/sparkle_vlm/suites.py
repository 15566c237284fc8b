"""Generation suites: named (task, config overrides) pairs for ``sparkle generate SUITE``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparkle_vlm.registry import Registry


@dataclass(frozen=True)
class Suite:
    """A named dataset recipe."""

    name: str
    task: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


SUITES: Registry[Suite] = Registry("suite")


def _add(name: str, task: str, description: str, **overrides: Any) -> None:
    SUITES.add(name, Suite(name, task, description, overrides))


_add("instruct", "instruct", "Sparkle-Instruct training set: 2,000 images x 17 questions (paper size)")
_add(
    "instruct-direction",
    "instruct",
    "Ablation: direction questions + direction description",
    focus="direction",
)
_add("instruct-distance", "instruct", "Ablation: distance questions + distance description", focus="distance")
_add(
    "instruct-localization",
    "instruct",
    "Ablation: localization questions + position description",
    focus="localization",
)
_add(
    "instruct-no-numbers",
    "instruct",
    "Ablation: no absolute distance/coordinate questions, no numbers in descriptions",
    numbers=False,
)
_add(
    "basic-test",
    "basic_mcq",
    "Basic MCQ test set: 200 images (3 + 2 distractors), direction/distance/localization",
)
_add(
    "basic-test-text",
    "basic_mcq",
    "Text twin of the basic test set: the scene stated in words, same questions and answers",
    modality="text",
)
_add(
    "basic-train",
    "basic_mcq",
    "Practice data in the basic test format (answers included; scenes disjoint from the test set)",
    split="train",
)
_add("spp", "spp", "Shortest path on an n x n grid (default 4x4, 200 instances)")
_add("tsp", "tsp", "Open travelling salesman path over 5 labelled points (200 instances)")
