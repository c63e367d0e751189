"""`reconcile run` in its own process against the simulators switched to the less
convenient readings at once: Ketch answering unknown identities with jurisdiction defaults,
the partner page's key (no hard-bounce list), an address leaving the unsubscribe list when
another profile re-subscribes, and Ketch refusing a consent update without legal bases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import httpx

from reconcile.config import load_config
from reconcile.sandbox.braze import PARTNER_PERMISSIONS
from tests.pipeline.conftest import KEY, NOW

GONE = "gone.deployed@example.com"
SHARED = "two.profiles@example.com"
EXTRA = ("[policy]\nsuppress_deleted_emails = true\napply_optins = true\nwrite_back_optouts = true\n"
         "[guards]\nmax_deletion_fraction = 1.0\nmax_unsubscribe_fraction = 1.0\nmax_subscribe_fraction = 1.0\n")


def test_the_job_run_as_a_process_under_the_less_convenient_readings(world, tmp_path):
    w = world
    cfg_path = tmp_path / "job.toml"
    cfg_path.write_text(w.toml(extra=EXTRA))
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    cfg = load_config(cfg_path)
    truth = w.seed(cfg, subjects=80, drift=0.2)
    w.ketch.unknown_identity, w.ketch.default_controls = "defaults", {"global_unsubscribe": "denied"}
    w.ketch.default_topics = {"newsletter": {"email": "denied"}}
    w.ketch.require_legal_basis = True
    w.braze.permissions = set(PARTNER_PERMISSIONS)
    w.braze.db.unsubscribe_list = "current_only"
    with (tmp_path / "deletions.csv").open("a") as f:
        f.write(f"{GONE},{(NOW - timedelta(days=1)).isoformat()}\n")
    for xid in ("s-1", "s-2"):
        w.braze.add_profile(external_id=xid, email=SHARED, email_subscribe="subscribed")
    w.ketch.set_consent("email", SHARED, {"email_marketing": True, "analytics": True},
                        int((NOW - timedelta(days=5)).timestamp()))
    for xid, state in (("s-1", "unsubscribed"), ("s-2", "unsubscribed"), ("s-2", "subscribed")):
        httpx.post(w.braze_url + "/users/track", headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
                   json={"attributes": [{"external_id": xid, "email_subscribe": state}]}).raise_for_status()
    with (tmp_path / "universe.csv").open("a") as f:
        f.write(f"{SHARED}\n")
    no_record = {e: w.braze.profiles_by_email(e)[0].email_subscribe for e in truth.injected["no_consent_record"]}

    env = {**os.environ, "BRAZE_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "run", "--format", "json"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:])
    result = json.loads(run.stdout)
    assert result["counts"]["no_consent_record"] == len(no_record)
    for email, state in no_record.items():  # defaults are not choices
        assert w.braze.profiles_by_email(email)[0].email_subscribe == state == "subscribed"
    blocked = [e for c in w.braze.calls if c["path"] == "/email/blocklist" for e in c["body"]["email"]]
    assert GONE in blocked  # blocklisted although no profile holds it and the list cannot be read
    states = {p.external_id: p.email_subscribe for p in w.braze.profiles_by_email(SHARED)}
    assert states["s-1"] == "unsubscribed"  # an opt-out of unknown time is never resubscribed
    updates = [c for c in w.ketch.calls if c["path"].endswith("/consent/acme/update")]
    assert updates and all(c["status"] == 200 for c in updates)  # every purpose with its legal basis
    assert w.ketch.consent_of("email", SHARED)["purposes"]["email_marketing"] is False
