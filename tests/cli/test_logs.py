"""Logs: JSON lines that parse and carry the run id; no identity and no key in any line,
even at -vv over loopback HTTP; -v shows pipeline stages and not Alembic's chatter."""

from __future__ import annotations

import json
import logging
import re

from reconcile.observability.logs import JsonFormatter, mask_line

from tests.cli.conftest import KEY

CLEAR_EMAIL = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _clear_emails(text: str) -> list[str]:
    found = CLEAR_EMAIL.findall(text) + re.findall(r"[A-Za-z0-9._+-]+%40[A-Za-z0-9.-]+", text, re.I)
    return [e for e in found if "***" not in e]


def test_mask_line_masks_plain_and_encoded_emails_and_query_values():
    line = ('HTTP Request: GET http://127.0.0.1:9/email/status?email=ann.lee%40example.com&x=1 "HTTP/1.1 200 OK" '
            "for Bob.Smith+tag@Example.org")
    masked = mask_line(line)
    assert "ann.lee" not in masked and "Bob.Smith" not in masked and "example.com&" not in masked
    assert "email=***&x=***" in masked and "B***@Example.org" in masked
    assert mask_line('"GET /users/export/ids?email_address=a%40b.io HTTP/1.1" 200') == \
        '"GET /users/export/ids?email_address=*** HTTP/1.1" 200'


def test_json_formatter_writes_one_parsable_object():
    record = logging.LogRecord("reconcile.run", logging.INFO, __file__, 1, "stage %s for x@y.io", ("diff",), None)
    record.event, record.counts = "stage", {"subjects": 3}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "info" and doc["event"] == "stage" and doc["counts"] == {"subjects": 3}
    assert doc["message"] == "stage diff for x***@y.io"
    assert {"time", "run_id", "job", "stage", "logger"} <= set(doc)


def test_json_log_lines_parse_and_carry_the_run_id(job):
    job.seed()
    result = job.cli("-q", "-v", "--log-format", "json", "run", "--format", "json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every stderr line is one JSON object
    stages = [d for d in docs if d["event"] == "stage"]
    assert [d["stage"] for d in stages][:4] == ["extract", "diff", "plan", "guards"]
    assert all(d["run_id"] == run_id and d["job"] == "job" for d in stages)
    assert not [d for d in docs if d["logger"].startswith("alembic")]


def test_verbose_shows_stages_not_alembic(job):
    job.seed()
    result = job.cli("-q", "-v", "run", "--dry-run")
    assert result.exit_code == 2
    assert "stage extract" in result.stderr and "stage diff" in result.stderr
    assert "alembic" not in result.stderr.lower() and "Context impl" not in result.stderr


def test_debug_logs_over_loopback_hold_no_email_and_no_key(job):
    job.seed()
    text = job.cli("-vv", "run")
    assert text.exit_code == 0, text.output
    as_json = job.cli("-vv", "--log-format", "json", "run", "--mode", "incremental")
    assert as_json.exit_code == 0, as_json.output
    for result in (text, as_json):
        logs = result.stderr
        assert "HTTP Request" in logs or "httpx" in logs  # the HTTP library's own lines are there, masked
        assert len(logs.splitlines()) > 50
        assert KEY not in logs
        assert _clear_emails(logs) == [], _clear_emails(logs)[:5]
