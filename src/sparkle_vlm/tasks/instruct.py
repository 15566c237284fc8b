"""Sparkle-Instruct: the training set of the three basic capabilities (protocol section 3).

Each image holds 3 labelled discs and yields 17 direct-answer questions: 3 direction (one per
pair, from the earlier- to the later-generated object), 4 relative distance (templates drawn
with replacement), 3 relative localization, 3 absolute distance, 3 absolute localization and
1 holistic description. Ablations keep the same scenes (same seed, same images) and change the
questions: direction-only, distance-only, localization-only (each with a description restricted
to that capability) and "no numbers" (no absolute questions, no numbers in the description).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sparkle_vlm import geometry as geo
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.records import make_record
from sparkle_vlm.render.raster import render_points
from sparkle_vlm.scene import Node, sample_point_scene
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import templates as T
from sparkle_vlm.tasks.base import Sample, Task, TaskConfig, register

Focus = Literal["all", "direction", "distance", "localization"]
FOCI = ("all", "direction", "distance", "localization")


@dataclass(frozen=True)
class InstructConfig(TaskConfig):
    """Sparkle-Instruct options.

    ``focus`` picks the full set or a single-capability ablation; ``numbers=False`` is the
    "w/o numbers" ablation; ``number_style`` is "upstream" (``str(round(v, 2))``) or "fixed".
    """

    n: int = 2000
    focus: str = "all"
    numbers: bool = True
    number_style: str = "upstream"
    ways: int = 8

    def validate(self) -> None:
        super().validate()
        if self.focus not in FOCI:
            raise ConfigError("focus", f"must be one of {', '.join(FOCI)}, got {self.focus!r}")
        if self.number_style not in ("upstream", "fixed"):
            raise ConfigError("number_style", f"must be 'upstream' or 'fixed', got {self.number_style!r}")
        if self.ways not in (4, 8):
            raise ConfigError("ways", f"must be 4 or 8, got {self.ways!r}")
        if not self.numbers and self.focus != "all":
            raise ConfigError("numbers", "the no-numbers ablation applies to focus 'all' only")


PAIRS = ((0, 1), (0, 2), (1, 2))


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> tuple[int, str]:
    i = int(rng.integers(len(options)))
    return i, options[i]


@register
class InstructTask(Task):
    id = "instruct"
    version = 1
    split = "train"
    description = "Sparkle-Instruct: 3 objects per image, 17 direct-answer questions (direction, distance, localization, description)"
    config_cls = InstructConfig

    def tag(self, config: TaskConfig) -> str:
        assert isinstance(config, InstructConfig)
        base = "instruct" if config.focus == "all" else f"instruct-{config.focus}"
        if not config.numbers:
            base = "instruct-no-numbers"
        return base + ("-4way" if config.ways == 4 else "")

    def render(self, scene: dict[str, Any], size: int):
        return render_points(scene, size)

    def sample(self, config: TaskConfig, seed: int, index: int) -> Sample:
        assert isinstance(config, InstructConfig)
        # Scenes depend on (task, split, seed, index) only, so every ablation sees the same images.
        rng = sample_rng(self.id, self.split, seed, index)
        scene = sample_point_scene(rng, 3)
        scene_d = scene.to_dict()
        # Question wording draws from a second stream so ablations keep identical scenes.
        qrng = sample_rng(f"{self.id}/questions", self.split, seed, index)
        image = self.image_for(config, seed, index)
        tag = self.tag(config)
        nodes = scene.nodes
        style = config.number_style
        records: list[dict[str, Any]] = []

        def add(
            task: str,
            prompt: str,
            answer: str,
            answer_type: str,
            query: dict[str, Any],
            template: int,
            response: str | None = None,
        ) -> None:
            records.append(
                make_record(
                    tag=tag,
                    task=task,
                    version=self.version,
                    split=self.split,
                    seed=seed,
                    index=index,
                    q=len(records),
                    images=[image],
                    prompt=prompt,
                    answer=answer,
                    choices=None,
                    answer_type=answer_type,
                    scene=scene_d,
                    query=query,
                    source=self.id,
                    with_answer=True,
                    response=response,
                    meta={
                        "template": template,
                        "focus": config.focus,
                        "numbers": config.numbers,
                        "ways": config.ways,
                    },
                )
            )

        dist = {p: geo.distance(nodes[p[0]].x, nodes[p[0]].y, nodes[p[1]].x, nodes[p[1]].y) for p in PAIRS}
        dirs = {
            p: geo.direction(nodes[p[0]].x, nodes[p[0]].y, nodes[p[1]].x, nodes[p[1]].y, config.ways)
            for p in PAIRS
        }
        regions = [geo.region(n.x, n.y) for n in nodes]
        want_dir = config.focus in ("all", "direction")
        want_dist = config.focus in ("all", "distance")
        want_loc = config.focus in ("all", "localization")
        numbers = config.numbers

        if want_dir:
            for a, b in PAIRS:
                t, tpl = _pick(qrng, T.DIRECTION_QUERIES)
                add(
                    "direction",
                    tpl.format(a=nodes[a].label, b=nodes[b].label),
                    dirs[(a, b)],
                    "direction",
                    {"from": nodes[a].label, "to": nodes[b].label},
                    t,
                )
        if want_dist:
            self._relative_distances(qrng, nodes, dist, add)
        if want_loc:
            for i, n in enumerate(nodes):
                t, tpl = _pick(qrng, T.POSITION_RELATIVE_QUERIES)
                add("localization", tpl.format(o=n.label), regions[i], "region", {"object": n.label}, t)
        if want_dist and numbers:
            for a, b in PAIRS:
                t, tpl = _pick(qrng, T.DISTANCE_ABSOLUTE_QUERIES)
                add(
                    "distance",
                    tpl.format(a=nodes[a].label, b=nodes[b].label),
                    geo.fmt_number(dist[(a, b)], style),
                    "number",
                    {"pair": [nodes[a].label, nodes[b].label]},
                    t,
                )
        if want_loc and numbers:
            for n in nodes:
                t, tpl = _pick(qrng, T.POSITION_ABSOLUTE_QUERIES)
                add(
                    "localization",
                    tpl.format(o=n.label),
                    geo.fmt_coord(n.x, n.y, style),
                    "coord",
                    {"object": n.label},
                    t,
                )

        queries = {
            "all": T.DESCRIPTION_QUERIES,
            "direction": T.DIRECTION_DESCRIPTION_QUERIES,
            "distance": T.DISTANCE_DESCRIPTION_QUERIES,
            "localization": T.POSITION_DESCRIPTION_QUERIES,
        }[config.focus]
        t, question = _pick(qrng, queries)
        text = describe(qrng, nodes, dist, dirs, regions, focus=config.focus, numbers=numbers)
        add("description", question, text, "description", {"focus": config.focus, "numbers": numbers}, t)
        return Sample(index=index, scene=scene_d, records=records, image=image)

    @staticmethod
    def _relative_distances(
        qrng: np.random.Generator, nodes: tuple[Node, ...], dist: dict[tuple[int, int], float], add: Any
    ) -> None:
        names = {p: f"{nodes[p[0]].label} and {nodes[p[1]].label}" for p in PAIRS}
        pair_lists = {p: [nodes[p[0]].label, nodes[p[1]].label] for p in PAIRS}
        all_pairs = ", ".join(names[p] for p in PAIRS)
        for _ in range(4):
            t, tpl = _pick(qrng, T.DISTANCE_COMPARE_QUERIES)
            ask = T.DISTANCE_COMPARE_ASKS[t]
            if ask in ("shortest", "longest"):
                cands = list(PAIRS)
                prompt = tpl.format(all_pairs=all_pairs)
            else:
                i, j = (int(v) for v in qrng.choice(3, size=2, replace=False))
                cands = [PAIRS[i], PAIRS[j]]
                prompt = tpl.format(p1=names[cands[0]], p2=names[cands[1]])
            best = (min if ask in ("shortest", "shorter") else max)(cands, key=lambda p: dist[p])
            add(
                "distance",
                prompt,
                names[best],
                "pair",
                {"pairs": [pair_lists[p] for p in cands], "ask": ask},
                t,
            )


def describe(
    rng: np.random.Generator,
    nodes: tuple[Node, ...],
    dist: dict[tuple[int, int], float],
    dirs: dict[tuple[int, int], str],
    regions: list[str],
    *,
    focus: str = "all",
    numbers: bool = True,
) -> str:
    """The holistic description (protocol 6.6): an intro line, then sections in random order.

    Sections: positions (region sentences, then coordinate sentences), directions (one per
    pair), distances (intro phrase, every comparison of two pair distances, then each absolute
    distance). Single-capability descriptions keep only their section, titled. Trailing blank
    lines of the upstream text are dropped.
    """

    def positions() -> list[str]:
        lines = [
            _pick(rng, T.POSITION_PHRASES)[1].format(o=n.label, pos=regions[i]) for i, n in enumerate(nodes)
        ]
        if numbers:
            lines += [T.COORDINATE_SENTENCE.format(o=n.label, x=n.x, y=n.y) for n in nodes]
        return lines

    def directions() -> list[str]:
        return [
            _pick(rng, T.DIRECTION_PHRASES)[1].format(
                a=nodes[a].label, b=nodes[b].label, direction=dirs[(a, b)]
            )
            for a, b in PAIRS
        ]

    def distances() -> list[str]:
        lines = [_pick(rng, T.DISTANCE_INTRO_PHRASES)[1]]
        for i in range(len(PAIRS)):
            for j in range(i + 1, len(PAIRS)):
                p, q = PAIRS[i], PAIRS[j]
                fmt = {
                    "a1": nodes[p[0]].label,
                    "b1": nodes[p[1]].label,
                    "a2": nodes[q[0]].label,
                    "b2": nodes[q[1]].label,
                }
                if dist[p] > dist[q]:
                    lines.append(T.DISTANCE_LONGER.format(**fmt))
                elif dist[p] < dist[q]:
                    lines.append(
                        T.DISTANCE_LONGER.format(a1=fmt["a2"], b1=fmt["b2"], a2=fmt["a1"], b2=fmt["b1"])
                    )
                else:
                    lines.append(T.DISTANCE_SAME.format(**fmt))
        if numbers:
            lines += [
                T.DISTANCE_VALUE.format(a=nodes[a].label, b=nodes[b].label, d=dist[(a, b)]) for a, b in PAIRS
            ]
        return lines

    intro = _pick(rng, T.INTRO_PHRASES)[1]
    if focus != "all":
        only: dict[str, tuple[str, Any]] = {
            "direction": ("Directions", directions),
            "distance": ("Distances", distances),
            "localization": ("Positions", positions),
        }
        heading, section = only[focus]
        return (intro + f"{heading}:\n" + "\n".join(section())).rstrip()
    sections: list[tuple[str | None, Any]] = [
        ("Positions", positions),
        ("Directions", directions),
        (None, distances),
    ]
    order = rng.permutation(len(sections))
    parts = []
    for k in order:
        title, fn = sections[int(k)]  # the distances section has no title upstream
        parts.append((f"{title}:\n" if title else "") + "\n".join(fn()))
    return (intro + "\n\n".join(parts)).rstrip()
