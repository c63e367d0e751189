"""A seeded multi-run history: four runs over two weeks of March 2026 (an applied run, a
refused one, an applied run with an override, a failed one), with opt-outs and deletions
in every state: verified, corrected only, open, breached, aged from an unknown source."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from reconcile.config import Config
from reconcile.config.model import ReportConfig, StateConfig
from reconcile.errors import AuthError, GuardRefused
from reconcile.pipeline.recorder import RunRecorder
from reconcile.store.store import Store

UTC = timezone.utc
ANN = "Ann.Lee@example.com"
BOB = "bob.stone@example.org"
CARL = "carl@example.net"
EXT = "ext-100234"
EXT_ECHO = "ext-998877"
IDENTITIES = (ANN, ANN.casefold(), BOB, CARL, EXT, EXT_ECHO)
DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=10)
        return self.now


def report_config(tmp_path: Path, url: str, **report: object) -> Config:
    return Config(state=StateConfig(url=url), path=tmp_path / "job" / "reconcile.toml",
                  report=ReportConfig(dir=tmp_path / "reports", **report))


def _drift(subject: str, cls: str, field: str, collected: datetime | None = None, reason: str = "") -> dict:
    severity = {"missed_optout": "critical", "missed_deletion": "critical", "missed_optin": "low"}[cls]
    return {"subject_key": subject, "drift_class": cls, "field": field, "expected": "unsubscribed",
            "actual": "subscribed", "severity": severity, "reason": reason or f"{cls} for {subject}",
            "ketch_collected_at": collected, "detail": {"identity": subject}}


def seed_history(store: Store) -> dict[str, str]:
    """Returns the run ids by name: applied, refused, overridden, failed."""
    ids = {}
    # 1: applied; Ann's opt-out corrected and verified, Carl's opt-in left for later
    rec = RunRecorder(store, Clock(DAY1), "20260302T090000-aaaaaa", "full", "cfg-1", job="nightly")
    rec.start()
    items = [_drift(ANN.casefold(), "missed_optout", "email_subscribe", DAY1 - timedelta(days=3),
                    reason=f"{ANN} opted out in Ketch"),
             _drift(EXT, "missed_deletion", "profile"),
             _drift(CARL, "missed_optin", "g1")]
    got = store.record_drift(rec.run_id, items, [ANN.casefold(), EXT, CARL], DAY1 + timedelta(minutes=11))
    rec.planned(universe_count=1200, ketch_count=1200, ketch_records=1100, ketch_extracted_at=DAY1,
                braze_count=1180, braze_extracted_at=DAY1, drift_counts={"missed_optout": 1, "missed_deletion": 1,
                                                                         "missed_optin": 1},
                exceptions_count=1, plan_id="plan-1", actions_planned=1, guard_result=[],
                capabilities={"users.track": True, "users.delete": True, "users.export.ids": False})
    store.add_exceptions(rec.run_id, [{"identity": BOB, "source": "universe", "reason": f"malformed: {BOB};x"}])
    store.save_plan("plan-1", rec.run_id, "fp1", {}, DAY1)
    store.journal_plan("plan-1", rec.run_id, [{"action_id": "a1", "seq": 0, "endpoint": "/users/track",
                                               "kind": "global_unsubscribe", "subject_keys": [ANN.casefold()]}], DAY1)
    rec.applying()
    store.journal_sending("a1", DAY1 + timedelta(minutes=12))
    store.journal_result("a1", "confirmed", at=DAY1 + timedelta(minutes=12),
                         response_summary={"responses": [{"status": 201, "message": "success"}], "accepted": 1})
    ann_id = got[(ANN.casefold(), "missed_optout", "email_subscribe")]
    store.mark_corrected([ann_id], "a1", DAY1 + timedelta(minutes=12))
    store.mark_verified([ann_id], DAY1 + timedelta(minutes=18))
    rec.applied(actions_sent=1, actions_confirmed=1, verified_count=1, unverified_count=0)
    ids["applied"] = rec.run_id

    # 2: refused two days later; the deletion is still open
    day = DAY1 + timedelta(days=2)
    rec = RunRecorder(store, Clock(day), "20260304T090000-bbbbbb", "full", "cfg-1", job="nightly")
    rec.start()
    store.record_drift(rec.run_id, [_drift(EXT, "missed_deletion", "profile"), _drift(CARL, "missed_optin", "g1")],
                       [EXT, CARL], day + timedelta(minutes=11))
    rec.planned(universe_count=1190, drift_counts={"missed_deletion": 1, "missed_optin": 1}, actions_planned=1,
                guard_result=[{"guard": "max_deletions", "message": "1 deletion planned, limit 0"}])
    err = GuardRefused(["max_deletions"], "1 deletion planned, limit guards.max_deletions = 0. Nothing was written")
    rec.refused(err, err.exit_code)
    ids["refused"] = rec.run_id

    # 3: applied with an override; the deletion corrected (not verified); Bob's old opt-out found late
    day = DAY1 + timedelta(days=9)
    rec = RunRecorder(store, Clock(day), "20260311T090000-cccccc", "full", "cfg-1", job="nightly")
    rec.start()
    got = store.record_drift(rec.run_id, [_drift(EXT, "missed_deletion", "profile"),
                                          _drift(BOB, "missed_optout", "g2", DAY1 - timedelta(days=20))],
                             [EXT, BOB, CARL], day + timedelta(minutes=11))
    rec.planned(universe_count=1195, drift_counts={"missed_deletion": 1, "missed_optout": 1}, plan_id="plan-3",
                actions_planned=1, guard_result=[{"guard": "max_deletions", "message": "1 deletion planned, limit 0"}])
    store.update_run(rec.run_id, guard_overrides=[{"guard": "max_deletions", "actor": "alice.dpo",
                                                   "at": (day + timedelta(minutes=11)).isoformat()}])
    store.save_plan("plan-3", rec.run_id, "fp3", {}, day)
    store.journal_plan("plan-3", rec.run_id, [{"action_id": "a3", "seq": 0, "endpoint": "/users/delete",
                                               "kind": "delete", "subject_keys": [EXT, EXT_ECHO]}], day)
    rec.applying()
    store.journal_sending("a3", day + timedelta(minutes=12))
    store.journal_result("a3", "confirmed", at=day + timedelta(minutes=12),
                         response_summary={"deleted": 1, "message": f"queued deletion of {EXT}",
                                           "echo": f"user {EXT_ECHO} unknown"})
    store.mark_corrected([got[(EXT, "missed_deletion", "profile")]], "a3", day + timedelta(minutes=12))
    rec.applied(actions_sent=1, actions_confirmed=1, verified_count=0, unverified_count=1)
    ids["overridden"] = rec.run_id

    # 4: failed before planning
    day = DAY1 + timedelta(days=10)
    rec = RunRecorder(store, Clock(day), "20260312T090000-dddddd", "full", "cfg-1", job="nightly")
    rec.start()
    rec.failed(AuthError("invalid API key", service="braze", method="GET", url="/email/unsubscribes", status_code=401))
    ids["failed"] = rec.run_id
    return ids
