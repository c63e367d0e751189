"""Blocklist when unsure. With the partner page's eight permissions the key cannot read
`/email/hard_bounces` (403 Access Denied), so whether an address is blocklisted is unknown;
zero profiles is no evidence of it. A deleted subject's address (`suppress_deleted_emails`)
whose profile is already gone is blocklisted; once this job's own blocklist batch is
confirmed the address counts as blocklisted and is not sent again. With the list readable,
the list decides. Over loopback against the simulators."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconcile.pipeline.job import run_job
from reconcile.sandbox.braze import PARTNER_PERMISSIONS

GONE = ["gone.one@example.com", "gone.two@example.com", "gone.three@example.com"]


def blocklist_calls(w, since: int = 0) -> list[str]:
    return [e for c in w.braze.calls[since:] if c["path"] == "/email/blocklist" and c["status"] < 300
            for e in (c["body"] or {}).get("email", [])]


def build(w, permissions: str, bounced: list[str]):
    if permissions == "partner":
        w.braze.permissions = set(PARTNER_PERMISSIONS)
    cfg = w.config(policy={"suppress_deleted_emails": True},
                   guards={"max_deletion_fraction": 1.0, "max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=30, drift=0.0)
    asked = (w.now - timedelta(days=2)).isoformat()
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n" + "".join(f"{e},{asked}\n" for e in GONE))
    for email in bounced:
        w.braze.add_hard_bounce(email, w.now - timedelta(days=3))
    return cfg


@pytest.mark.parametrize("permissions", ["partner", "all"])
def test_a_deleted_subject_without_a_profile_is_blocklisted(pg_world, permissions):
    w = pg_world
    cfg = build(w, permissions, bounced=[])
    with w.runtime(cfg) as rt:
        first = run_job(rt)
        run = rt.store.get_run(first.run_id)
    assert first.exit_code == 0, first.messages
    assert run["capabilities"]["email.hard_bounces"] is (permissions == "all")
    assert first.counts["missed_blocklist"] == len(GONE)
    assert sorted(blocklist_calls(w)) == sorted(GONE)
    assert first.unverified == 0
    hard = {k.casefold() for k in w.braze.to_dict()["hard_bounces"]}
    assert {e.casefold() for e in GONE} <= hard
    before = len(w.braze.calls)
    with w.runtime(cfg) as rt:  # the job's own confirmed blocklist (or the list) is evidence now
        second = run_job(rt)
    assert second.counts["missed_blocklist"] == 0 and blocklist_calls(w, before) == []


def test_an_address_on_a_readable_hard_bounce_list_is_not_sent_again(world):
    w = world
    cfg = build(w, "all", bounced=GONE[:1])
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.counts["missed_blocklist"] == len(GONE) - 1
    assert sorted(blocklist_calls(w)) == sorted(GONE[1:])


def test_with_the_partner_key_an_address_blocklisted_by_someone_else_is_blocklisted_again(world):
    """The job cannot read the list: a blocklist it did not make is not assumed."""
    w = world
    cfg = build(w, "partner", bounced=GONE[:1])
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.counts["missed_blocklist"] == len(GONE)
    assert sorted(blocklist_calls(w)) == sorted(GONE)


def test_the_jobs_own_blocklist_of_non_ascii_addresses_counts_as_evidence(world):
    """The confirmed blocklist is matched by the mailbox key: an address with a non-ASCII
    local part or domain is not sent to `/email/blocklist` again on the next run."""
    w = world
    gone = ["JOSÉ.gone@example.com", "gone@münchen.example"]
    w.braze.permissions = set(PARTNER_PERMISSIONS)
    cfg = w.config(policy={"suppress_deleted_emails": True},
                   guards={"max_deletion_fraction": 1.0, "max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=30, drift=0.0)
    asked = (w.now - timedelta(days=2)).isoformat()
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n" + "".join(f"{e},{asked}\n" for e in gone),
                                         encoding="utf-8")
    with w.runtime(cfg) as rt:
        first = run_job(rt)
    assert first.exit_code == 0, first.messages
    assert first.counts["missed_blocklist"] == len(gone)
    before = len(w.braze.calls)
    with w.runtime(cfg) as rt:
        second = run_job(rt)
    assert second.counts["missed_blocklist"] == 0 and blocklist_calls(w, before) == []
