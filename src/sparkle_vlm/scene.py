"""The scene record: the single source of truth for every label and score.

A point scene holds labelled discs in the 10 x 10 frame (origin bottom-left, y up). Answers
are computed from this record, never from pixels. Composite tasks extend the JSON form with
their own keys (grid, start, end, ...); see the task modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Role = Literal["basic", "distractor"]

FRAME = 10
#: Disc radius in frame units (protocol section 1).
DISC_RADIUS = 0.5
#: Minimum distance between two disc centres: r1 + r2 + 2.0.
MIN_CENTER_DISTANCE = 3.0


@dataclass(frozen=True, slots=True)
class Node:
    """One labelled disc. ``x``/``y`` are unrounded frame coordinates."""

    label: str
    x: float
    y: float
    role: Role = "basic"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x": self.x, "y": self.y, "role": self.role}


@dataclass(frozen=True, slots=True)
class Scene:
    """A point scene. Node order is generation order: basic nodes first, then distractors."""

    nodes: tuple[Node, ...]
    frame: int = FRAME

    @property
    def basic(self) -> tuple[Node, ...]:
        """The nodes questions may name."""
        return tuple(n for n in self.nodes if n.role == "basic")

    def node(self, label: str) -> Node:
        """The node with this label."""
        for n in self.nodes:
            if n.label == label:
                return n
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in records: ``{"frame": 10, "nodes": [...]}``."""
        return {"frame": self.frame, "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(
            nodes=tuple(
                Node(str(n["label"]), float(n["x"]), float(n["y"]), n.get("role", "basic"))
                for n in d["nodes"]
            ),
            frame=int(d.get("frame", FRAME)),
        )


def sample_centers(
    rng: np.random.Generator,
    count: int,
    *,
    lo: float = DISC_RADIUS,
    hi: float = FRAME - DISC_RADIUS,
    min_distance: float = MIN_CENTER_DISTANCE,
    max_tries: int = 100_000,
) -> list[tuple[float, float]]:
    """Draw ``count`` centres uniformly in [lo, hi]^2, rejecting any closer than ``min_distance``.

    Each candidate is drawn as one (x, y) pair and checked against all accepted centres, as in
    the protocol. Raises ``ValueError`` when the constraints cannot be met in ``max_tries``.
    """
    pts: list[tuple[float, float]] = []
    tries = 0
    while len(pts) < count:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"could not place {count} points at distance >= {min_distance}")
        x, y = rng.uniform(lo, hi, 2)
        xf, yf = float(x), float(y)
        if all(math.hypot(xf - px, yf - py) >= min_distance for px, py in pts):
            pts.append((xf, yf))
    return pts


def sample_point_scene(rng: np.random.Generator, n_basic: int, n_distractors: int = 0) -> Scene:
    """A Sparkle point scene: basic nodes then distractors, labels a random permutation of N1..Nk.

    Distractors look exactly like basic nodes and take labels from the same pool.
    """
    total = n_basic + n_distractors
    centers = sample_centers(rng, total)
    perm = rng.permutation(total)
    nodes = tuple(
        Node(f"N{int(perm[i]) + 1}", x, y, "basic" if i < n_basic else "distractor")
        for i, (x, y) in enumerate(centers)
    )
    return Scene(nodes)
