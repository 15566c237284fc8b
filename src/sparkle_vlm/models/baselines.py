"""Reference backends that need no model: ``random:`` (chance level) and ``oracle:`` (perfect).

``oracle`` answers every request with the record's canonical ``answer``: a full run must score
100%, which checks the whole harness (loading, prompting, parsing, scoring) end to end.

``random`` draws a well-formed answer uniformly from the answer vocabulary of the record's
``answer_type``, reading only ``scene``/``query``/``choices``/``meta`` (never ``answer``):

- multiple choice (``choices`` set): a uniform option letter;
- ``direction``: one of the 8 labels (4 when the record says ``ways: 4``);
- ``region``: one of the 9 region labels;
- ``pair``: one of the candidate pairs of the question (else any pair of scene objects);
- ``number``: a distance uniform over the range two disc centres can be apart;
- ``coord``: a point uniform over the range of disc centres;
- ``description``: a description in the training format with random regions, coordinates,
  directions, comparisons and distances for the scene's objects;
- ``moves`` / ``labels`` (shortest path): a random walk of valid moves (inside the grid, never
  onto a blocked node) from the start, as long as the optimal path;
- ``tour`` (TSP): a random order of the points, beginning at the required start if any.

Draws are seeded by (``GenerationConfig.seed``, record id), so a rerun gives the same answers
whatever the batch order. An answer type with no known vocabulary gives a failed completion.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

import numpy as np

from sparkle_vlm import geometry as geo
from sparkle_vlm.errors import ConfigError
from sparkle_vlm.models.base import Backend, Completion, GenerationConfig, Request
from sparkle_vlm.models.options import Options
from sparkle_vlm.scene import DISC_RADIUS, FRAME, MIN_CENTER_DISTANCE
from sparkle_vlm.seeding import sample_rng
from sparkle_vlm.tasks import templates as T

#: (di, dj) of each move: i is the column (right = +1), j the row from the bottom (up = +1).
MOVES: dict[str, tuple[int, int]] = {"up": (0, 1), "down": (0, -1), "left": (-1, 0), "right": (1, 0)}


def record_rng(record_id: str, seed: int) -> np.random.Generator:
    """The generator of the random baseline for one record.

    >>> float(record_rng("x-test-s0-i000001-q00", 0).random()) == float(record_rng("x-test-s0-i000001-q00", 0).random())
    True
    """
    return sample_rng(f"baseline/random/{record_id}", "eval", seed, 0)


def _pick(rng: np.random.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    return options[int(rng.integers(len(options)))]


def _basic_labels(record: dict[str, Any]) -> list[str]:
    nodes = (record.get("scene") or {}).get("nodes") or []
    return [str(n["label"]) for n in nodes if n.get("role", "basic") == "basic"]


def _ways(record: dict[str, Any]) -> int:
    meta, query = record.get("meta") or {}, record.get("query") or {}
    return int(meta.get("ways", query.get("ways", 8)))


def _directions(record: dict[str, Any]) -> tuple[str, ...]:
    return geo.DIRECTIONS_4 if _ways(record) == 4 else geo.DIRECTIONS_8


def _frame(record: dict[str, Any]) -> float:
    return float((record.get("scene") or {}).get("frame", FRAME))


def _random_distance(rng: np.random.Generator, frame: float) -> float:
    # Disc centres lie in [r, frame - r]^2 and at least MIN_CENTER_DISTANCE apart.
    return float(rng.uniform(MIN_CENTER_DISTANCE, (frame - 2 * DISC_RADIUS) * math.sqrt(2)))


def _random_point(rng: np.random.Generator, frame: float) -> tuple[float, float]:
    x, y = rng.uniform(DISC_RADIUS, frame - DISC_RADIUS, 2)
    return float(x), float(y)


def random_pair(record: dict[str, Any], rng: np.random.Generator) -> str:
    """One of the question's candidate pairs, written like the answers ("N1 and N3")."""
    pairs = [list(p) for p in (record.get("query") or {}).get("pairs") or []]
    if not pairs:
        labels = _basic_labels(record)
        pairs = [[a, b] for i, a in enumerate(labels) for b in labels[i + 1 :]]
    if not pairs:
        raise ValueError("no pairs in query or scene")
    a, b = _pick(rng, pairs)
    return f"{a} and {b}"


def random_description(record: dict[str, Any], rng: np.random.Generator) -> str:
    """A description in the training format whose every fact is drawn at random."""
    labels = _basic_labels(record)
    if not labels:
        raise ValueError("no objects in scene")
    query = record.get("query") or {}
    focus = query.get("focus", "all")
    numbers = bool(query.get("numbers", True))
    frame = _frame(record)
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
    sections: list[str] = []
    if focus in ("all", "localization"):
        lines = [T.POSITION_PHRASES[0].format(o=o, pos=_pick(rng, geo.REGIONS)) for o in labels]
        if numbers:
            for o in labels:
                x, y = _random_point(rng, frame)
                lines.append(T.COORDINATE_SENTENCE.format(o=o, x=x, y=y))
        sections.append("\n".join(lines))
    if focus in ("all", "direction"):
        dirs = _directions(record)
        sections.append(
            "\n".join(T.DIRECTION_PHRASES[0].format(a=a, b=b, direction=_pick(rng, dirs)) for a, b in pairs)
        )
    if focus in ("all", "distance") and pairs:
        dist = {p: _random_distance(rng, frame) for p in pairs}
        lines = [T.DISTANCE_INTRO_PHRASES[0]]
        for i, p in enumerate(pairs):
            for q in pairs[i + 1 :]:
                lo, hi = (p, q) if dist[p] < dist[q] else (q, p)
                lines.append(T.DISTANCE_LONGER.format(a1=hi[0], b1=hi[1], a2=lo[0], b2=lo[1]))
        if numbers:
            lines += [T.DISTANCE_VALUE.format(a=a, b=b, d=dist[(a, b)]) for a, b in pairs]
        sections.append("\n".join(lines))
    return T.INTRO_PHRASES[0] + "\n\n".join(sections)


def _grid_cells(scene: dict[str, Any]) -> tuple[int, dict[str, tuple[int, int]]]:
    n = int(scene["grid"])
    cells: dict[str, tuple[int, int]] = {}
    for node in scene.get("nodes") or []:
        if "i" in node and "j" in node:
            cells[str(node["label"])] = (int(node["i"]), int(node["j"]))
    if not cells:  # labels follow N{i*n + j + 1} (protocol section 5)
        cells = {f"N{i * n + j + 1}": (i, j) for i in range(n) for j in range(n)}
    return n, cells


def _bfs_hops(
    n: int, blocked: set[tuple[int, int]], start: tuple[int, int], end: tuple[int, int]
) -> int | None:
    seen = {start: 0}
    todo = deque([start])
    while todo:
        cur = todo.popleft()
        if cur == end:
            return seen[cur]
        for di, dj in MOVES.values():
            nxt = (cur[0] + di, cur[1] + dj)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n and nxt not in blocked and nxt not in seen:
                seen[nxt] = seen[cur] + 1
                todo.append(nxt)
    return None


def random_walk(record: dict[str, Any], rng: np.random.Generator) -> str:
    """A random walk of valid grid moves from the start, as long as the optimal path.

    Answered in the record's format: a Python list of moves (``moves``) or a JSON list of node
    labels from the start (``labels``).
    """
    scene = record.get("scene") or {}
    query = record.get("query") or {}
    n, cells = _grid_cells(scene)
    by_cell = {ij: label for label, ij in cells.items()}
    start = cells[str(query.get("start", scene.get("start")))]
    end = cells[str(query.get("end", scene.get("end")))]
    blocked = {cells[str(b)] for b in scene.get("blocked") or []}
    hops = ((record.get("meta") or {}).get("difficulty") or {}).get("optimal_hops")
    if hops is None:
        hops = _bfs_hops(n, blocked, start, end)
        if hops is None:
            raise ValueError("end is unreachable")
    pos, moves, path = start, [], [by_cell[start]]
    for _ in range(int(hops)):
        options = [
            (name, (pos[0] + di, pos[1] + dj))
            for name, (di, dj) in MOVES.items()
            if 0 <= pos[0] + di < n and 0 <= pos[1] + dj < n and (pos[0] + di, pos[1] + dj) not in blocked
        ]
        if not options:  # a start boxed in by obstacles: stop where we are
            break
        name, pos = _pick(rng, options)
        moves.append(name)
        path.append(by_cell[pos])
    if record.get("answer_type") == "labels":
        return json.dumps(path)
    return str(moves)


def random_tour(record: dict[str, Any], rng: np.random.Generator) -> str:
    """A random order of the scene's points (JSON list), starting at the required start if any."""
    labels = _basic_labels(record)
    if not labels:
        raise ValueError("no objects in scene")
    start = (record.get("query") or {}).get("start")
    rest = [lb for lb in labels if lb != start] if start in labels else labels
    order = [rest[int(k)] for k in rng.permutation(len(rest))]
    return json.dumps(([start] if start in labels else []) + order)


def random_answer(record: dict[str, Any], seed: int = 0) -> str:
    """A uniformly random, well-formed answer to ``record`` (see the module docstring).

    Raises ``ValueError`` for an answer type without a known vocabulary.

    >>> rec = {"id": "r1", "answer_type": "mcq", "choices": ["top", "down", "left"]}
    >>> random_answer(rec) in ("A", "B", "C"), random_answer(rec) == random_answer(rec)
    (True, True)
    """
    rng = record_rng(str(record.get("id", "")), seed)
    kind = record.get("answer_type")
    choices = record.get("choices")
    if choices:
        return chr(ord("A") + int(rng.integers(len(choices))))
    frame = _frame(record)
    if kind == "direction":
        return str(_pick(rng, _directions(record)))
    if kind == "region":
        return str(_pick(rng, geo.REGIONS))
    if kind == "pair":
        return random_pair(record, rng)
    if kind == "number":
        return geo.fmt_number(_random_distance(rng, frame))
    if kind == "coord":
        return geo.fmt_coord(*_random_point(rng, frame))
    if kind == "description":
        return random_description(record, rng)
    if kind in ("moves", "labels"):
        return random_walk(record, rng)
    if kind == "tour":
        return random_tour(record, rng)
    raise ValueError(f"no random answer for answer_type {kind!r}")


def _no_options(backend: str, spec: str, options: dict[str, Any] | None) -> None:
    if spec:
        raise ConfigError(
            "--model", f"{backend} takes no model name; write {backend}: (got {backend}:{spec})"
        )
    opts = Options(backend, options)
    opts.integer("batch_size", None, minimum=1)  # accepted for a uniform CLI; meaningless here
    opts.finish()


class RandomBackend(Backend):
    """Chance level: a seeded random answer from each record's answer vocabulary."""

    name = "random"

    def __init__(self, spec: str = "", options: dict[str, Any] | None = None) -> None:
        _no_options(self.name, spec, options)

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        out = []
        for req in requests:
            record = {"id": req.id, **req.record} if "id" not in req.record else req.record
            try:
                out.append(Completion(random_answer(record, config.seed)))
            except (ValueError, KeyError, TypeError) as exc:
                out.append(Completion("", error=f"random baseline: record {req.id}: {exc}"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "seeded_by": "generation seed + record id"}


class OracleBackend(Backend):
    """Perfect answers: the record's canonical ``answer`` (a harness self-check)."""

    name = "oracle"

    def __init__(self, spec: str = "", options: dict[str, Any] | None = None) -> None:
        _no_options(self.name, spec, options)

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        out = []
        for req in requests:
            answer = req.record.get("answer")
            if answer is None:
                out.append(Completion("", error=f"oracle: record {req.id} has no answer"))
            else:
                out.append(Completion(str(answer)))
        return out


def make_random(spec: str, options: dict[str, Any]) -> RandomBackend:
    """Factory registered as ``random``."""
    return RandomBackend(spec, options)


def make_oracle(spec: str, options: dict[str, Any]) -> OracleBackend:
    """Factory registered as ``oracle``."""
    return OracleBackend(spec, options)
