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
