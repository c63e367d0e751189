"""Log lines for people (text) or machines (JSON), never carrying an identity or a secret.

`configure_logging(verbose, fmt)` installs one stderr handler on the root logger:

* levels: warnings by default; `-v` shows the pipeline's own messages (stages, rate-limit
  waits, resumed plans) while Alembic and the HTTP libraries stay at warnings; `-vv` is
  debug for everything except httpcore's raw header dumps;
* `fmt="json"`: one object a line with `time`, `level`, `logger`, `message`, `run_id`,
  `job`, `stage`, `event`, and when the line has them `counts`, `fire_time`, `outcome` and
  `reason` (a record's own `job`/`run_id`, e.g. a scheduler event's, win over the context);
  progress comes as `event: "progress"` lines too (`display.JsonProgress`), so stderr is
  pure NDJSON;
* every line, whatever logged it (httpx, urllib3, aiohttp, uvicorn's access log, a
  traceback), is masked as a whole before it is written: email addresses, plain or
  percent-encoded, become `j***@example.com`, and the values of URL query parameters
  become `***`. Known secret values are masked by `reconcile.redact.SecretFilter`
  (installed on the same handler once the config is loaded).

`LOG_CONTEXT` holds the run id, job and stage; `ContextListener` keeps it current from the
run's telemetry events.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
ENCODED_EMAIL = re.compile(r"[A-Za-z0-9!#$&'*+/=?^_`{|}~.%-]+%40[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.IGNORECASE)
URL_QUERY = re.compile(r"(https?://[^\s\"'<>?]+)\?([^\s\"'<>#]*)")
PATH_QUERY = re.compile(r"((?:GET|POST|PUT|DELETE|PATCH|HEAD) /[^\s\"'?]*)\?([^\s\"']*)")
QUIET_LIBRARIES = ("alembic", "httpx", "httpcore", "aiohttp", "urllib3", "uvicorn", "uvicorn.access",
                   "uvicorn.error", "hpack", "asyncio", "apscheduler")
NEVER_DEBUG = ("httpcore", "hpack")  # raw header and frame dumps: nothing an operator needs
FORMATS = ("text", "json")
EVENT_FIELDS = ("fire_time", "outcome", "reason", "report")  # set by the scheduler's and the run-end events


def _mask_email(match: re.Match[str]) -> str:
    text = match.group(0)
    local, _, domain = text.replace("%40", "@").replace("%40".upper(), "@").partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_query(match: re.Match[str]) -> str:
    pairs = [p.split("=", 1)[0] + "=***" if "=" in p else p for p in match.group(2).split("&") if p]
    return f"{match.group(1)}?{'&'.join(pairs)}"


def mask_line(text: str) -> str:
    """`text` with query values and email addresses masked (what every log line goes through)."""
    text = URL_QUERY.sub(_mask_query, text)
    text = PATH_QUERY.sub(_mask_query, text)
    text = ENCODED_EMAIL.sub(_mask_email, text)
    return EMAIL.sub(_mask_email, text)


@dataclass
class LogContext:
    run_id: str | None = None
    job: str | None = None
    stage: str | None = None


LOG_CONTEXT = LogContext()


class ContextListener:
    """A telemetry listener keeping `LOG_CONTEXT` on the current run and stage."""

    def __init__(self, job: str | None):
        LOG_CONTEXT.job = job
        LOG_CONTEXT.run_id = None
        LOG_CONTEXT.stage = None

    def on_run(self, run_id: str, mode: str) -> None:
        LOG_CONTEXT.run_id = run_id

    def on_stage(self, name: str, counts: dict[str, int]) -> None:
        LOG_CONTEXT.stage = name


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if LOG_CONTEXT.run_id and record.name.startswith("reconcile"):
            line = f"{line} [run {LOG_CONTEXT.run_id}]"
        return mask_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; every string in it masked like a text line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_line(record.getMessage()),
            "run_id": getattr(record, "run_id", None) or LOG_CONTEXT.run_id,
            "job": getattr(record, "job", None) or LOG_CONTEXT.job,
            "stage": getattr(record, "stage", None) or LOG_CONTEXT.stage,
            "event": getattr(record, "event", None) or "log",
        }
        for key in EVENT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = mask_line(value) if isinstance(value, str) else value
        counts = getattr(record, "counts", None)
        if counts:
            out["counts"] = counts
        if record.exc_info:
            out["exception"] = mask_line(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):
    """The one handler `configure_logging` installs (recognised when called again). Without
    a stream of its own it writes to whatever `sys.stderr` is at the time of each line."""

    def __init__(self, stream: TextIO | None = None):
        logging.Handler.__init__(self)
        self._own = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._own if self._own is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._own = value


def configure_logging(verbose: int = 0, fmt: str = "text", stream: TextIO | None = None) -> Callable[[], None]:
    """Install the stderr handler with levels for `verbose` (0, 1, 2+). Returns a function
    that removes it and puts every level back (a command run in-process leaves no trace)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(h)
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    names = ("", "reconcile", *QUIET_LIBRARIES, *NEVER_DEBUG)
    before = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root.setLevel(level)
    logging.getLogger("reconcile").setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    for name in NEVER_DEBUG:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING if verbose < 2 else logging.INFO)

    def restore() -> None:
        root.removeHandler(handler)
        for name, old in before.items():
            logging.getLogger(name).setLevel(old)

    return restore
