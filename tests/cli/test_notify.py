"""Notifications over loopback: a JSON webhook and a Slack-shaped receiver get one message
each per run that found critical drift or was refused by a guard; no address, no key; a
receiver that fails does not change the run's exit code."""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.cli.conftest import KEY

ADDRESS = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-]@[A-Za-z0-9-]+\.[A-Za-z]{2,}")


@contextmanager
def receiver(status: int = 200):
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append({"path": self.path, "json": json.loads(body), "type": self.headers.get("Content-Type")})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


NOTIFY = """
[notify]
timeout_seconds = 2
retries = 2

[[notify.targets]]
kind = "webhook"
url_env = "TEST_WEBHOOK_URL"

[[notify.targets]]
kind = "slack"
url_env = "TEST_SLACK_URL"
"""


def no_pii(message: dict) -> None:
    text = json.dumps(message)
    assert KEY not in text
    assert [a for a in ADDRESS.findall(text) if "***" not in a] == []


def test_guard_refusal_and_critical_drift_reach_both_receivers_once(job):
    job.seed()
    job.append(NOTIFY + "\n[guards]\nmax_deletions = 0\n")
    with receiver() as (hook, hooked), receiver() as (slack, slacked):
        env = {"TEST_WEBHOOK_URL": hook, "TEST_SLACK_URL": slack}
        refused = job.cli("-q", "run", env=env)
        assert refused.exit_code == 12, refused.output
        assert len(hooked) == 1 and len(slacked) == 1
        msg = hooked[0]["json"]
        assert msg["status"] == "refused" and "guard_refused" in msg["events"] and "critical_drift" in msg["events"]
        assert msg["guards"] == ["max_deletions"] and msg["run_id"] and msg["report"].endswith(".md")
        assert msg["critical_drift"]["missed_deletion"] > 0
        assert msg["examples"] and all("***@" in e or "id#" in e for e in msg["examples"])
        slack_msg = slacked[0]["json"]
        assert set(slack_msg) == {"text", "blocks"} and "a guard refused apply" in slack_msg["text"]
        assert slack_msg["blocks"][1]["type"] == "section" and msg["run_id"] in slack_msg["text"]
        for m in (msg, slack_msg):
            no_pii(m)

        applied = job.cli("-q", "run", "--allow", "max_deletions", env=env)
        assert applied.exit_code == 0, applied.output
        assert len(hooked) == 2 and len(slacked) == 2
        second = hooked[1]["json"]
        assert second["status"] == "applied" and second["events"] == ["critical_drift"]
        no_pii(second)
        no_pii(slacked[1]["json"])

        in_sync = job.cli("-q", "run", env=env)
        assert in_sync.exit_code == 0
        assert len(hooked) == 2 and len(slacked) == 2  # nothing critical: nothing sent


def test_a_failing_receiver_does_not_fail_the_run(job):
    job.seed()
    job.append(NOTIFY)
    with receiver(status=500) as (hook, hooked), receiver() as (slack, slacked):
        result = job.cli("-q", "run", env={"TEST_WEBHOOK_URL": hook, "TEST_SLACK_URL": slack})
        assert result.exit_code == 0, result.output
        assert len(hooked) == 3  # one try and two retries
        assert len(slacked) == 1
        assert "notify: webhook target (TEST_WEBHOOK_URL) failed after 3 tries: HTTP 500" in result.stderr
        assert hook not in result.stderr


def test_an_unreachable_receiver_does_not_fail_the_run(job):
    job.seed()
    job.append(NOTIFY)
    with receiver() as (hook, _):
        dead = hook  # the server is gone once the block ends
    result = job.cli("-q", "run", env={"TEST_WEBHOOK_URL": dead, "TEST_SLACK_URL": dead})
    assert result.exit_code == 0, result.output
    assert "failed after 3 tries" in result.stderr


def test_notify_config_refuses_urls_in_the_file(job):
    from click.testing import CliRunner

    from reconcile.cli.main import cli

    job.seed()
    job.append('[notify]\n[[notify.targets]]\nkind = "pager"\nurl = "https://hooks.example.com/x"\n')
    result = CliRunner().invoke(cli, ["--config", str(job.path), "config", "check", "--format", "json"],
                                env={"BRAZE_API_KEY": KEY})
    keys = {p["key"] for p in json.loads(result.stdout)["problems"]}
    assert {"notify.targets[0].kind", "notify.targets[0].url_env", "notify.targets[0].url"} <= keys
