"""`reconcile run` as deployed (a child process, loopback HTTP, a state DB) against both
simulators switched to their less convenient readings at once: a universe read in parts
with one late segment export, a 50-object /users/track contract refused in other words,
aliases Braze propagates late, and a CDN in front of Ketch that answers 403 pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from reconcile.config import load_config
from reconcile.engine.apply import ALIAS_LABEL
from reconcile.store.store import Store
from tests.pipeline.test_braze_readings import add_global_optouts


def test_one_cli_run_against_every_less_convenient_reading(world):
    w = world
    text = w.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\nmax_deletion_fraction = 1.0\n"
                        "[policy]\nalias_unmatched = true\n")
    text = text.replace('max_retries = 3\n', 'max_retries = 3\nsegment_id = "all-users"\n'
                        'segment_export_poll_seconds = 0.2\n', 1)
    text = text.replace("concurrency = 16\nrequests_per_second = 0\n",
                        "concurrency = 4\nrequests_per_second = 8\nmax_requests_per_second = 200\nmax_retries = 8\n"
                        "max_retry_after_seconds = 2\n")
    text = text.replace('full_since = "2015-01-01"', 'full_since = "2015-01-01"\nchunk_size = 60')
    path = w.tmp / "job.toml"
    path.write_text(text)
    for name in ("universe.csv", "deletions.csv"):
        (w.tmp / name).write_text("identity\n")
    truth = w.seed(load_config(path), subjects=120, drift=0.25)
    optouts = add_global_optouts(w, 60)
    w.braze.track_object_limit, w.braze.track_limit_wording = 50, "other"
    w.braze.alias_visibility_delay_seconds = 600
    w.braze.segment_export_delay_seconds = 1.0
    w.ketch.edge_style = "html403"
    w.ketch.limiter.set_limit("web", 12, 1.0)
    w.braze.calls.clear()

    env = {**os.environ, "BRAZE_API_KEY": w.key, "PYTHONUNBUFFERED": "1"}
    child = subprocess.run([sys.executable, "-m", "reconcile", "--config", str(path), "run", "--format", "json"],
                           env=env, capture_output=True, text=True, timeout=400, cwd=w.tmp)
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-3000:]
    run_id = json.loads(child.stdout)["run_id"]

    assert [c["status"] for c in w.braze.calls if c["path"] == "/users/export/segment"] == [201]
    tracks = [(c["status"], len(c["body"]["attributes"])) for c in w.braze.calls if c["path"] == "/users/track"]
    assert tracks[0][0] == 400 and tracks[0][1] > 50, tracks
    assert all(s == 201 and n <= 50 for s, n in tracks[1:]), tracks
    assert all(p.email_subscribe == "unsubscribed" for e in optouts for p in w.braze.profiles_by_email(e))
    assert not [c for c in w.braze.calls if c["path"] == "/users/alias/new"]
    for email in truth.injected["unmatched"]:
        assert len([p for p in w.braze.db.profiles.values() if p.has_alias(email, ALIAS_LABEL)]) == 1
    assert 403 in [c["status"] for c in w.ketch.calls]
    with Store.open(f"sqlite:///{w.tmp / 'state.db'}") as store:
        run = store.get_run(run_id)
        assert not [e for e in store.exceptions(run_id) if e["source"] in ("ketch", "braze_rejected")]
    assert run["summary"]["api_usage"]["ketch"]["rate_limited"] >= 1
