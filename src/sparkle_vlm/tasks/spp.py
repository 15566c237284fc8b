"""Shortest path problem (SPP) on an n x n grid graph (protocol sections 5, 6.8, 9).

One record per instance. The paper's set is a 4-connected 4 x 4 or 5 x 5 grid without obstacles,
start green, end red, answered as a Python list of moves. Harder ladders add obstacles (blocked
nodes, drawn dark gray with a white X) and integer edge weights 1..9 (drawn on the edges); text
twins state the same instance in words, with no image.

Distinct instances. A 4 x 4 grid has only 96 unordered start/end pairs at Manhattan distance >= 2,
so 200 distinct instances cannot exist. Policy: the valid unordered pairs (Manhattan distance >=
``min_hops``) are listed in a fixed order; instance ``i`` takes position ``i mod P`` of a seeded
permutation of all ``P`` pairs, a fresh permutation per epoch ``i // P`` (seeded from (scene
variant, split, seed, epoch) only, so every index stays random-access). The first ``P`` instances
therefore never repeat an unordered pair, and each pair appears ``floor(n/P)`` or ``ceil(n/P)``
times overall. Which end of the pair is the start is a fair coin per instance. Because each
unordered pair is equally likely, path lengths follow upstream's distribution (start and end
uniform over nodes, rejected below ``min_hops``). With obstacles or weights the scene itself also
varies: blocked nodes (a fixed count, ``round(obstacles * n * n)``, never the start or end) are
redrawn until the end is reachable, and weights are drawn per instance.

Answers: ``moves`` prompts get a Python list of moves (``"['up', 'right']"``); ``labels`` and
``steps`` prompts a JSON list of node labels from start to end inclusive. The verifier accepts any
shortest path, in either format (see :mod:`sparkle_vlm.answers.composite`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from sparkle_vlm import solvers as S
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.records import make_record
from sparkle_vlm.render.grid import render_grid
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import composite_templates as T
from sparkle_vlm.tasks.base import Sample, Task, TaskConfig, register

PROMPTS = ("moves", "labels", "steps")
MODALITIES = ("image", "text")
MIN_GRID, MAX_GRID = 2, 10
MAX_OBSTACLES = 0.4
#: Redraws of the blocked nodes before giving up on one instance.
MAX_OBSTACLE_TRIES = 10_000


@dataclass(frozen=True)
class SppConfig(TaskConfig):
    """Shortest-path options.

    ``grid``: side n of the n x n grid; ``obstacles``: fraction of nodes removed;
    ``weighted``: integer edge weights 1..9; ``prompt``: "moves" (upstream), "labels" or
    "steps"; ``modality``: "image" or "text" (text twin, no image); ``min_hops``: the
    smallest Manhattan distance between start and end.
    """

    grid: int = 4
    obstacles: float = 0.0
    weighted: bool = False
    prompt: str = "moves"
    modality: str = "image"
    min_hops: int = 2

    def validate(self) -> None:
        super().validate()
        if (
            isinstance(self.grid, bool)
            or not isinstance(self.grid, int)
            or not MIN_GRID <= self.grid <= MAX_GRID
        ):
            raise ConfigError("grid", f"must be an integer in [{MIN_GRID}, {MAX_GRID}], got {self.grid!r}")
        if (
            isinstance(self.obstacles, bool)
            or not isinstance(self.obstacles, (int, float))
            or not 0.0 <= self.obstacles <= MAX_OBSTACLES
        ):
            raise ConfigError(
                "obstacles", f"must be a fraction in [0, {MAX_OBSTACLES}], got {self.obstacles!r}"
            )
        if not isinstance(self.weighted, bool):
            raise ConfigError("weighted", f"must be true or false, got {self.weighted!r}")
        if self.prompt not in PROMPTS:
            raise ConfigError("prompt", f"must be one of {', '.join(PROMPTS)}, got {self.prompt!r}")
        if self.modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        far = 2 * (self.grid - 1)
        if (
            isinstance(self.min_hops, bool)
            or not isinstance(self.min_hops, int)
            or not 1 <= self.min_hops <= far
        ):
            raise ConfigError(
                "min_hops",
                f"must be an integer in [1, {far}] for a {self.grid}x{self.grid} grid, got {self.min_hops!r}",
            )

    @property
    def n_blocked(self) -> int:
        return round(self.obstacles * self.grid * self.grid)


def scene_key(cfg: SppConfig) -> str:
    """The variant name of the scenes: it seeds them, so prompt and modality twins share scenes.

    >>> scene_key(SppConfig(grid=5, obstacles=0.2, weighted=True))
    'spp5-obst20-w'
    """
    key = f"spp{cfg.grid}"
    if cfg.obstacles:
        pct = f"{cfg.obstacles * 100:.4g}".replace(".", "p")
        key += f"-obst{pct}"
    if cfg.weighted:
        key += "-w"
    if cfg.min_hops != 2:
        key += f"-h{cfg.min_hops}"
    return key


@lru_cache(maxsize=64)
def valid_pairs(grid: int, min_hops: int) -> tuple[tuple[int, int], ...]:
    """All unordered node pairs ``(a, b)``, ``a < b``, at Manhattan distance >= ``min_hops``.

    >>> len(valid_pairs(4, 2)), len(valid_pairs(5, 2))
    (96, 260)
    """
    out = []
    for a in range(grid * grid):
        ai, aj = S.node_ij(a, grid)
        for b in range(a + 1, grid * grid):
            bi, bj = S.node_ij(b, grid)
            if abs(ai - bi) + abs(aj - bj) >= min_hops:
                out.append((a, b))
    return tuple(out)


@lru_cache(maxsize=256)
def _pair_order(key: str, split: str, seed: int, epoch: int, count: int) -> tuple[int, ...]:
    rng = sample_rng(f"{key}/pairs", split, seed, epoch)
    return tuple(int(v) for v in rng.permutation(count))


def draw_instance(
    cfg: SppConfig, split: str, seed: int, index: int
) -> tuple[dict[str, Any], S.PathSolution, dict[str, Any]]:
    """Scene record, solution and pair bookkeeping of instance ``index`` (pure)."""
    n = cfg.grid
    key = scene_key(cfg)
    pairs = valid_pairs(n, cfg.min_hops)
    epoch, pos = divmod(index, len(pairs))
    a, b = pairs[_pair_order(key, split, seed, epoch, len(pairs))[pos]]
    rng = sample_rng(key, split, seed, index)
    start, end = (a, b) if int(rng.integers(2)) == 0 else (b, a)

    blocked: list[int] = []
    g = S.build_grid(n)
    k = cfg.n_blocked
    if k:
        others = np.array([v for v in range(n * n) if v not in (start, end)])
        for _ in range(MAX_OBSTACLE_TRIES):
            blocked = sorted(int(v) for v in rng.choice(others, size=k, replace=False))
            g = S.build_grid(n, blocked)
            if S.shortest_path(g, start, end) is not None:
                break
        else:
            raise SparkleError(
                f"obstacles: no reachable end after {MAX_OBSTACLE_TRIES} draws of {k} blocked nodes "
                f"(instance {index}); use a lower obstacle fraction"
            )
    weights: dict[str, int] = {}
    if cfg.weighted:
        edges = S.grid_edges(n, blocked)
        ws = rng.integers(1, 10, size=len(edges))
        weights = {S.edge_key(a_, b_): int(w) for (a_, b_), w in zip(edges, ws, strict=True)}
        g = S.build_grid(n, blocked, {e: int(w) for e, w in zip(edges, ws, strict=True)})
    sol = S.shortest_path(g, start, end)
    if sol is None:  # pragma: no cover - guaranteed by the loop above
        raise RuntimeError("unreachable end")
    nodes = []
    for v in range(n * n):
        i, j = S.node_ij(v, n)
        nodes.append(
            {"label": S.grid_label(v), "i": i, "j": j, "x": (i + 0.5) / n * 10, "y": (j + 0.5) / n * 10}
        )
    scene = {
        "grid": n,
        "nodes": nodes,
        "start": S.grid_label(start),
        "end": S.grid_label(end),
        "blocked": [S.grid_label(v) for v in blocked],
        "weights": weights,
    }
    return scene, sol, {"epoch": epoch, "pairs": len(pairs)}


def answer_text(sol: S.PathSolution, n: int, prompt: str) -> str:
    """The canonical answer: a Python list of moves, or a JSON list of labels (start included).

    >>> sol = S.shortest_path(S.build_grid(4), 0, 5)
    >>> answer_text(sol, 4, "moves"), answer_text(sol, 4, "labels")
    ("['up', 'right']", '["N1", "N2", "N6"]')
    """
    if prompt == "moves":
        return str(S.moves_of(sol.path, n))
    return json.dumps([S.grid_label(v) for v in sol.path])


def prompt_for(cfg: SppConfig, scene: dict[str, Any]) -> tuple[str, int | None]:
    """The question text and the upstream template index (None for text twins)."""
    n = cfg.grid
    if cfg.modality == "image":
        t = T.SPP_PROMPT_TEMPLATE[cfg.prompt]
        text = T.SHORTEST_QUESTION_TEMPLATES[t].replace("{n}", str(n * n))
        notes = []
        if scene["blocked"]:
            notes.append(T.SPP_OBSTACLE_NOTE)
        if scene["weights"]:
            notes.append(T.SPP_WEIGHT_NOTE)
        if notes:
            text = text.rstrip("\n") + "\n" + " ".join(notes)
        return text, t
    si, sj = S.node_ij(S.label_index(scene["start"]), n)
    ei, ej = S.node_ij(S.label_index(scene["end"]), n)
    parts = [
        T.SPP_TEXT_SCENE.format(
            grid=n, n=n * n, start=scene["start"], si=si, sj=sj, end=scene["end"], ei=ei, ej=ej
        )
    ]
    if scene["blocked"]:
        parts.append(T.SPP_TEXT_BLOCKED.format(blocked=", ".join(scene["blocked"])))
    if scene["weights"]:
        parts.append(
            T.SPP_TEXT_WEIGHTS.format(weights=", ".join(f"{k}: {w}" for k, w in scene["weights"].items()))
        )
    parts.append(T.SPP_TEXT_TASK[cfg.prompt])
    return "\n".join(parts), None


@register
class SppTask(Task):
    id = "spp"
    version = 1
    split = "test"
    description = "Shortest path on an n x n grid graph (move or label list; obstacles, weights, text twins)"
    config_cls = SppConfig

    def tag(self, config: TaskConfig) -> str:
        assert isinstance(config, SppConfig)
        tag = scene_key(config)
        if config.prompt != "moves":
            tag += f"-{config.prompt}"
        if config.modality == "text":
            tag += "-text"
        return tag

    def render(self, scene: dict[str, Any], size: int):
        return render_grid(scene, size)

    def sample(self, config: TaskConfig, seed: int, index: int) -> Sample:
        assert isinstance(config, SppConfig)
        scene, sol, pairing = draw_instance(config, self.split, seed, index)
        n = config.grid
        start, end = S.label_index(scene["start"]), S.label_index(scene["end"])
        (si, sj), (ei, ej) = S.node_ij(start, n), S.node_ij(end, n)
        prompt, template = prompt_for(config, scene)
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
            answer=answer_text(sol, n, config.prompt),
            choices=None,
            answer_type="moves" if config.prompt == "moves" else "labels",
            scene=scene,
            query={"start": scene["start"], "end": scene["end"]},
            source=self.id,
            with_answer=False,
            meta={
                "prompt": config.prompt,
                "modality": config.modality,
                "template": template,
                "difficulty": {
                    "grid": n,
                    "obstacles": config.obstacles,
                    "blocked": len(scene["blocked"]),
                    "weighted": config.weighted,
                    "manhattan": abs(si - ei) + abs(sj - ej),
                    "optimal_length": sol.length,
                    "optimal_hops": sol.hops,
                    "num_optimal_paths": sol.count,
                },
                "pairing": pairing,
            },
        )
        return Sample(index=index, scene=scene, records=[record], image=image)
