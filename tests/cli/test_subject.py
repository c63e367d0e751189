"""`reconcile subject IDENTITY` as a user runs it (its own process, the sandbox job's SQLite
state): a deleted subject, a re-subscribed one, an unknown one; masked unless --reveal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert

from reconcile.pipeline.recorder import RunRecorder
from reconcile.reports.masking import mask
from reconcile.store.schema import (
    ledger_callbacks,
    ledger_changes,
    ledger_events,
    ledger_request_history,
    ledger_requests,
)
from reconcile.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc
DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DANA = "Dana.Deleted@example.com"  # asked to be erased: deleted, tombstoned, Ketch told
RITA = "rita.resub@example.com"  # opted out of the newsletter, later opted back in
SAM = "ext-sms-4471"  # texted STOP: an opt-out of a subscription group the config maps to the sms channel
NOBODY = "nobody@example.com"
LOOK_ALIKE = "RITA.RE\u017fUB@example.com"  # U+017F LONG S: another mailbox, which Unicode case folding merges with RITA
KEY = "subject-test-mask-key"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def _item(subject: str, cls: str, field: str, expected: str, actual: str, **extra) -> dict:
    severity = {"missed_optout": "critical", "missed_deletion": "critical", "missed_optin": "low"}[cls]
    return {"subject_key": subject, "drift_class": cls, "field": field, "expected": expected, "actual": actual,
            "severity": severity, "reason": f"{cls} for {subject}", "ketch_collected_at": extra.get("collected"),
            "detail": {"identity": subject, "requested_at": extra.get("requested")}}


def _one_run(store: Store, run_id: str, at: datetime, items: list[dict], action: dict, verify: bool = True) -> dict:
    rec = RunRecorder(store, Clock(at), run_id, "full", "cfg", job="nightly")
    rec.start()
    got = store.record_drift(run_id, items, sorted({i["subject_key"] for i in items}), at + timedelta(minutes=2))
    rec.planned(universe_count=10, drift_counts={items[0]["drift_class"]: len(items)}, plan_id=f"plan-{run_id}",
                actions_planned=1, guard_result=[])
    store.save_plan(f"plan-{run_id}", run_id, "fp", {"actions": []}, at)
    store.journal_plan(f"plan-{run_id}", run_id, [action | {"seq": 0}], at)
    rec.applying()
    store.journal_sending(action["action_id"], at + timedelta(minutes=3))
    store.journal_result(action["action_id"], "confirmed", at=at + timedelta(minutes=3), response_summary={})
    ids = list(got.values())
    store.mark_corrected(ids, action["action_id"], at + timedelta(minutes=3))
    if verify:
        store.mark_verified(ids, at + timedelta(minutes=8))
    rec.applied(actions_sent=1, actions_confirmed=1, verified_count=len(ids) if verify else 0, unverified_count=0)
    return got


def _seed(db: Path) -> None:
    dana, rita = DANA.casefold(), RITA
    with Store.open(f"sqlite:///{db}") as store:
        asked = DAY1 - timedelta(days=2)
        _one_run(store, "20260302T090000-aaaaaa", DAY1,
                 [_item(dana, "missed_deletion", "profile", "absent", "present", requested=asked.isoformat()),
                  _item(rita, "missed_optout", "group:sg-newsletter", "unsubscribed", "subscribed",
                        collected=DAY1 - timedelta(days=1))],
                 {"action_id": "a1", "endpoint": "/users/delete", "kind": "delete", "subject_keys": [dana, rita]})
        store.add_tombstones([{"subject_key": dana, "identity": DANA, "deleted_at": DAY1 + timedelta(minutes=3),
                               "run_id": "20260302T090000-aaaaaa", "reason": "deletion request"}])
        day = DAY1 + timedelta(days=7)
        _one_run(store, "20260309T090000-bbbbbb", day,
                 [_item(rita, "missed_optin", "group:sg-newsletter", "subscribed", "unsubscribed",
                        collected=day - timedelta(days=1))],
                 {"action_id": "a2", "endpoint": "/subscription/status/set", "kind": "group_subscribe",
                  "subject_keys": [rita]})
        _one_run(store, "20260310T090000-cccccc", day + timedelta(days=1),
                 [_item(SAM, "missed_optout", "group:sg-sms", "unsubscribed", "subscribed",
                        collected=day - timedelta(days=2))],
                 {"action_id": "a3", "endpoint": "/subscription/status/set", "kind": "group_unsubscribe",
                  "subject_keys": [SAM]}, verify=False)
        with store._write("seed ledger") as conn:
            event = conn.execute(insert(ledger_events).values(
                uid="dsr-1", kind="deletion", outcome="accepted", reply_status=202, body="{}", body_bytes=2,
                received_at=asked).returning(ledger_events.c.id)).scalar_one()
            conn.execute(insert(ledger_requests).values(
                uid="dsr-1", event_id=event, identity=dana, regulation="ccpa", submitted_at=asked,
                due_at=asked + timedelta(days=45), received_at=asked, status="completed", callback_count=1,
                completed_at=DAY1 + timedelta(minutes=9)))
            conn.execute(insert(ledger_request_history).values(
                request_uid="dsr-1", at=DAY1 + timedelta(minutes=9), status="completed",
                message="profile deleted and verified", run_id="20260302T090000-aaaaaa"))
            conn.execute(insert(ledger_callbacks).values(
                request_uid="dsr-1", position=0, url="https://ketch.invalid/callback", status="delivered", attempts=1,
                created_at=DAY1 + timedelta(minutes=9), delivered_at=DAY1 + timedelta(minutes=10)))
            change = conn.execute(insert(ledger_events).values(
                uid="chg-1", kind="subscriptions", outcome="accepted", reply_status=200, body="{}", body_bytes=2,
                received_at=day - timedelta(days=1)).returning(ledger_events.c.id)).scalar_one()
            conn.execute(insert(ledger_changes).values(event_id=change, kind="subscriptions", identity=rita,
                                                       changed_at=day - timedelta(days=1),
                                                       received_at=day - timedelta(days=1)))
            other = conn.execute(insert(ledger_events).values(
                uid="chg-2", kind="consent", outcome="accepted", reply_status=200, body="{}", body_bytes=2,
                received_at=day).returning(ledger_events.c.id)).scalar_one()
            conn.execute(insert(ledger_changes).values(event_id=other, kind="consent", identity=LOOK_ALIKE,
                                                       changed_at=day, received_at=day))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "sandbox.toml"
    shutil.copy(ROOT / "jobs" / "sandbox.toml", job)
    with job.open("a", encoding="utf-8") as f:
        f.write('\n[[mapping.topics]]\ntopic = "sms_marketing"\nchannel = "sms"\nsubscription_group_id = "sg-sms"\n')
    (tmp_path / ".reconcile").mkdir()
    _seed(tmp_path / ".reconcile" / "state.db")
    return tmp_path


def subject(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")} | {"RECONCILE_MASK_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "reconcile", "--config", "jobs/sandbox.toml", "subject", *args],
                          cwd=folder, capture_output=True, text=True, env=env, timeout=120)


def test_a_deleted_subject_tells_the_deletion_and_the_callback_masked(folder: Path) -> None:
    done = subject(folder, DANA)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    token = mask(DANA.casefold(), KEY.encode())
    assert f"Subject {token}" in out and DANA not in out and DANA.casefold() not in out
    assert "Now: deleted from Braze; no open drift" in out
    timeline = out.split("Timeline:")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split("  ", 2)[2] for line in timeline][:2] == [
        "deletion requested", "deletion request dsr-1 submitted (ccpa)"]
    assert any("drift found: missed_deletion on profile: Braze profile; Ketch absent, Braze present" in x
               for x in timeline)
    assert any("callback 0 sent to Ketch for request dsr-1: delivered" in x for x in timeline)
    assert "verified: Braze read back as absent" in out
    assert "dsr-1: completed; ccpa" in out and "callbacks to Ketch delivered 1 of 1" in out
    assert "None" not in out

    doc = json.loads(subject(folder, DANA, "--format", "json").stdout)
    assert doc["masked"] is True and doc["subject_keys"] == [token]
    assert doc["tombstones"][0]["subject_key"] == token and doc["current"]["deleted"] is True
    assert DANA.casefold() not in json.dumps(doc)


def test_a_resubscribed_subject_shows_the_opt_out_then_the_opt_in(folder: Path) -> None:
    doc = json.loads(subject(folder, RITA, "--format", "json").stdout)
    assert doc["known"] and RITA not in json.dumps(doc)
    assert [(d["drift_class"], d["channel"], d["group"], d["ketch"], d["braze"], d["status"]) for d in doc["drift"]] == [
        ("missed_optout", "email", "newsletter (group sg-newsletter)", "unsubscribed", "subscribed", "verified"),
        ("missed_optin", "email", "newsletter (group sg-newsletter)", "subscribed", "unsubscribed", "verified")]
    assert [c["kind"] for c in doc["corrections"]] == ["delete", "group_subscribe"]
    whats = [e["what"] for e in doc["timeline"]]
    assert whats.index("verified: Braze read back as unsubscribed on email: newsletter (group sg-newsletter)") < \
        whats.index("verified: Braze read back as subscribed on email: newsletter (group sg-newsletter)")
    assert "Ketch: subscriptions change received through the webhook" in whats
    assert [r["run_id"] for r in doc["runs"]] == ["20260302T090000-aaaaaa", "20260309T090000-bbbbbb"]


def test_reveal_shows_the_identity_and_a_report_pseudonym_finds_the_subject(folder: Path) -> None:
    revealed = subject(folder, RITA, "--reveal", "--actor", "auditor")
    assert revealed.returncode == 0 and f"Subject {RITA}" in revealed.stdout
    assert "masked" not in revealed.stdout.splitlines()[0]
    token = mask(RITA, KEY.encode())
    by_token = subject(folder, token)
    assert by_token.returncode == 0 and f"Subject {token}" in by_token.stdout and "missed_optin" in by_token.stdout
    with Store.open(f"sqlite:///{folder / '.reconcile' / 'state.db'}") as store:
        reveals = store.get_run("20260309T090000-bbbbbb")["summary"]["reveals"]
    assert reveals[-1]["actor"] == "auditor" and reveals[-1]["via"] == "reconcile subject --reveal"


def test_an_unknown_subject_says_so(folder: Path) -> None:
    done = subject(folder, NOBODY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"No record of {mask(NOBODY, KEY.encode())} in the state store")
    assert NOBODY not in done.stdout
    doc = json.loads(subject(folder, NOBODY, "--format", "json").stdout)
    assert doc["known"] is False and doc["timeline"] == [] and doc["drift"] == []
    unknown_token = subject(folder, "x***@example.com#0123456789")
    assert unknown_token.stdout.startswith("No record of x***@example.com#0123456789")


def test_an_sms_subject_names_the_channel_and_stays_open_until_verified(folder: Path) -> None:
    done = subject(folder, SAM)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert SAM not in out and f"Subject {mask(SAM, KEY.encode())}" in out
    assert "Now: 1 open drift item(s) (missed_optout)" in out
    assert "drift found: missed_optout on sms: sms_marketing (group sg-sms); Ketch unsubscribed, Braze subscribed" in out
    assert "correction accepted by Braze: missed_optout on sms: sms_marketing (group sg-sms)" in out
    assert "verified:" not in out  # sent, not yet read back
    doc = json.loads(subject(folder, SAM, "--format", "json").stdout)
    assert [(d["channel"], d["status"]) for d in doc["drift"]] == [("sms", "corrected")]


def test_a_look_alike_is_another_subject_and_case_in_ascii_is_the_same(folder: Path) -> None:
    """Lookups match as the engine does (mailbox keys): `RITA.RESUB@EXAMPLE.COM` is Rita; a
    look-alike with a long s is its own subject, and neither story shows the other's records."""
    rita = json.loads(subject(folder, RITA.upper(), "--format", "json", "--reveal").stdout)
    assert rita["known"] and [c["kind"] for c in rita["consent_changes"]] == ["subscriptions"]
    assert len(rita["drift"]) == 2
    other = json.loads(subject(folder, LOOK_ALIKE.lower(), "--format", "json", "--reveal").stdout)
    assert [c["kind"] for c in other["consent_changes"]] == ["consent"]
    assert other["drift"] == [] and other["corrections"] == []
    stranger = json.loads(subject(folder, "rita.re\u017fub@example.com".replace("rita", "dana"),
                                  "--format", "json").stdout)
    assert stranger["known"] is False
