"""Incremental runs fed by the ledger: the subjects whose consent or subscriptions changed
since the last successful run are checked, and nobody else from the identity list."""

from __future__ import annotations

from reconcile.pipeline.read import since_watermark
from reconcile.pipeline.job import run_job
from tests.ledger.conftest import consent, identities, message, now_ts


def ketch_lookups(w) -> list[str]:
    return [c["body"]["identities"]["email"] for c in w.ketch.calls if c["path"].endswith("/get")]


def test_only_the_changed_subjects_are_read_and_corrected(lw):
    w = lw.w
    w.seed(lw.cfg, subjects=120, drift=0.0)
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n")
    emails = [line for line in (w.tmp / "universe.csv").read_text().splitlines()[1:]]
    with lw.runtime() as rt:
        full = run_job(rt)
    assert full.status in ("in_sync", "applied"), full.messages
    full_lookups = len(ketch_lookups(w))
    changed = [e for e in emails if w.braze.profiles_by_email(e)[0].email_subscribe in ("subscribed", "opted_in")][:2]
    for email in changed:  # the person withdraws in Ketch; Ketch tells the ledger
        w.ketch.set_consent("email", email, {"email_marketing": False}, now_ts())
        assert lw.post(consent(email, email_marketing="denied")).status_code == 204
    topic = message("SubscriptionTopicRequest", {"property": "web", "environment": "production",
                                                 "identities": identities(changed[0]),
                                                 "topics": {"newsletter": {"status": "denied"}},
                                                 "submittedTimestamp": now_ts()})
    assert lw.post(topic).status_code == 202
    w.ketch.calls.clear()
    with lw.runtime() as rt:  # every subject of this universe changed: the fraction guard is judged on it
        inc = run_job(rt, mode="incremental", overrides={"max_unsubscribe_fraction"})
        universe = rt.store.get_run(inc.run_id)["universe_count"]
    assert inc.status == "applied", inc.messages
    assert sorted(set(ketch_lookups(w))) == sorted(changed) and universe == 2
    assert len(ketch_lookups(w)) == 4 < full_lookups / 50
    for email in changed:
        assert w.braze.profiles_by_email(email)[0].email_subscribe == "unsubscribed"
    with lw.runtime() as rt:  # the watermark moved past these changes: the ledger adds nobody now
        assert lw.ledger.changed_since(since_watermark(rt)) == []
        assert len(lw.ledger.changed_since(None)) == 2


def test_without_the_ledger_an_incremental_run_does_not_see_ketch_changes(lw):
    w = lw.w
    w.seed(lw.cfg, subjects=40, drift=0.0)
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n")
    email = [line for line in (w.tmp / "universe.csv").read_text().splitlines()[1:]][0]
    off = w.config(ledger={"enabled": False})
    with lw.runtime(off) as rt:
        run_job(rt)
    lw.post(consent(email, email_marketing="denied"))
    w.ketch.calls.clear()
    with lw.runtime(off) as rt:
        inc = run_job(rt, mode="incremental")
    assert inc.status == "in_sync" and ketch_lookups(w) == []
