"""One SIGTERM stops a run that is waiting out Braze's rate-limit window (up to an hour), at once:
exit 143, the run recorded `interrupted`, and the next run finishes the plan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from reconcile.store.store import Store


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_one_sigterm_ends_an_hour_long_rate_limit_wait(world) -> None:
    w = world
    path = w.tmp / "job.toml"
    path.write_text(w.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\n"
                             "max_subscribe_fraction = 1.0\n"))
    w.seed(w.config(), subjects=400, drift=0.3)
    w.braze.limiter.set_limit("subscription_set", 1, 3600.0)  # the second group write waits for the next hour
    env = {**os.environ, "BRAZE_API_KEY": w.key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "-q", "--config", str(path), "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    group_writes = lambda: [c for c in w.braze.calls if c["path"] == "/subscription/status/set"]  # noqa: E731
    _wait_for(lambda: group_writes() or proc.poll() is not None, 240)
    time.sleep(2.0)  # the next group write waits for the window (after a 429, or paced by the answer's headers)
    assert proc.poll() is None, proc.communicate()[0]
    assert len(group_writes()) <= 2
    proc.send_signal(signal.SIGTERM)  # once: the wait is an hour, so a run still waiting times out here
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    with Store.open(w.state_url) as store:
        assert store.list_runs(1)[0]["status"] == "interrupted"

    w.braze.limiter.set_limit("subscription_set", 10_000, 3600.0)
    again = subprocess.run([sys.executable, "-m", "reconcile", "-q", "--config", str(path), "run"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
