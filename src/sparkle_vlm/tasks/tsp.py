"""Travelling salesman (TSP) over labelled points (protocol sections 5, 6.9, 9).

One record per instance. Points are drawn and labelled exactly as the basic scenes
(:func:`~sparkle_vlm.scene.sample_point_scene`, no distractors, no edges drawn) and solved exactly
by Held-Karp. Variants: ``fixstart`` (upstream default: an open path from a given start, the
first-generated point, whose label is random), ``free`` (an open path from any start; its
reverse is equally optimal) and ``closed`` (a cycle back to the start; any rotation and either
direction is optimal). The upstream example output lists the labels in the scene's own order.

Minimum centre distance. The protocol's 3.0 (r1 + r2 + 2.0) is kept up to 7 points. Sequential
rejection sampling in the 9 x 9 box of centres jams beyond that (measured: 8 points fail about
1 draw in 60 at 3.0, 10 points most draws), so larger scenes use a smaller minimum distance,
recorded in ``meta.difficulty.min_distance``: 8: 2.75, 9: 2.5, 10-11: 2.25, 12: 2.0 (discs stay
well apart: the disc diameter is 1.0).

Answers: a JSON list of labels (``'["N3", "N1", "N2"]'``); ``closed`` lists each label once,
starting at the start point. Text twins give the coordinates to 2 decimals; rounding can change
the optimum when two tours are within about 0.01 of each other, so every record says whether the
canonical tour is also optimal for the rounded coordinates (``meta.difficulty.rounding_safe``).
Answers are always scored with the unrounded coordinates of the scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparkle_vlm import solvers as S
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import make_record
from sparkle_vlm.render.raster import render_points
from sparkle_vlm.scene import MIN_CENTER_DISTANCE, Node, Scene, sample_centers, sample_point_scene
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import composite_templates as T
from sparkle_vlm.tasks.base import Sample, Task, TaskConfig, register

MIN_POINTS, MAX_POINTS = 4, 12
MODALITIES = ("image", "text")
#: Minimum centre distance by point count where the protocol's 3.0 jams (see module docstring).
MIN_DISTANCE = {8: 2.75, 9: 2.5, 10: 2.25, 11: 2.25, 12: 2.0}
#: Relative tolerance of "as short as the optimum".
REL_TOL = 1e-9


def min_distance_for(points: int) -> float:
    """The minimum centre distance used for scenes of ``points`` points.

    >>> min_distance_for(5), min_distance_for(12)
    (3.0, 2.0)
    """
    return MIN_DISTANCE.get(points, MIN_CENTER_DISTANCE)


@dataclass(frozen=True)
class TspConfig(TaskConfig):
    """TSP options: ``points`` (4..12), ``variant`` ("fixstart", "free", "closed"), ``modality``
    ("image" or "text": the text twin states coordinates instead of showing an image)."""

    points: int = 5
    variant: str = "fixstart"
    modality: str = "image"

    def validate(self) -> None:
        super().validate()
        if (
            isinstance(self.points, bool)
            or not isinstance(self.points, int)
            or not MIN_POINTS <= self.points <= MAX_POINTS
        ):
            raise ConfigError(
                "points", f"must be an integer in [{MIN_POINTS}, {MAX_POINTS}], got {self.points!r}"
            )
        if self.variant not in S.TSP_VARIANTS:
            raise ConfigError("variant", f"must be one of {', '.join(S.TSP_VARIANTS)}, got {self.variant!r}")
        if self.modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {', '.join(MODALITIES)}, got {self.modality!r}")


def point_scene(rng: np.random.Generator, points: int) -> Scene:
    """A basic-style scene of ``points`` labelled points (the protocol sampler up to 7 points).

    Above 7 points the same construction runs with the smaller minimum distance; a jammed draw
    is retried from the generator's current state, so the result stays a pure function of it.
    """
    d = min_distance_for(points)
    if d == MIN_CENTER_DISTANCE:
        return sample_point_scene(rng, points)
    for _ in range(100):
        try:
            centers = sample_centers(rng, points, min_distance=d, max_tries=20_000)
        except ValueError:
            continue
        perm = rng.permutation(points)
        return Scene(tuple(Node(f"N{int(perm[i]) + 1}", x, y) for i, (x, y) in enumerate(centers)))
    raise RuntimeError(f"could not place {points} points at distance >= {d}")  # pragma: no cover


def solve_scene(
    scene: dict[str, Any], variant: str, start: str | None
) -> tuple[S.TourSolution, np.ndarray, list[str]]:
    """Optimal tour of a point scene record: (solution, distance matrix, labels in scene order)."""
    nodes = [nd for nd in scene["nodes"] if nd.get("role", "basic") == "basic"]
    labels = [nd["label"] for nd in nodes]
    d = S.distance_matrix([(nd["x"], nd["y"]) for nd in nodes])
    s = labels.index(start) if start is not None else 0
    return S.held_karp(d, variant, s), d, labels


def prompt_for(cfg: TspConfig, scene: Scene, start: str | None) -> tuple[str, int | None]:
    """The question text and its upstream template index (None for our closed-tour wording)."""
    labels = [nd.label for nd in scene.nodes]
    if cfg.variant == "closed":
        template, t = T.TSP_CLOSED_TEMPLATE, None
    else:
        t = T.TSP_PROMPT_TEMPLATE[cfg.variant]
        template = T.TSP_QUESTION_TEMPLATES[t]
    if cfg.modality == "text":
        if not template.startswith(T.TSP_IMAGE_OPENING):  # pragma: no cover - guards template edits
            raise RuntimeError("TSP template lost its opening")
        template = T.TSP_TEXT_OPENING + template[len(T.TSP_IMAGE_OPENING) :]
        objects_string = "\n".join(f"- {nd.label}: ({nd.x:.2f}, {nd.y:.2f})" for nd in scene.nodes)
    else:
        objects_string = "\n".join(f"- {lb}" for lb in labels)
    text = template.format(
        num_objects=len(labels), objects_string=objects_string, start_color=start, objects=json.dumps(labels)
    )
    return text, t


@register
class TspTask(Task):
    id = "tsp"
    version = 1
    split = "test"
    description = (
        "Travelling salesman over labelled points (fixstart/free open path, closed tour; text twins)"
    )
    config_cls = TspConfig

    def tag(self, config: TaskConfig) -> str:
        assert isinstance(config, TspConfig)
        tag = f"tsp{config.points}"
        if config.variant != "fixstart":
            tag += f"-{config.variant}"
        if config.modality == "text":
            tag += "-text"
        return tag

    def render(self, scene: dict[str, Any], size: int):
        return render_points(scene, size)

    def sample(self, config: TaskConfig, seed: int, index: int) -> Sample:
        assert isinstance(config, TspConfig)
        # Scenes depend on the point count only, so variants and text twins share them.
        rng = sample_rng(f"tsp{config.points}", self.split, seed, index)
        scene = point_scene(rng, config.points)
        scene_d = scene.to_dict()
        start = scene.nodes[0].label if config.variant != "free" else None
        sol, d, labels = solve_scene(scene_d, config.variant, start)
        closed = config.variant == "closed"
        rounded = np.round(np.array([(nd.x, nd.y) for nd in scene.nodes]), 2)
        d_r = S.distance_matrix(rounded)
        opt_r = S.held_karp(d_r, config.variant, 0).length
        rounding_safe = S.tour_length(d_r, sol.order, closed) <= opt_r * (1 + REL_TOL)
        greedy = S.nearest_neighbour_length(d, config.variant, 0)
        prompt, template = prompt_for(config, scene, start)
        image = self.image_for(config, seed, index) if config.modality == "image" else None
        record = make_record(
            tag=self.tag(config),
            task=self.id,
            version=self.version,
            split=self.split,
            seed=seed,
            index=index,
            q=0,
            images=[image] if image else [],
            prompt=prompt,
            answer=json.dumps([labels[i] for i in sol.order]),
            choices=None,
            answer_type="tour",
            scene=scene_d,
            query={"variant": config.variant, "start": start},
            source=self.id,
            with_answer=False,
            meta={
                "variant": config.variant,
                "modality": config.modality,
                "template": template,
                "difficulty": {
                    "points": config.points,
                    "min_distance": min_distance_for(config.points),
                    "optimal_length": sol.length,
                    "greedy_ratio": greedy / sol.length if sol.length else 1.0,
                    "rounding_safe": bool(rounding_safe),
                },
            },
        )
        return Sample(index=index, scene=scene_d, records=[record], image=image)
