"""CSV exports of a report's tables, safe to open in a spreadsheet.

A cell that a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab
or a carriage return, after any leading spaces) is prefixed with a single quote, so it
shows as text and never runs (OWASP "CSV injection"). Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import json
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "requests": ("ccpa.requests", ("subject_key", "request_date", "request_date_source", "nature", "manner",
                                   "places", "items", "response_date", "response_nature", "denial_basis",
                                   "verified_date", "days_to_respond")),
    "metrics": ("ccpa.metrics", ("year", "nature", "received", "complied", "denied", "pending", "median_days",
                                 "mean_days")),
    "sla": ("sla.items", ("subject_key", "drift_class", "kind", "field", "source", "source_at", "first_seen_at",
                          "corrected_at", "verified_at", "done_at", "regulation", "deadline", "due_at",
                          "business_days_to_done", "business_days_to_verified", "business_days_open",
                          "business_days_left", "sla")),
    "drift": ("drift_items", ("id", "subject_key", "drift_class", "field", "severity", "status", "expected", "actual",
                              "reason", "first_seen_at", "corrected_at", "verified_at", "resolved_at",
                              "ketch_collected_at")),
    "exceptions": ("exceptions", ("identity", "source", "reason")),
    "actions": ("actions", ("seq", "kind", "endpoint", "status", "attempts", "subjects", "response_summary", "error",
                            "sent_at", "finished_at")),
    "runs": ("runs", ("run_id", "started_at", "finished_at", "mode", "job", "status", "exit_code", "drift_total",
                      "critical_found", "error")),
}


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_START) or text.startswith(FORMULA_START) else text


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _at(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value or []


def csv_tables(doc: Mapping[str, Any]) -> dict[str, str]:
    return {name: to_csv(_at(doc, path), cols) for name, (path, cols) in TABLES.items()}
