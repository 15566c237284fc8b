"""Exact solvers of the composite tasks: grid shortest paths and Held-Karp travelling salesman.

Grid graphs (SPP): node ``k = i * n + j`` is column ``i`` (from the left) and row ``j`` (from the
bottom), labelled ``N{k + 1}``. Edges join 4-neighbours; a blocked node loses all its edges.
Edge weights are positive integers (all 1 when unweighted), so path lengths compare exactly.

Travelling salesman (TSP): exact Held-Karp dynamic programming over subsets, vectorised with
numpy one subset size at a time (12 points take a few milliseconds). Three variants: a path from
a given start (``fixstart``), a path from any start (``free``) and a closed tour (``closed``).

All functions are pure and deterministic: ties are broken by a fixed rule, documented on each.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: Moves in their fixed tie-break order, with their (di, dj) steps (j grows upwards).
MOVES: tuple[str, ...] = ("up", "down", "left", "right")
MOVE_STEPS: dict[str, tuple[int, int]] = {"up": (0, 1), "down": (0, -1), "left": (-1, 0), "right": (1, 0)}

TSP_VARIANTS = ("fixstart", "free", "closed")


# -- grid graphs ---------------------------------------------------------------------------------


def node_index(i: int, j: int, n: int) -> int:
    """Index of node (column ``i``, row ``j``) of an ``n x n`` grid; its label is ``N{index + 1}``.

    >>> node_index(0, 0, 4), node_index(0, 3, 4), node_index(3, 3, 4)
    (0, 3, 15)
    """
    return i * n + j


def node_ij(k: int, n: int) -> tuple[int, int]:
    """Inverse of :func:`node_index`.

    >>> node_ij(5, 4)
    (1, 1)
    """
    return divmod(k, n)


def grid_label(k: int) -> str:
    """Label of node index ``k``: ``N{k + 1}``."""
    return f"N{k + 1}"


def edge_key(a: int, b: int) -> str:
    """The scene key of the edge between node indices ``a`` and ``b``: ``"N{lo}-N{hi}"``.

    >>> edge_key(5, 1)
    'N2-N6'
    """
    lo, hi = (a, b) if a < b else (b, a)
    return f"N{lo + 1}-N{hi + 1}"


def grid_edges(n: int, blocked: Iterable[int] = ()) -> list[tuple[int, int]]:
    """All edges ``(a, b)`` with ``a < b`` between unblocked nodes, in a fixed order."""
    bl = set(blocked)
    out = []
    for i in range(n):
        for j in range(n):
            a = node_index(i, j, n)
            if a in bl:
                continue
            if j + 1 < n and a + 1 not in bl:
                out.append((a, a + 1))
            if i + 1 < n and a + n not in bl:
                out.append((a, a + n))
    return out


@dataclass(frozen=True)
class GridGraph:
    """A compiled grid graph: ``step[k][move]`` is the neighbour reached by ``move`` (or -1 when the
    move leaves the grid or the edge is missing), ``weight[(a, b)]`` the length of edge a-b."""

    n: int
    blocked: frozenset[int]
    step: tuple[tuple[int, int, int, int], ...]
    weight: Mapping[tuple[int, int], int]

    def neighbours(self, k: int) -> list[tuple[int, int]]:
        """``(neighbour, weight)`` pairs of node ``k`` in :data:`MOVES` order."""
        return [(v, self.weight[(k, v)]) for v in self.step[k] if v >= 0]

    def has_edge(self, a: int, b: int) -> bool:
        return (a, b) in self.weight


def build_grid(
    n: int, blocked: Iterable[int] = (), weights: Mapping[tuple[int, int], int] | None = None
) -> GridGraph:
    """Compile an ``n x n`` grid. ``weights`` maps ``(a, b)`` (a < b) to a positive integer; missing
    edges weigh 1. Blocked nodes have no edges (their ``step`` entries are all -1)."""
    bl = frozenset(blocked)
    weight: dict[tuple[int, int], int] = {}
    for a, b in grid_edges(n, bl):
        w = 1 if weights is None else int(weights.get((a, b), 1))
        if w <= 0:
            raise ValueError(f"edge weights must be positive, got {w} on {edge_key(a, b)}")
        weight[(a, b)] = w
        weight[(b, a)] = w
    step = []
    for k in range(n * n):
        i, j = node_ij(k, n)
        row = []
        for m in MOVES:
            di, dj = MOVE_STEPS[m]
            ni, nj = i + di, j + dj
            v = node_index(ni, nj, n) if 0 <= ni < n and 0 <= nj < n else -1
            row.append(v if v >= 0 and (k, v) in weight else -1)
        step.append((row[0], row[1], row[2], row[3]))
    return GridGraph(n, bl, tuple(step), weight)


def dijkstra(g: GridGraph, source: int) -> list[float]:
    """Shortest-path lengths from ``source`` to every node (``inf`` if unreachable)."""
    dist = [math.inf] * (g.n * g.n)
    dist[source] = 0
    heap = [(0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in g.neighbours(u):
            nd = d + w
            if nd < dist[v]:
                dist[v] = nd
                heapq.heappush(heap, (nd, v))
    return dist


@dataclass(frozen=True)
class PathSolution:
    """The answer to one grid shortest-path instance.

    ``length`` is the optimal total weight (the hop count when unweighted), ``path`` one canonical
    optimal node sequence from start to end (inclusive), ``count`` the number of optimal paths.
    """

    length: int
    path: tuple[int, ...]
    count: int

    @property
    def hops(self) -> int:
        return len(self.path) - 1


def moves_of(path: Sequence[int], n: int) -> list[str]:
    """The move names of a node path.

    >>> moves_of([0, 1, 5], 4)
    ['up', 'right']
    """
    out = []
    for a, b in zip(path, path[1:], strict=False):
        ai, aj = node_ij(a, n)
        bi, bj = node_ij(b, n)
        for m, (di, dj) in MOVE_STEPS.items():
            if (bi - ai, bj - aj) == (di, dj):
                out.append(m)
                break
        else:
            raise ValueError(f"nodes {a} and {b} are not neighbours")
    return out


def shortest_path(g: GridGraph, start: int, end: int) -> PathSolution | None:
    """Solve one instance exactly, or None when ``end`` cannot be reached.

    The canonical path walks from the start and at each node takes the first move in
    :data:`MOVES` order (up, down, left, right) that stays on some optimal path, so unweighted
    open grids give "all vertical moves, then all horizontal moves".

    >>> sol = shortest_path(build_grid(4), 0, 5)
    >>> sol.length, sol.count, moves_of(sol.path, 4)
    (2, 2, ['up', 'right'])
    """
    if start in g.blocked or end in g.blocked:
        return None
    to_end = dijkstra(g, end)
    if math.isinf(to_end[start]):
        return None
    path = [start]
    u = start
    while u != end:
        for v in g.step[u]:
            if v >= 0 and g.weight[(u, v)] + to_end[v] == to_end[u]:
                path.append(v)
                u = v
                break
        else:  # pragma: no cover - impossible with exact integer distances
            raise RuntimeError("no optimal successor")
    # Count optimal paths on the shortest-path DAG, nodes in order of distance from the start.
    from_start = dijkstra(g, start)
    total = from_start[end]
    count = [0] * (g.n * g.n)
    count[start] = 1
    order = sorted((d, k) for k, d in enumerate(from_start) if d + to_end[k] == total)
    for d, v in order:
        if v == start:
            continue
        count[v] = sum(count[u] for u, w in g.neighbours(v) if from_start[u] + w == d)
    return PathSolution(int(to_end[start]), tuple(path), count[end])


def path_length(g: GridGraph, path: Sequence[int]) -> int | None:
    """Total weight of a node path, or None if two consecutive nodes are not joined by an edge."""
    total = 0
    for a, b in zip(path, path[1:], strict=False):
        w = g.weight.get((a, b))
        if w is None:
            return None
        total += w
    return total


# -- travelling salesman -------------------------------------------------------------------------


def distance_matrix(points: Sequence[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Euclidean distances between all points, shape (k, k)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    diff = p[:, None, :] - p[None, :, :]
    return np.sqrt((diff**2).sum(axis=-1))


def tour_length(d: np.ndarray, order: Sequence[int], closed: bool = False) -> float:
    """Length of visiting ``order`` (a path; plus the edge back to the start when ``closed``).

    Summed left to right in Python floats, so equal orders give equal lengths bit for bit.
    """
    total = 0.0
    for a, b in zip(order, order[1:], strict=False):
        total += float(d[a, b])
    if closed and len(order) > 1:
        total += float(d[order[-1], order[0]])
    return total


@lru_cache(maxsize=16)
def _layers(k: int) -> tuple[np.ndarray, ...]:
    """Subset masks of ``k`` bits grouped by popcount (layer s holds masks with s bits)."""
    masks = np.arange(1 << k, dtype=np.int64)
    pop = np.zeros(1 << k, dtype=np.int64)
    for b in range(k):
        pop += (masks >> b) & 1
    return tuple(masks[pop == s] for s in range(k + 1))


@dataclass(frozen=True)
class TourSolution:
    """An optimal TSP answer: ``order`` of point indices and its ``length``.

    For ``closed`` the order starts at the start point and does not repeat it; the length
    includes the edge back to the start.
    """

    length: float
    order: tuple[int, ...]


def held_karp(d: np.ndarray, variant: str = "fixstart", start: int = 0) -> TourSolution:
    """Exact TSP by Held-Karp dynamic programming over subsets.

    ``variant``: ``fixstart`` (open path from ``start``), ``free`` (open path, any start) or
    ``closed`` (cycle through ``start``). ``dp[mask, j]`` is the shortest path that visits the
    set ``mask`` and ends at ``j``; each subset size is one vectorised numpy step. Ties go to
    the lowest point index at every step, so the result is deterministic.

    >>> d = distance_matrix([(0, 0), (3, 0), (1, 0), (2, 0)])
    >>> held_karp(d, "fixstart", 0).order
    (0, 2, 3, 1)
    >>> held_karp(d, "free").length
    3.0
    """
    if variant not in TSP_VARIANTS:
        raise ValueError(f"unknown TSP variant {variant!r}")
    k = d.shape[0]
    if k == 0:
        return TourSolution(0.0, ())
    if not 0 <= start < k:
        raise ValueError(f"start {start} out of range for {k} points")
    if k == 1:
        return TourSolution(0.0, (0,))
    full = (1 << k) - 1
    dp = np.full((1 << k, k), np.inf)
    parent = np.full((1 << k, k), -1, dtype=np.int8)
    if variant == "free":
        idx = np.arange(k)
        dp[1 << idx, idx] = 0.0
    else:
        dp[1 << start, start] = 0.0
    layers = _layers(k)
    for s in range(2, k + 1):
        masks = layers[s]
        for j in range(k):
            bit = 1 << j
            sel = masks[(masks & bit) != 0]
            prev = sel ^ bit
            # cand[m, i] = best path over prev[m] ending at i, then the edge i -> j.
            cand = dp[prev] + d[:, j]
            best = np.argmin(cand, axis=1)
            dp[sel, j] = cand[np.arange(len(sel)), best]
            parent[sel, j] = best
    last_costs = dp[full] + d[:, start] if variant == "closed" else dp[full]
    last = int(np.argmin(last_costs))
    order = [last]
    mask = full
    while True:
        p = int(parent[mask, order[-1]])
        if p < 0:
            break
        mask ^= 1 << order[-1]
        order.append(p)
    order.reverse()
    tour = tuple(order)
    return TourSolution(tour_length(d, tour, closed=variant == "closed"), tour)


def nearest_neighbour_length(d: np.ndarray, variant: str = "fixstart", start: int = 0) -> float:
    """Length of the greedy nearest-neighbour answer (a difficulty measure: optimal / greedy).

    For ``free`` every start is tried and the best greedy path is kept.
    """
    k = d.shape[0]
    starts = range(k) if variant == "free" else (start,)
    best = math.inf
    for s in starts:
        order = [s]
        left = set(range(k)) - {s}
        while left:
            u = order[-1]
            v = min(left, key=lambda x: (d[u, x], x))
            order.append(v)
            left.remove(v)
        best = min(best, tour_length(d, order, closed=variant == "closed"))
    return best


# -- scene records -------------------------------------------------------------------------------


def label_index(label: str) -> int:
    """Node index of a label ``N<k>`` (``k - 1``); raises ValueError on anything else.

    >>> label_index("N6")
    5
    """
    if not label.startswith("N"):
        raise ValueError(f"not a node label: {label!r}")
    return int(label[1:]) - 1


def grid_from_scene(scene: Mapping[str, Any]) -> tuple[GridGraph, int, int]:
    """The compiled graph, start index and end index of a grid scene record."""
    n = int(scene["grid"])
    blocked = [label_index(lb) for lb in scene.get("blocked") or ()]
    weights: dict[tuple[int, int], int] = {}
    for key, w in (scene.get("weights") or {}).items():
        a, b = (label_index(p) for p in key.split("-"))
        weights[(min(a, b), max(a, b))] = int(w)
    g = build_grid(n, blocked, weights or None)
    return g, label_index(str(scene["start"])), label_index(str(scene["end"]))
