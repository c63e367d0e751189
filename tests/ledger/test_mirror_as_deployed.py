"""The Ketch mirror as deployed: `reconcile ledger serve` in its own process receiving
Forwarder messages over loopback, `reconcile run` processes against the simulators, one
job file and one SQLite state database.

The first full run fills the mirror from Ketch; people then change their consent and
subscriptions in Ketch (the webhook tells the ledger), and one person's consent changes in
Ketch with no webhook at all. The next full run reads Ketch only for the day's audit slice
and the subjects with open drift, catches the silent change (its subject is in the slice),
corrects and counts it, and leaves Braze where a full Ketch read (the mirror off) finds
nothing left to change.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from reconcile.config import load_config
from reconcile.engine.identity import subject_key
from reconcile.ledger import mirror as mm
from reconcile.models.mirror import PURPOSE
from reconcile.sandbox.ketch_webhooks import KetchWebhooks
from reconcile.serving import free_port
from reconcile.store.mirror import MirrorStore
from reconcile.store.store import Store
from tests.ledger.test_ledger_as_deployed import TOKEN, _env, _wait_healthy

SUBJECTS = 1000


def _run(cfg_path, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconcile", "--config", str(cfg_path), "run", "--mode", "full"],
                          env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def _ketch_subjects(world) -> int:
    """Subjects the Ketch simulator was asked about (consent and subscriptions: 2 requests each)."""
    asked = set()
    for call in world.ketch.calls:
        body = call.get("body") or {}
        ids = body.get("identities") if isinstance(body, dict) else None
        if call["method"] == "POST" and call["path"].endswith("/get") and ids:
            asked.add(str(sorted(ids.items()) if isinstance(ids, dict) else ids))
    return len(asked)


def _braze(world) -> list:
    """Braze's state as a reconciliation sees it: each profile's address, ids and states,
    and the address lists."""
    db = world.braze.to_dict()
    profiles = sorted((p["email"] or "", p["external_id"] or "", p["email_subscribe"], sorted(p["groups"].items()))
                      for p in db["profiles"])
    return [profiles, sorted(db["blocklist"]), sorted(db["unsubscribes"])]


@pytest.mark.slow
def test_a_ledger_fed_sweep_reads_ketch_for_few_subjects_and_converges(world, tmp_path):
    port = free_port()
    job = tmp_path / "job.toml"
    ledger = f'\n[ledger]\nenabled = true\nport = {port}\nbearer_token_env = "KETCH_HOOK"\n'
    job.write_text(world.toml(extra=ledger + "mirror = true\n"))
    off = tmp_path / "job-off.toml"  # the same job with the mirror off: every subject read from Ketch
    off.write_text(world.toml(extra=ledger + "mirror = false\n"))
    for name in ("universe.csv", "deletions.csv"):
        (tmp_path / name).write_text("identity\n")
    cfg = load_config(job, _env())
    world.seed(cfg, subjects=SUBJECTS, drift=0.01, seed=11)
    with open(tmp_path / "universe.csv", newline="") as f:
        people = [row["identity"] for row in csv.DictReader(f)]
    server = subprocess.Popen([sys.executable, "-m", "reconcile", "--config", str(job), "ledger", "serve"],
                              env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        hooks = KetchWebhooks(base + cfg.ledger.path, TOKEN)

        first = _run(job, tmp_path)  # (i) the first run fills the mirror from Ketch, every subject once
        assert first.returncode == 0, (first.stdout, first.stderr[-3000:])
        backfilled = world.ketch.calls[:]
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            note = store.list_runs(1)[0]["summary"]["ketch_mirror"]
            total, trusted = MirrorStore.of(store).counts()
        assert note["backfilled"] == note["subjects"] == note["api_reads"] >= SUBJECTS * 0.9
        assert note["from_mirror"] == 0 and trusted == total >= note["subjects"]
        assert _ketch_subjects(world) >= note["subjects"] and len(backfilled) >= 2 * note["subjects"]

        # people change their minds in Ketch; Ketch's webhook tells the ledger
        today = datetime.now(timezone.utc).date()
        allowed = [p for p in people if (world.ketch.consent_of("email", p) or {}).get("purposes", {}).get(
            "email_marketing")]
        in_slice = [p for p in allowed if mm.audited(subject_key(p, "email") or "", today, 1 / 30)]
        silent = in_slice[0]
        changed = [p for p in allowed if p != silent][:20]
        now = int(datetime.now(timezone.utc).timestamp())
        for p in changed[:15]:
            world.ketch.set_consent("email", p, {"email_marketing": False}, now)
            assert hooks.send(hooks.consent(p, {"email_marketing": False}, collected_at=now)).status_code == 204
        for p in changed[15:]:
            subs = world.ketch.subscriptions_of("email", p)
            topics = {t: dict(ch) for t, ch in subs["topics"].items()}
            topics["newsletter"]["email"] = "denied"
            world.ketch.set_subscriptions("email", p, topics, subs["controls"], now)
            reply = hooks.send(hooks.topics(p, {"newsletter": {"email": "denied"}}, submitted_at=now))
            assert reply.status_code in (202, 204), reply.text
        # (iv) and one person's consent changes in Ketch with no webhook: the mirror is now wrong
        world.ketch.set_consent("email", silent, {"email_marketing": False}, now)

        world.ketch.calls.clear()
        second = _run(job, tmp_path)
        assert second.returncode == 0, (second.stdout, second.stderr[-3000:])
        read = _ketch_subjects(world)
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            run = store.list_runs(1)[0]
            note = run["summary"]["ketch_mirror"]
            entry = MirrorStore.of(store).entries([silent])[silent]
        # (ii) Ketch is read for the audit slice and open drift only: at most 5 % of the subjects
        assert read == note["api_reads"] <= 0.05 * note["subjects"], note
        assert len([c for c in world.ketch.calls if c["path"].endswith("/get")]) == 2 * read
        assert note["backfilled"] == 0 and note["audited"] >= 1 and note["from_mirror"] >= 0.95 * note["subjects"]
        # (iv) the silent change was caught by the audit: corrected, counted, logged, reported
        assert note["corrected"] == 1
        assert entry.choices[(PURPOSE, "email_marketing", "")].status == "denied"
        assert "WARNING" in second.stderr and "Ketch mirror disagreed with Ketch for 1 subject" in second.stderr
        report = next((tmp_path / "reports").rglob(f"*{run['run_id']}*.md"), None)
        assert report is not None and "mirror corrected 1" in report.read_text()
        braze_after_mirror = _braze(world)
        profiles = world.braze.to_dict()["profiles"]
        unsubscribed = {p["email"] for p in profiles if p["email_subscribe"] == "unsubscribed"}
        assert {subject_key(p, "email") for p in [silent, *changed[:15]]} <= unsubscribed
        news = {p["email"] for p in profiles if p["groups"].get("sg-news") == "unsubscribed"}
        assert {subject_key(p, "email") for p in changed[15:]} <= news

        # (iii) a full Ketch read (the mirror off) finds Braze where the mirror-fed run left it
        world.ketch.calls.clear()
        writes = len(world.writes())
        third = _run(off, tmp_path)
        assert third.returncode == 0, (third.stdout, third.stderr[-3000:])
        assert _ketch_subjects(world) >= SUBJECTS * 0.9
        assert len(world.writes()) == writes and _braze(world) == braze_after_mirror
    finally:
        server.terminate()
        server.communicate(timeout=30)
