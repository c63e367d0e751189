"""The report index: `<report.dir>/index.html`, rebuilt after every run.

Every run (newest first, up to `INDEX_RUNS`) with its job, mode, outcome, duration, the
drift it found and the items open when it ended, a link to its report when the file is in
the folder, and drift-over-time charts across the runs. It names no person, so it needs
no masking; like every report file it is written with mode 0600.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from reconcile.engine.classes import SEVERITY
from reconcile.reports.changes import run_end
from reconcile.reports.humanize import duration

INDEX_RUNS = 1000
INDEX_FILE = "index.html"
CHART_WIDTH = 380


def open_counter(store: Any) -> Any:
    """A function: time -> (open items, open critical items) at that time.

    Counted in the database, grouped by time: every item a run records shares that run's
    timestamps (first seen, verified, resolved), so a long history comes back as a few
    rows a run, and an item is open at t when it was first seen by t and not closed by t."""
    opened, shut = store.drift_open_close_counts(k for k, v in SEVERITY.items() if v == "critical")
    series = {flag: (_steps([(t, n) for t, crit, n in opened if flag is False or bool(crit)]),
                     _steps([(t, n) for t, crit, n in shut if flag is False or bool(crit)]))
              for flag in (False, True)}

    def at(t: datetime) -> tuple[int, int]:
        x = t.timestamp()
        counts = [_upto(o, x) - _upto(cl, x) for o, cl in (series[False], series[True])]
        return counts[0], counts[1]

    return at


def _steps(pairs: list[tuple[datetime, int]]) -> tuple[Any, Any]:
    """(sorted epoch seconds, running totals) for `at`."""
    pairs.sort(key=lambda p: p[0])
    return (np.array([p[0].timestamp() for p in pairs], dtype=np.float64),
            np.cumsum(np.array([p[1] for p in pairs], dtype=np.int64)))


def _upto(steps: tuple[Any, Any], x: float) -> int:
    i = int(np.searchsorted(steps[0], x, side="right"))
    return int(steps[1][i - 1]) if i else 0


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
    def chart(title: str, values: list[int]) -> Any:
        return line_chart(title, values, labels, CHART_WIDTH)

    return {
        "open": chart("Drift items open after each run", [r["open_items"] for r in runs]),
        "critical": chart("Critical drift open after each run", [r["open_critical"] for r in runs]),
        "found": chart("Drift found by each run", [r["drift_found"] or 0 for r in runs]),
    }


def write_index(store: Any, folder: Path, generated_at: datetime) -> Path:
    from reconcile.reports.masking import write_private
    from reconcile.reports.render import index_html

    folder.mkdir(parents=True, exist_ok=True)
    rows = index_rows(store, folder)
    path = folder / INDEX_FILE
    write_private(path, index_html({"generated_at": generated_at, "runs": rows}, index_charts(rows)))
    return path
