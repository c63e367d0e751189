"""The run history as people read it: filtered, with headers, human times and durations.

Times, durations and missing values are shown as `reconcile.reports.humanize` writes them:
"2026-03-02 09:00:05 UTC", "3m 05s", and "-" for anything not recorded, never "None".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from reconcile.errors import DataError
from reconcile.reports.humanize import duration, human_duration, human_time

RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
COLUMNS = ("RUN", "STARTED", "DURATION", "JOB", "MODE", "OUTCOME", "EXIT", "DRIFT", "ACTIONS")


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """`--since`: a date, an ISO time, or an age such as 30m, 24h, 7d, 2w."""
    if value is None:
        return None
    text = value.strip()
    rel = RELATIVE.match(text)
    if rel:
        return now - timedelta(**{UNITS[rel.group(2)]: int(rel.group(1))})
    try:
        parsed = datetime.fromisoformat(text) if ("T" in text or " " in text) else datetime.combine(
            date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise DataError(f"--since {value!r}: not a date or an age; write 2026-01-31, "
                        "2026-01-31T09:00:00+00:00, or an age such as 24h or 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def matching_runs(store: Any, *, job: str | None = None, statuses: Sequence[str] = (),
                  since: datetime | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, filtered in the query (a long history is never read whole)."""
    return list(store.list_runs(limit, job=job, statuses=statuses, since=since))


def row(run: Mapping[str, Any]) -> list[str]:
    counts = run.get("drift_counts")
    planned, sent = run.get("actions_planned"), run.get("actions_sent")
    actions = "-" if planned is None and sent is None else f"{sent or 0}/{planned or 0} sent"
    running = run.get("finished_at") is None
    return [run["run_id"], human_time(run.get("started_at")),
            "running" if running and run.get("status") in ("running", "applying") else human_duration(duration(run)),
            run.get("job") or "-", run.get("mode") or "-", run.get("status") or "-",
            "-" if run.get("exit_code") is None else str(run["exit_code"]),
            "-" if counts is None else str(sum(int(v) for v in counts.values())), actions]


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] = COLUMNS) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in (headers, *rows)]
    return "\n".join(lines)


def json_row(run: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {k: run.get(k) for k in fields} | {"duration_seconds": duration(run)}
