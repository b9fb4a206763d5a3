"""Bar charts as inline SVG geometry: no chart library, no script, nothing to load.

Why not a library: the Overview needs two bar charts of 30 bars; a library would be the
console's first JavaScript dependency and its only use. The template draws the rectangles
computed here, each with a <title> that a pointer or a screen reader reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 720
HEIGHT = 150
LEFT = 8
BOTTOM = 20  # room for the dates


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    text: str
    anchor: str  # SVG text-anchor: the first and last dates stay inside the picture


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    left: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]  # dates under the bars
    top_label: str  # the value of the top line
    empty: bool


def bar_chart(
    title: str, points: Sequence[tuple[date, int]], words: Callable[[int], str]
) -> BarChart:
    """One bar per (day, value); `words` says a value for a person ("12 messages")."""
    plot_width = WIDTH - LEFT
    plot_height = HEIGHT - BOTTOM - 8
    baseline = HEIGHT - BOTTOM
    peak = max((value for _, value in points), default=0)
    slot = plot_width / max(1, len(points))
    bars = []
    for i, (day, value) in enumerate(points):
        height = plot_height * value / peak if peak else 0
        if value and height < 1:
            height = 1.0  # a day with mail never looks like a day without
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 1),
                y=round(baseline - height, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                title=f"{day:%a %d %b}: {words(value)}",
            )
        )
    last = len(points) - 1
    ticks = [
        Tick(
            x=round(LEFT + i * slot + (0 if i == 0 else slot if i == last else slot / 2), 1),
            text=f"{points[i][0]:%d %b}",
            anchor="start" if i == 0 else "end" if i == last else "middle",
        )
        for i in sorted({0, len(points) // 2, last})
        if points
    ]
    return BarChart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        baseline=baseline,
        bars=bars,
        ticks=ticks,
        top_label=words(peak) if peak else "",
        empty=not peak,
    )
