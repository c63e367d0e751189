"""Values as people read them: times in UTC to the second, short durations, "-" for nothing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any


def human_time(value: datetime | None) -> str:
    """"2026-03-02 09:00:05 UTC"; "-" when not recorded."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float | None) -> str:
    """"42s", "3m 05s", "1h 02m"; "-" when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def duration(run: Mapping[str, Any]) -> float | None:
    start, end = run.get("started_at"), run.get("finished_at")
    return (end - start).total_seconds() if start and end else None


def dash(value: Any) -> str:
    """A value for a human reader: "-" for nothing recorded, never "None"."""
    return "-" if value is None or value == "" else str(value)
