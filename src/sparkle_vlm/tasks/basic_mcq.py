"""Basic-capability test set: one multiple-choice question per capability per image (protocol 4, 6.7).

Each scene holds the 3 question objects plus 2 distractor discs that look identical (labels from
one N1..N5 pool; questions only name the 3 basic objects). Every image yields 3 records, in this
order: direction (a random basic pair, earlier- to later-generated object, 8 fixed options or the
4 quadrants), distance (the 3 basic pairs as options, "Na to Nb"), localization (a random basic
object, 9 fixed options). The answer is the option letter; the model is asked for ``\\boxed{X}``.

``modality="text"`` is the text twin: the same scene and questions with no image, the prompt
opening with every object's coordinates in words. Both modalities draw from the same generator,
so for one (seed, index) they share scene, questions and answers: comparing them separates
perception from reasoning. Coordinates in the text are rounded to 2 decimals while answers use
the unrounded scene, so at a sector or grid boundary (within 0.005) the text can disagree with
the answer; this is measure-zero in practice and left as is rather than bending the truth.

Run: ``sparkle generate basic-test`` (suite) or ``generate_dataset("basic_mcq", ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from sparkle_vlm import geometry as geo
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import make_record
from sparkle_vlm.render.raster import render_points
from sparkle_vlm.scene import Node, Scene, sample_point_scene
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import templates as T
from sparkle_vlm.tasks.base import Sample, Task, TaskConfig, register

MODALITIES = ("image", "text")
#: Basic pairs in generation order; also the order of the distance options.
PAIRS = ((0, 1), (0, 2), (1, 2))
N_BASIC = 3
N_DISTRACTORS = 2

SCENE_TEXT_INTRO = (
    "There is no image; the scene is described in words instead. It is a 10x10 coordinate frame with the "
    "origin (0, 0) at the bottom-left corner; x grows to the right and y grows upward. It contains {k} objects:"
)


@dataclass(frozen=True)
class BasicMCQConfig(TaskConfig):
    """Basic test set options.

    ``ways`` is 8 (the paper's direction labels) or 4 (quadrants); ``modality`` is "image" or
    "text" (the text twin: scene coordinates in the prompt, no image). ``split="train"`` makes
    practice data in the test format: scenes from a disjoint seed stream, answers included.
    """

    n: int = 200
    ways: int = 8
    modality: str = "image"
    split: str = "test"

    def validate(self) -> None:
        super().validate()
        if self.ways not in (4, 8):
            raise ConfigError("ways", f"must be 4 or 8, got {self.ways!r}")
        if self.modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.split not in ("test", "train"):
            raise ConfigError("split", f"must be 'test' or 'train', got {self.split!r}")


def pair_name(a: str, b: str) -> str:
    """How the distance options name a pair: ``N4 to N1`` (protocol 4)."""
    return f"{a} to {b}"


def scene_text(scene: Scene) -> str:
    """The words that replace the image in the text twin: every object (distractors included).

    Objects are listed by label, not in generation order, so the list does not tell the
    question objects from the distractors.

    >>> from sparkle_vlm.scene import Node, Scene
    >>> print(scene_text(Scene((Node("N2", 1.0, 2.5), Node("N1", 7.125, 9.0, "distractor")))))
    There is no image; the scene is described in words instead. It is a 10x10 coordinate frame with the origin (0, 0) at the bottom-left corner; x grows to the right and y grows upward. It contains 2 objects:
    - N1 at (7.12, 9.00)
    - N2 at (1.00, 2.50)
    """
    nodes = sorted(scene.nodes, key=lambda n: (len(n.label), n.label))
    lines = [SCENE_TEXT_INTRO.format(k=len(nodes))]
    lines += [f"- {n.label} at ({n.x:.2f}, {n.y:.2f})" for n in nodes]
    return "\n".join(lines)


@register
class BasicMCQTask(Task):
    id = "basic_mcq"
    version = 1
    split = "test"
    description = "Basic test set: 3 objects + 2 distractors per image, one MCQ each for direction, distance, localization"
    config_cls = BasicMCQConfig

    def tag(self, config: TaskConfig) -> str:
        if not isinstance(config, BasicMCQConfig):
            raise TypeError(f"expected BasicMCQConfig, got {type(config).__name__}")
        tag = f"basic-{config.split}" + ("" if config.ways == 8 else "-4way")
        return tag if config.modality == "image" else f"{tag}-text"

    def render(self, scene: dict[str, Any], size: int) -> Image.Image:
        return render_points(scene, size)

    def sample(self, config: TaskConfig, seed: int, index: int) -> Sample:
        if not isinstance(config, BasicMCQConfig):
            raise TypeError(f"expected BasicMCQConfig, got {type(config).__name__}")
        # The stream depends on (task, split, seed, index) only: modality and ways never change
        # what is drawn, so the image set, its text twin and the 4-way variant share scenes.
        split = config.split
        rng = sample_rng(self.id, split, seed, index)
        scene = sample_point_scene(rng, N_BASIC, N_DISTRACTORS)
        scene_d = scene.to_dict()
        basic = scene.basic
        text_mode = config.modality == "text"
        image = None if text_mode else self.image_for(config, seed, index)
        preamble = scene_text(scene) + "\n\n" if text_mode else ""
        tag = self.tag(config)
        records: list[dict[str, Any]] = []

        def add(
            task: str,
            prompt: str,
            options: tuple[str, ...],
            correct: int,
            query: dict[str, Any],
            template: int,
        ) -> None:
            records.append(
                make_record(
                    tag=tag,
                    task=task,
                    version=self.version,
                    split=split,
                    seed=seed,
                    index=index,
                    q=len(records),
                    images=[] if image is None else [image],
                    prompt=preamble + prompt,
                    answer=T.letter(correct),
                    choices=list(options),
                    answer_type="mcq",
                    scene=scene_d,
                    query=query,
                    source=self.id,
                    with_answer=split == "train",
                    meta={"template": template, "modality": config.modality, "ways": config.ways},
                )
            )

        # Draw every random choice up front, in a fixed order, so no draw depends on another.
        dir_pair = PAIRS[int(rng.integers(len(PAIRS)))]
        dir_tpl = int(rng.integers(len(T.MCQ_DIRECTION_TEMPLATES)))
        dist_tpl = int(rng.integers(len(T.MCQ_DISTANCE_TEMPLATES)))
        two = [PAIRS[int(i)] for i in rng.choice(len(PAIRS), size=2, replace=False)]
        loc_obj = basic[int(rng.integers(len(basic)))]
        loc_tpl = int(rng.integers(len(T.MCQ_LOCALIZATION_TEMPLATES)))

        a, b = basic[dir_pair[0]], basic[dir_pair[1]]
        options = geo.DIRECTIONS_8 if config.ways == 8 else geo.DIRECTIONS_4
        label = geo.direction(a.x, a.y, b.x, b.y, config.ways)
        prompt = T.MCQ_DIRECTION_TEMPLATES[dir_tpl].format(
            a=a.label, b=b.label, options=T.options_text(options)
        )
        add("direction", prompt, options, options.index(label), {"from": a.label, "to": b.label}, dir_tpl)

        prompt, names, correct, query = self._distance_question(basic, dist_tpl, two)
        add("distance", prompt, names, correct, query, dist_tpl)

        label = geo.region(loc_obj.x, loc_obj.y)
        prompt = T.MCQ_LOCALIZATION_TEMPLATES[loc_tpl].format(
            o=loc_obj.label, options=T.options_text(geo.REGIONS)
        )
        add("localization", prompt, geo.REGIONS, geo.REGIONS.index(label), {"object": loc_obj.label}, loc_tpl)
        return Sample(index=index, scene=scene_d, records=records, image=image)

    @staticmethod
    def _distance_question(
        basic: tuple[Node, ...], template: int, two: list[tuple[int, int]]
    ) -> tuple[str, tuple[str, ...], int, dict[str, Any]]:
        names = tuple(pair_name(basic[i].label, basic[j].label) for i, j in PAIRS)
        dist = {p: geo.distance(basic[p[0]].x, basic[p[0]].y, basic[p[1]].x, basic[p[1]].y) for p in PAIRS}
        ask = T.MCQ_DISTANCE_ASKS[template]
        tpl = T.MCQ_DISTANCE_TEMPLATES[template]
        options = T.options_text(names)
        if ask in ("shortest", "longest"):
            cands = list(PAIRS)
            prompt = tpl.format(options=options)
        else:
            cands = two
            prompt = tpl.format(p1=names[PAIRS.index(two[0])], p2=names[PAIRS.index(two[1])], options=options)
        best = (min if ask in ("shortest", "shorter") else max)(cands, key=lambda p: dist[p])
        query = {"pairs": [[basic[i].label, basic[j].label] for i, j in cands], "ask": ask}
        return prompt, names, PAIRS.index(best), query
