"""Ground-truth labels of the Sparkle protocol, computed from scene coordinates.

Frame: 10 x 10, origin bottom-left, y up. All functions are pure and work on unrounded
coordinates; rounding happens only when a number is written into text.
"""

from __future__ import annotations

import math

#: The 8 direction labels, in the fixed option order of the basic test set (protocol 4).
DIRECTIONS_8: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "right",
    "down left",
    "down",
    "down right",
)
#: The 4-way variant (quadrants).
DIRECTIONS_4: tuple[str, ...] = ("top left", "top right", "down left", "down right")
#: The 9 region labels of the 3 x 3 grid, in the fixed option order of the test set.
REGIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "down left",
    "down",
    "down right",
)

#: Width of the straight-direction sectors (right, top, left, down), in degrees.
STRAIGHT_SPAN = 22.5
#: Cuts of the 3 x 3 localization grid, in frame units: the middle band is narrower.
REGION_CUTS = (4.0, 6.0)


def angle_deg(ax: float, ay: float, bx: float, by: float) -> float:
    """The angle of the vector A -> B in degrees, in [-180, 180]."""
    return math.degrees(math.atan2(by - ay, bx - ax))


def direction_from_angle(theta: float, ways: int = 8) -> str:
    """The direction label of an angle in degrees (protocol section 2).

    Sectors are closed at the lower bound and open at the upper bound; "left" takes both
    +180 and -180.

    >>> direction_from_angle(11.25)
    'top right'
    >>> direction_from_angle(11.2499)
    'right'
    >>> direction_from_angle(-168.75)
    'down left'
    >>> direction_from_angle(180.0)
    'left'
    """
    if not -180.0 <= theta <= 180.0 or math.isnan(theta):
        raise ValueError(f"angle out of range: {theta}")
    if ways == 4:
        if 0.0 <= theta < 90.0:
            return "top right"
        if 90.0 <= theta <= 180.0:
            return "top left"
        if -180.0 <= theta < -90.0:
            return "down left"
        return "down right"
    if ways != 8:
        raise ValueError("ways must be 4 or 8")
    half = STRAIGHT_SPAN / 2  # 11.25
    diag = 90.0 - STRAIGHT_SPAN  # 67.5
    if -half <= theta < half:
        return "right"
    if half <= theta < half + diag:
        return "top right"
    if 90.0 - half <= theta < 90.0 + half:
        return "top"
    if 90.0 + half <= theta < 180.0 - half:
        return "top left"
    if theta >= 180.0 - half or theta < -180.0 + half:
        return "left"
    if -180.0 + half <= theta < -90.0 - half:
        return "down left"
    if -90.0 - half <= theta < -90.0 + half:
        return "down"
    return "down right"


def direction(ax: float, ay: float, bx: float, by: float, ways: int = 8) -> str:
    """The direction label of the move from A to B.

    >>> direction(0, 0, 1, 1)
    'top right'
    >>> direction(5, 5, 5, 1)
    'down'
    """
    if ax == bx and ay == by:
        raise ValueError("direction between identical points is undefined")
    return direction_from_angle(angle_deg(ax, ay, bx, by), ways)


def _band(v: float) -> int:
    lo, hi = REGION_CUTS
    if v < lo:
        return 0
    if v < hi:
        return 1
    return 2


def region(x: float, y: float) -> str:
    """The 3 x 3 localization label of a point (cuts at 4 and 6).

    >>> region(4.0, 6.0)
    'top'
    >>> region(3.999, 5.0)
    'left'
    >>> region(6.0, 0.5)
    'down right'
    """
    col = _band(x)
    row = _band(y)
    names = (
        ("down left", "down", "down right"),
        ("left", "center", "right"),
        ("top left", "top", "top right"),
    )
    return names[row][col]


def distance(ax: float, ay: float, bx: float, by: float) -> float:
    """Euclidean distance."""
    return math.hypot(bx - ax, by - ay)


def fmt_number(v: float, style: str = "upstream") -> str:
    """Write a number the way answers carry it.

    ``upstream`` is the released generator's ``str(round(v, 2))`` ("8.1"); ``fixed`` always
    writes two decimals ("8.10"). Parsers accept both.

    >>> fmt_number(8.1)
    '8.1'
    >>> fmt_number(8.1, "fixed")
    '8.10'
    """
    if style == "fixed":
        return f"{v:.2f}"
    if style != "upstream":
        raise ValueError(f"unknown number style: {style}")
    return str(round(v, 2))


def fmt_coord(x: float, y: float, style: str = "upstream") -> str:
    """Write a coordinate: ``(7.12, 9.35)``.

    >>> fmt_coord(7.123, 9.0)
    '(7.12, 9.0)'
    """
    return f"({fmt_number(x, style)}, {fmt_number(y, style)})"
