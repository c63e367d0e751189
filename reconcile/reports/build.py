"""Building a report end to end: gather, mask (unless revealed), render, write privately.

A reveal is explicit (`report.reveal = true`, or `reconcile report --reveal`) and is
recorded in each run it shows, under `runs.summary.reveals` as {actor, at, via}; the tool
version that wrote a run's report is recorded as `runs.summary.tool_version`.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconcile.config import Config
from reconcile.reports import render
from reconcile.reports.history import Selection, collect, tool_version
from reconcile.reports.masking import mask_key, write_private
from reconcile.reports.scrub import prepared

FORMATS = ("html", "json", "md", "csv")


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def note_run(store: Any, run_id: str, **fields: Any) -> None:
    """Merge `fields` into the run's `summary` JSON."""
    store.note_run(run_id, **fields)


def record_version(store: Any, run_id: str) -> None:
    run = store.get_run(run_id)
    if run is not None and not (run.get("summary") or {}).get("tool_version"):
        note_run(store, run_id, tool_version=tool_version())


def record_reveal(store: Any, run_ids: Iterable[str], actor: str, at: datetime, via: str) -> None:
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            continue
        reveals = list((run.get("summary") or {}).get("reveals") or [])
        reveals.append({"actor": actor, "at": at.isoformat(), "via": via})
        note_run(store, run_id, reveals=reveals)


def report_doc(store: Any, cfg: Any, sel: Selection, now: datetime, key: bytes | None) -> dict[str, Any]:
    """The report for `sel` as of `now`, masked with `key` (None: revealed)."""
    return prepared(collect(store, cfg, sel, now), key)


def write(doc: Mapping[str, Any], folder: Path, stem: str, formats: Iterable[str]) -> list[Path]:
    """Write the report in each format as `<folder>/<stem>.<ext>` (CSV: one file per table)."""
    from reconcile.reports.tables import csv_tables

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        if fmt == "csv":
            for name, text in csv_tables(doc).items():
                path = folder / f"{stem}.{name}.csv"
                write_private(path, text)
                written.append(path)
            continue
        text = {"html": render.html, "json": render.as_json, "md": render.markdown}[fmt](dict(doc))
        path = folder / f"{stem}.{fmt}"
        write_private(path, text)
        written.append(path)
    return written


def write_report(store: Any, run_id: str, cfg: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Write `<report.dir>/<run_id>.json`, `.md` and `.html` (mode 0600) and rebuild the folder's
    `index.html`; returns the Markdown path.

    The content is `reconcile.reports`' compliance report for this run, as of the moment it
    finished (now, for a run without an outcome).
    """
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    record_version(store, run_id)
    now = run.get("finished_at") or datetime.now(timezone.utc)
    if cfg.report.reveal:
        record_reveal(store, [run_id], os_user(), datetime.now(timezone.utc), "report.reveal = true")
    key = None if cfg.report.reveal else mask_key(cfg, environ)
    doc = report_doc(store, cfg, Selection(run_id=run_id), now, key)
    written = write(doc, Path(cfg.report.dir), run_id, ("json", "md", "html"))
    from reconcile.reports.index import write_index

    write_index(store, Path(cfg.report.dir), datetime.now(timezone.utc))
    return next(p for p in written if p.suffix == ".md")
