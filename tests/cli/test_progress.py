"""Progress on stderr: a rich display on a pseudo-terminal, plain heartbeats on a pipe,
nothing with --quiet. The CLI runs as a subprocess against the loopback simulators."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from tests.cli.conftest import KEY

DEADLINE = 90.0


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    return {**env, "BRAZE_API_KEY": KEY, "COLUMNS": "140", "TERM": "xterm-256color", **(extra or {})}


def _cmd(job, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconcile", "--config", str(job.path), *args]


def run_on_pty(job, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(_cmd(job, *args), stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env=_env(), cwd=job.world.tmp)
    os.close(slave)
    shown = bytearray()
    end = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        os.close(master)
    return code, out, shown.decode("utf-8", errors="replace")


def run_on_pipe(job, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(job, *args), capture_output=True, text=True, env=_env(), cwd=job.world.tmp,
                          timeout=DEADLINE, stdin=subprocess.DEVNULL)


def test_a_terminal_gets_the_rich_display(job):
    job.seed()
    code, out, shown = run_on_pty(job, "run", "--format", "json")
    assert code == 0, shown
    run_id = json.loads(out)["run_id"]
    assert "\x1b[" in shown  # drawn, not printed line by line
    assert f"run {run_id} (full)" in shown
    assert "requests" in shown and any(stage in shown for stage in ("verify", "report"))
    assert "progress:" not in shown


def test_a_pipe_gets_plain_heartbeats_and_quiet_gets_nothing(job):
    job.seed()
    piped = run_on_pipe(job, "run", "--dry-run")
    assert piped.returncode == 2, piped.stderr
    beats = [ln for ln in piped.stderr.splitlines() if ln.startswith("progress: ")]
    assert beats and "\x1b[" not in piped.stderr
    assert any("stage extract" in b for b in beats) and any("stage report" in b for b in beats)
    assert all("; requests " in b for b in beats)

    quiet = run_on_pipe(job, "--quiet", "run", "--dry-run")
    assert quiet.returncode == 2
    assert "progress" not in quiet.stderr and "\x1b[" not in quiet.stderr


def test_a_rate_limit_wait_shows_its_endpoint_and_seconds_left():
    from reconcile.observability.display import HeartbeatDisplay
    from reconcile.observability.events import Telemetry

    class Stream:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    now = [100.0]
    stream = Stream()
    display = HeartbeatDisplay(stream, interval=3600, clock=lambda: now[0])
    tel = Telemetry(clock=lambda: now[0], listeners=[display])
    tel.run_started("20261201T000000-abcdef", "full")
    tel.stage("extract")
    tel("ketch", 40, 200)
    tel.request("braze", "http://127.0.0.1:1/users/export/ids", 429)
    tel.rate_wait("braze", "http://127.0.0.1:1/users/export/ids", 42.0)
    now[0] += 2
    assert display.line() == ("run 20261201T000000-abcdef; stage extract; ketch 40/200; requests 1; "
                              "rate-limit wait braze /users/export/ids 40s left")
    now[0] += 60
    assert "rate-limit" not in display.line()


def run_on_terminal(job, *args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on one pseudo-terminal, as a person sees it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(_cmd(job, *args), stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            env=_env(), cwd=job.world.tmp)
    os.close(slave)
    shown = bytearray()
    end = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
    return code, shown.decode("utf-8", errors="replace")


def test_the_bar_finishes_before_the_summary_and_no_bar_line_follows_it(job):
    import re

    job.seed()
    code, shown = run_on_terminal(job, "run")
    assert code == 0, shown
    start = re.search(r"run \S+: applied \(exit 0\)", shown)
    assert start, shown
    summary_at = shown.rfind("\n", 0, start.start())
    before, after = shown[:summary_at], shown[summary_at:]
    plain_after = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", after)
    assert "━" not in plain_after and "requests " not in plain_after, plain_after  # no bar redrawn below
    assert "\x1b[2K" not in after and "\r" not in after.replace("\r\n", "\n")  # nothing erases or rewrites lines
    last_bar = [ln for ln in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", before).replace("\r", "\n").splitlines()
                if "requests " in ln][-1]
    assert last_bar.lstrip().startswith("done"), last_bar  # drawn finished before the summary
    assert re.search(r"\d+/s", before)  # a rate was shown while counting


def test_heartbeat_says_what_it_waits_for_and_rate_with_eta():
    import io

    from reconcile.observability.display import HeartbeatDisplay
    from reconcile.observability.events import Telemetry

    now = [0.0]
    stream = io.StringIO()
    display = HeartbeatDisplay(stream, interval=3600, clock=lambda: now[0])
    display._print()
    assert "waiting on the config and state store" in stream.getvalue()
    tel = Telemetry(clock=lambda: now[0], listeners=[display])
    display.on_stage("extract", {})
    display.on_request("GET /ketch/consent", "200")
    display._print()
    assert stream.getvalue().splitlines()[-1].endswith("waiting on GET /ketch/consent; requests 1")
    display.on_count("ketch", 0, 1000)
    now[0] = 10.0
    display.on_count("ketch", 250, 1000)
    display._print()
    assert "ketch 250/1000; 25/s, ETA 30s; requests 1" in stream.getvalue().splitlines()[-1]
    assert tel is not None
