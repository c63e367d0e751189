"""The report index: `<report.dir>/index.html`, rebuilt after every run.

Every run (newest first, up to `INDEX_RUNS`) with its job, mode, outcome, duration, the
drift it found and the items open when it ended, a link to its report when the file is in
the folder, and drift-over-time charts across the runs. It names no person, so it needs
no masking; like every report file it is written with mode 0600.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from reconcile.engine.classes import SEVERITY
from reconcile.reports.changes import run_end
from reconcile.reports.humanize import duration
from reconcile.store.schema import drift_items

INDEX_RUNS = 1000
INDEX_FILE = "index.html"
CHART_WIDTH = 380


def open_counter(store: Any) -> Any:
    """A function: time -> (open items, open critical items) at that time."""
    c = drift_items.c
    with store._read("index_items") as conn:
        rows = conn.execute(select(c.drift_class, c.first_seen_at, c.verified_at, c.resolved_at)).all()
    series: dict[bool, tuple[list[datetime], list[datetime]]] = {True: ([], []), False: ([], [])}
    for cls, first, verified, resolved in rows:
        closes = [t for t in (verified, resolved) if t is not None]
        for critical in {False, SEVERITY.get(cls) == "critical"}:
            series[critical][0].append(first)
            if closes:
                series[critical][1].append(min(closes))
    for opened, closed in series.values():
        opened.sort()
        closed.sort()

    def at(t: datetime) -> tuple[int, int]:
        return tuple(bisect_right(o, t) - bisect_right(c, t) for o, c in (series[False], series[True]))  # type: ignore[return-value]

    return at


def index_rows(store: Any, folder: Path) -> list[dict[str, Any]]:
    from reconcile.reports.outcome import outcome

    counter = open_counter(store)
    out = []
    for run in store.list_runs(INDEX_RUNS):
        counts = run.get("drift_counts")
        still, critical = counter(run_end(run))
        report = folder / f"{run['run_id']}.html"
        out.append({"run_id": run["run_id"], "started_at": run["started_at"], "job": run.get("job"),
                    "mode": run.get("mode"), "status": run.get("status"), "meaning": outcome(run)["meaning"],
                    "exit_code": run.get("exit_code"), "duration_seconds": duration(run),
                    "drift_found": None if counts is None else sum(int(v) for v in counts.values()),
                    "critical_found": None if counts is None else sum(
                        int(v) for k, v in counts.items() if SEVERITY.get(k) == "critical"),
                    "open_items": still, "open_critical": critical,
                    "report": report.name if report.exists() else None})
    return out


def index_charts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    from reconcile.reports.charts import line_chart

    runs = [r for r in reversed(rows) if r["mode"] != "prune"]
    labels = [r["started_at"].strftime("%m-%d %H:%M") for r in runs]
    return {
        "open": line_chart("Drift items open after each run", [r["open_items"] for r in runs], labels, CHART_WIDTH),
        "critical": line_chart("Critical drift open after each run", [r["open_critical"] for r in runs], labels, CHART_WIDTH),
        "found": line_chart("Drift found by each run", [r["drift_found"] or 0 for r in runs], labels, CHART_WIDTH),
    }


def write_index(store: Any, folder: Path, generated_at: datetime) -> Path:
    from reconcile.reports.masking import write_private
    from reconcile.reports.render import index_html

    folder.mkdir(parents=True, exist_ok=True)
    rows = index_rows(store, folder)
    path = folder / INDEX_FILE
    write_private(path, index_html({"generated_at": generated_at, "runs": rows}, index_charts(rows)))
    return path
