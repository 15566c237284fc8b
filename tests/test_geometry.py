"""Ground-truth labels (protocol section 2): sector and grid boundaries, symmetries, scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparkle_vlm import geometry as geo
from sparkle_vlm.scene import DISC_RADIUS, FRAME, MIN_CENTER_DISTANCE, sample_point_scene
from sparkle_vlm.seeding import sample_rng

# Every sector edge of the 8-way labels: closed at the lower bound, open at the upper one.
DIRECTION_CASES = [
    (0.0, "right"),
    (-11.25, "right"),  # lower edge of "right" is closed
    (math.nextafter(11.25, 0), "right"),
    (11.25, "top right"),
    (45.0, "top right"),
    (math.nextafter(78.75, 0), "top right"),
    (78.75, "top"),
    (90.0, "top"),
    (math.nextafter(101.25, 0), "top"),
    (101.25, "top left"),
    (math.nextafter(168.75, 0), "top left"),
    (168.75, "left"),
    (180.0, "left"),  # both ends of the circle are "left"
    (-180.0, "left"),
    (math.nextafter(-168.75, -180), "left"),
    (-168.75, "down left"),
    (math.nextafter(-101.25, -180), "down left"),
    (-101.25, "down"),
    (-90.0, "down"),
    (math.nextafter(-78.75, -180), "down"),
    (-78.75, "down right"),
    (math.nextafter(-11.25, -180), "down right"),
]

QUADRANT_CASES = [
    (0.0, "top right"),
    (math.nextafter(90.0, 0), "top right"),
    (90.0, "top left"),
    (180.0, "top left"),
    (-180.0, "down left"),
    (math.nextafter(-90.0, -180), "down left"),
    (-90.0, "down right"),
    (math.nextafter(0.0, -1), "down right"),
]

# Grid cuts at 4 and 6: the lower cut belongs to the middle band, the upper one to the far band.
REGION_CASES = [
    (4.0, 5.0, "center"),
    (math.nextafter(4.0, 0), 5.0, "left"),
    (6.0, 5.0, "right"),
    (math.nextafter(6.0, 0), 5.0, "center"),
    (5.0, 4.0, "center"),
    (5.0, math.nextafter(4.0, 0), "down"),
    (5.0, 6.0, "top"),
    (5.0, math.nextafter(6.0, 0), "center"),
    (4.0, 6.0, "top"),
    (6.0, 6.0, "top right"),
    (6.0, 4.0, "right"),
    (3.9, 3.9, "down left"),
    (0.5, 9.5, "top left"),
    (9.5, 0.5, "down right"),
    (5.0, 0.5, "down"),
    (0.5, 5.0, "left"),
]


@pytest.mark.parametrize("theta, label", DIRECTION_CASES)
def test_direction_sector_edges(theta: float, label: str) -> None:
    assert geo.direction_from_angle(theta) == label


@pytest.mark.parametrize("theta, label", QUADRANT_CASES)
def test_quadrant_edges(theta: float, label: str) -> None:
    assert geo.direction_from_angle(theta, ways=4) == label


@pytest.mark.parametrize("x, y, label", REGION_CASES)
def test_region_cuts(x: float, y: float, label: str) -> None:
    assert geo.region(x, y) == label


@pytest.mark.parametrize("bad", [180.0001, -180.0001, float("nan"), float("inf")])
def test_direction_rejects_out_of_range_angles(bad: float) -> None:
    with pytest.raises(ValueError, match="angle"):
        geo.direction_from_angle(bad)


def test_direction_rejects_bad_ways_and_identical_points() -> None:
    with pytest.raises(ValueError, match="ways"):
        geo.direction_from_angle(0.0, ways=6)
    with pytest.raises(ValueError, match="identical"):
        geo.direction(1.0, 1.0, 1.0, 1.0)


def test_direction_from_points_matches_protocol_examples() -> None:
    assert geo.direction(0, 0, 1, 0) == "right"
    assert geo.direction(0, 0, 0, 1) == "top"  # y grows upward
    assert geo.direction(0, 0, -1, -1) == "down left"
    # atan2(+0, -1) = 180 and atan2(-0, -1) = -180: both are "left".
    assert geo.direction(5, 5, 1, 5) == "left"
    assert geo.direction_from_angle(math.degrees(math.atan2(-0.0, -1.0))) == "left"


def test_label_sets_and_option_order() -> None:
    assert geo.DIRECTIONS_8 == (
        "top left",
        "top",
        "top right",
        "left",
        "right",
        "down left",
        "down",
        "down right",
    )
    assert geo.REGIONS == (
        "top left", "top", "top right", "left", "center", "right", "down left", "down", "down right",
    )  # fmt: skip
    assert set(geo.DIRECTIONS_4) < set(geo.DIRECTIONS_8) < set(geo.REGIONS)


# -- properties ---------------------------------------------------------------------------------

coord = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
EDGES = (11.25, 78.75, 101.25, 168.75, -11.25, -78.75, -101.25, -168.75, 180.0, -180.0, 0.0, 90.0, -90.0)
OPPOSITE = {
    "right": "left", "top right": "down left", "top": "down", "top left": "down right",
    "left": "right", "down left": "top right", "down": "top", "down right": "top left",
}  # fmt: skip
ROTATE_90 = {
    "right": "top", "top right": "top left", "top": "left", "top left": "down left",
    "left": "down", "down left": "down right", "down": "right", "down right": "top right",
}  # fmt: skip
MIRROR_X = {
    "right": "left", "top right": "top left", "top": "top", "top left": "top right",
    "left": "right", "down left": "down right", "down": "down", "down right": "down left",
}  # fmt: skip
MIRROR_Y = {
    "right": "right", "top right": "down right", "top": "down", "top left": "down left",
    "left": "left", "down left": "top left", "down": "top", "down right": "top right",
}  # fmt: skip


def _off_edges(ax: float, ay: float, bx: float, by: float) -> None:
    """Skip degenerate vectors and angles within float noise of a sector edge."""
    assume(math.hypot(bx - ax, by - ay) > 1e-6)
    theta = geo.angle_deg(ax, ay, bx, by)
    assume(all(abs(theta - e) > 1e-6 for e in EDGES))


@settings(max_examples=300, deadline=None)
@given(coord, coord, coord, coord)
def test_reverse_direction_is_opposite(ax: float, ay: float, bx: float, by: float) -> None:
    _off_edges(ax, ay, bx, by)
    assert geo.direction(bx, by, ax, ay) == OPPOSITE[geo.direction(ax, ay, bx, by)]


@settings(max_examples=300, deadline=None)
@given(coord, coord, coord, coord)
def test_rotation_by_90_degrees_shifts_labels(ax: float, ay: float, bx: float, by: float) -> None:
    _off_edges(ax, ay, bx, by)
    dx, dy = bx - ax, by - ay
    assert geo.direction(0, 0, -dy, dx) == ROTATE_90[geo.direction(ax, ay, bx, by)]


@settings(max_examples=300, deadline=None)
@given(coord, coord, coord, coord)
def test_reflections_swap_labels(ax: float, ay: float, bx: float, by: float) -> None:
    _off_edges(ax, ay, bx, by)
    label = geo.direction(ax, ay, bx, by)
    assert geo.direction(FRAME - ax, ay, FRAME - bx, by) == MIRROR_X[label]
    assert geo.direction(ax, FRAME - ay, bx, FRAME - by) == MIRROR_Y[label]


@settings(max_examples=300, deadline=None)
@given(coord, coord, coord, coord)
def test_quadrants_follow_signs(ax: float, ay: float, bx: float, by: float) -> None:
    dx, dy = bx - ax, by - ay
    assume(abs(dx) > 1e-9 and abs(dy) > 1e-9)
    want = ("top" if dy > 0 else "down") + " " + ("right" if dx > 0 else "left")
    assert geo.direction(ax, ay, bx, by, ways=4) == want


@settings(max_examples=300, deadline=None)
@given(coord, coord)
def test_region_words_agree_with_cuts(x: float, y: float) -> None:
    label = geo.region(x, y)
    assert ("left" in label) == (x < 4.0)
    assert ("right" in label) == (x >= 6.0)
    assert ("top" in label) == (y >= 6.0)
    assert ("down" in label) == (y < 4.0)
    assert (label == "center") == (4.0 <= x < 6.0 and 4.0 <= y < 6.0)


@settings(max_examples=200, deadline=None)
@given(coord, coord, coord, coord)
def test_distance_is_symmetric_and_euclidean(ax: float, ay: float, bx: float, by: float) -> None:
    d = geo.distance(ax, ay, bx, by)
    assert d == geo.distance(bx, by, ax, ay)
    assert d == pytest.approx(float(np.hypot(bx - ax, by - ay)))


@pytest.mark.parametrize(
    "v, upstream, fixed",
    [(8.1, "8.1", "8.10"), (4.374, "4.37", "4.37"), (4.375001, "4.38", "4.38"), (3.0, "3.0", "3.00")],
)
def test_number_formats(v: float, upstream: str, fixed: str) -> None:
    assert geo.fmt_number(v) == upstream
    assert geo.fmt_number(v, "fixed") == fixed


def test_coord_format_and_bad_style() -> None:
    assert geo.fmt_coord(7.9, 6.351) == "(7.9, 6.35)"
    assert geo.fmt_coord(7.9, 6.351, "fixed") == "(7.90, 6.35)"
    with pytest.raises(ValueError, match="style"):
        geo.fmt_number(1.0, "roman")


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**31), st.integers(min_value=0, max_value=10_000))
def test_point_scenes_respect_the_protocol(seed: int, index: int) -> None:
    scene = sample_point_scene(sample_rng("test", "test", seed, index), 3, 2)
    assert sorted(n.label for n in scene.nodes) == [f"N{i}" for i in range(1, 6)]
    assert [n.role for n in scene.nodes] == ["basic"] * 3 + ["distractor"] * 2
    for i, a in enumerate(scene.nodes):
        assert DISC_RADIUS <= a.x <= FRAME - DISC_RADIUS and DISC_RADIUS <= a.y <= FRAME - DISC_RADIUS
        for b in scene.nodes[i + 1 :]:
            assert geo.distance(a.x, a.y, b.x, b.y) >= MIN_CENTER_DISTANCE
