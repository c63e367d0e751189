"""Chart geometry for the report's inline SVG: the numbers are computed here, the markup
is drawn by the `charts.svg.j2` macros (no script, no external resource)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


@dataclass
class Chart:
    title: str
    kind: str  # "line" or "bars"
    width: int = WIDTH
    height: int = HEIGHT
    points: list[dict[str, Any]] = field(default_factory=list)  # line: x, y, value, label
    polyline: str = ""
    bars: list[dict[str, Any]] = field(default_factory=list)  # bars: x, y, w, h, value, label
    y_ticks: list[dict[str, Any]] = field(default_factory=list)
    x_labels: list[dict[str, Any]] = field(default_factory=list)
    empty: bool = False
    plot: dict[str, float] = field(default_factory=dict)


def _scale(top_value: int) -> tuple[int, list[int]]:
    """A rounded axis maximum and up to five tick values."""
    top = max(1, top_value)
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = candidate
        if top / candidate <= 5:
            break
    else:
        step = 10 ** len(str(top))
    axis = -(-top // step) * step
    return axis, list(range(0, axis + 1, step))


def _frame(chart: Chart, axis: int, ticks: Sequence[int]) -> tuple[float, float]:
    pw, ph = chart.width - LEFT - RIGHT, chart.height - TOP - BOTTOM
    chart.plot = {"x": LEFT, "y": TOP, "w": pw, "h": ph, "bottom": TOP + ph, "right": LEFT + pw}
    chart.y_ticks = [{"y": round(TOP + ph - ph * t / axis, 1), "value": t} for t in ticks]
    return pw, ph


def line_chart(title: str, values: Sequence[int], labels: Sequence[str], width: int = WIDTH) -> Chart:
    chart = Chart(title, "line", width=width, empty=not values)
    axis, ticks = _scale(max(values, default=0))
    pw, ph = _frame(chart, axis, ticks)
    n = len(values)
    for i, (v, label) in enumerate(zip(values, labels)):
        x = LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)
        chart.points.append({"x": round(x, 1), "y": round(TOP + ph - ph * v / axis, 1), "value": v, "label": label})
    chart.polyline = " ".join(f"{p['x']},{p['y']}" for p in chart.points)
    every = max(1, -(-n // max(2, width // 110)))
    shown = [(i, p) for i, p in enumerate(chart.points) if i % every == 0]
    chart.x_labels = [{"x": p["x"], "text": p["label"],
                       "anchor": "start" if n > 1 and i == 0 else "end" if n > 1 and i == n - 1 else "middle"}
                      for i, p in shown]
    return chart


def bar_chart(title: str, values: Sequence[int], labels: Sequence[str]) -> Chart:
    chart = Chart(title, "bars", empty=not any(values))
    axis, ticks = _scale(max(values, default=0))
    pw, ph = _frame(chart, axis, ticks)
    slot = pw / max(1, len(values))
    for i, (v, label) in enumerate(zip(values, labels)):
        h = ph * v / axis
        chart.bars.append({"x": round(LEFT + i * slot + slot * 0.1, 1), "y": round(TOP + ph - h, 1),
                           "w": round(slot * 0.8, 1), "h": round(h, 1), "value": v, "label": label,
                           "cx": round(LEFT + i * slot + slot / 2, 1)})
    chart.x_labels = [{"x": b["cx"], "text": b["label"]} for b in chart.bars]
    return chart


def report_charts(trends: dict[str, Any]) -> dict[str, Chart]:
    points = trends["open_critical"]
    labels = [str(p["at"])[:10] for p in points]
    ttr = trends["time_to_remediate"]["buckets"]
    return {
        "open_critical": line_chart("Critical drift still open after each run",
                                    [p["open_critical"] for p in points], labels),
        "time_to_remediate": bar_chart("Time to remediate (business days from request to correction)",
                                       [b["count"] for b in ttr], [b["label"] for b in ttr]),
    }
