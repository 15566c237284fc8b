"""Exact solvers against independent methods: networkx for grid paths, brute force for TSP."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest

from sparkle_vlm import solvers as S


def _nx_grid(n: int, blocked: set[int], weights: dict[tuple[int, int], int] | None) -> nx.Graph:
    g = nx.Graph()
    for i in range(n):
        for j in range(n):
            a = i * n + j
            if a in blocked:
                continue
            g.add_node(a)
            for ni, nj in ((i + 1, j), (i, j + 1)):
                b = ni * n + nj
                if ni < n and nj < n and b not in blocked:
                    g.add_edge(a, b, weight=1 if weights is None else weights[(a, b)])
    return g


def _random_instance(rng: np.random.Generator, n: int, frac: float, weighted: bool):
    cells = n * n
    start, end = (int(v) for v in rng.choice(cells, 2, replace=False))
    others = [v for v in range(cells) if v not in (start, end)]
    k = round(frac * cells)
    blocked = {int(v) for v in rng.choice(others, k, replace=False)} if k else set()
    weights = None
    if weighted:
        weights = {e: int(rng.integers(1, 10)) for e in S.grid_edges(n, blocked)}
    return start, end, blocked, weights


@pytest.mark.parametrize(
    "n, frac, weighted", [(4, 0.0, False), (5, 0.2, False), (5, 0.0, True), (6, 0.3, True), (3, 0.0, True)]
)
def test_grid_solver_matches_networkx(n: int, frac: float, weighted: bool) -> None:
    rng = np.random.default_rng(1000 * n + int(frac * 100) + weighted)
    solved = 0
    for _ in range(60):
        start, end, blocked, weights = _random_instance(rng, n, frac, weighted)
        g = S.build_grid(n, blocked, weights)
        sol = S.shortest_path(g, start, end)
        ref = _nx_grid(n, blocked, weights)
        if not nx.has_path(ref, start, end):
            assert sol is None
            continue
        solved += 1
        assert sol is not None
        assert sol.length == nx.shortest_path_length(ref, start, end, weight="weight")
        assert sol.count == sum(1 for _ in nx.all_shortest_paths(ref, start, end, weight="weight"))
        assert sol.path[0] == start and sol.path[-1] == end
        assert S.path_length(g, sol.path) == sol.length
        assert not set(sol.path) & blocked
    assert solved >= 20


def test_unweighted_count_is_binomial() -> None:
    g = S.build_grid(5)
    for a, b in [(0, 24), (3, 21), (7, 12)]:
        (ai, aj), (bi, bj) = S.node_ij(a, 5), S.node_ij(b, 5)
        dx, dy = abs(ai - bi), abs(aj - bj)
        sol = S.shortest_path(g, a, b)
        assert sol is not None
        assert sol.length == dx + dy and sol.count == math.comb(dx + dy, dx)


def test_canonical_path_prefers_vertical_moves_first() -> None:
    sol = S.shortest_path(S.build_grid(4), 0, 15)  # N1 -> N16
    assert sol is not None
    assert S.moves_of(sol.path, 4) == ["up"] * 3 + ["right"] * 3


def test_unreachable_and_blocked_endpoints() -> None:
    g = S.build_grid(3, blocked=[1, 3, 4])  # N1 is walled in
    assert S.shortest_path(g, 0, 8) is None
    assert S.shortest_path(S.build_grid(3, blocked=[8]), 0, 8) is None


def test_build_grid_rejects_non_positive_weights() -> None:
    with pytest.raises(ValueError, match="positive"):
        S.build_grid(2, weights={(0, 1): 0})


def _brute(d: np.ndarray, variant: str, start: int = 0) -> float:
    k = d.shape[0]
    best = math.inf
    for perm in itertools.permutations(range(k)):
        if variant != "free" and perm[0] != start:
            continue
        best = min(best, S.tour_length(d, perm, closed=variant == "closed"))
    return best


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("variant", S.TSP_VARIANTS)
def test_held_karp_matches_brute_force(k: int, variant: str) -> None:
    rng = np.random.default_rng(k * 7 + len(variant))
    trials = 6 if k <= 6 else 2
    for _ in range(trials):
        pts = rng.uniform(0.5, 9.5, (k, 2))
        d = S.distance_matrix(pts)
        start = int(rng.integers(k))
        sol = S.held_karp(d, variant, start)
        assert sorted(sol.order) == list(range(k))
        if variant != "free":
            assert sol.order[0] == start
        assert sol.length == pytest.approx(_brute(d, variant, start), rel=1e-12)
        assert sol.length == S.tour_length(d, sol.order, closed=variant == "closed")


def test_held_karp_degenerate_sizes() -> None:
    assert S.held_karp(np.zeros((0, 0))).order == ()
    assert S.held_karp(np.zeros((1, 1))).order == (0,)
    with pytest.raises(ValueError):
        S.held_karp(np.zeros((3, 3)), "loop")


def test_held_karp_twelve_points_is_a_permutation_and_beats_greedy() -> None:
    rng = np.random.default_rng(12)
    d = S.distance_matrix(rng.uniform(0, 10, (12, 2)))
    for variant in S.TSP_VARIANTS:
        sol = S.held_karp(d, variant, 3)
        assert sorted(sol.order) == list(range(12))
        assert sol.length <= S.nearest_neighbour_length(d, variant, 3) + 1e-12


def test_grid_from_scene_round_trip() -> None:
    scene = {"grid": 3, "start": "N1", "end": "N9", "blocked": ["N5"], "weights": {"N1-N2": 4, "N1-N4": 1}}
    g, s, e = S.grid_from_scene(scene)
    assert (s, e) == (0, 8) and g.blocked == frozenset({4})
    assert g.weight[(0, 1)] == 4 and g.weight[(3, 0)] == 1 and g.weight[(1, 2)] == 1
    assert not g.has_edge(1, 4)
