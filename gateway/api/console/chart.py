"""A line chart drawn on the server: sample values scaled into an SVG polyline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 120


@dataclass(frozen=True)
class LineChart:
    """What the template draws: the polyline's points, how many, and the axis' scale."""

    points: str
    """``"x,y x,y ..."``, for ``<polyline points=...>``."""
    count: int
    peak: float
    """The value at the top of the chart."""
    width: int
    height: int


def line_chart(
    series: Sequence[tuple[float, float]],
    end: float,
    span: float,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> LineChart:
    """The points of ``series`` (``(time, value)``, oldest first) that fall in the ``span``
    seconds before ``end``, time along x and value up y; the top is the highest value (1 when
    every value is 0)."""
    start = end - span
    shown = [(at, value) for at, value in series if start <= at <= end]
    peak = max((value for _, value in shown), default=0.0) or 1.0
    points = " ".join(
        f"{(at - start) / span * width:.1f},{height - value / peak * height:.1f}"
        for at, value in shown
    )
    return LineChart(points, len(shown), peak, width, height)
