"""What the compliance report says, for a seeded multi-run history."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.reports.build import write_report
from reconcile.reports.masking import mask, mask_key
from reconcile.reports.build import report_doc, write
from reconcile.reports.history import Selection
from reconcile.store.store import Store
from tests.reports.seed import ANN, BOB, DAY1, EXT, report_config, seed_history

AS_OF = datetime(2026, 3, 13, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def seeded(store: Store, store_url: str, tmp_path: Path):
    ids = seed_history(store)
    return store, report_config(tmp_path, store_url, regulations=("can_spam", "ccpa", "gdpr")), ids


def test_the_detailed_run_has_summary_guards_override_actions_and_changes(seeded) -> None:
    store, cfg, ids = seeded
    doc = report_doc(store, cfg, Selection(run_id=ids["overridden"]), AS_OF, None)
    s = doc["summary"]
    assert (s["mode"], s["job"], s["config_hash"]) == ("full", "nightly", "cfg-1")
    assert doc["guards"]["results"][0]["guard"] == "max_deletions"
    assert doc["guards"]["overrides"] == [{"guard": "max_deletions", "actor": "alice.dpo",
                                           "at": (DAY1 + timedelta(days=9, minutes=11)).isoformat()}]
    assert doc["actions"][0]["response_summary"]["deleted"] == 1
    assert [i["subject_key"] for i in doc["unverified"]] == [EXT]
    ch = doc["changes"]
    # open when the refused run ended: the deletion and Carl's opt-in; new: Bob's opt-out; Carl's opt-in
    # was not found again (resolved); the deletion was corrected but not verified, so it is still open
    assert ch["previous_run"] == ids["refused"]
    assert {k: ch["total"][k] for k in ("before", "new", "fixed", "resolved", "now")} == {
        "before": 2, "new": 1, "fixed": 0, "resolved": 1, "now": 2}
    by = {c["drift_class"]: c for c in ch["by_class"]}
    assert (by["missed_optout"]["before"], by["missed_optout"]["now"], by["missed_optout"]["delta"]) == (0, 1, 1)
    assert (by["missed_optin"]["resolved"], by["missed_optin"]["delta"]) == (1, -1)
    assert (by["missed_deletion"]["before"], by["missed_deletion"]["now"], by["missed_deletion"]["found"]) == (1, 1, 1)
    assert [r["run_id"] for r in doc["runs"]] == [ids["applied"], ids["refused"], ids["overridden"]]


def test_trends_follow_open_critical_drift_and_time_to_remediate(seeded) -> None:
    store, cfg, ids = seeded
    doc = report_doc(store, cfg, Selection(job="nightly"), AS_OF, None)
    points = {p["run_id"]: p["open_critical"] for p in doc["trends"]["open_critical"]}
    # after run 1 only the deletion is open; after the refused run still; after run 3 Bob's opt-out (never sent)
    assert points == {ids["applied"]: 1, ids["refused"]: 1, ids["overridden"]: 1, ids["failed"]: 1}
    buckets = {b["label"]: b["count"] for b in doc["trends"]["time_to_remediate"]["buckets"]}
    # Ann: collected Fri 27 Feb, corrected Mon 2 Mar = 1 business day; the deletion: first seen 2 Mar, corrected 11 Mar = 7
    assert buckets["1"] == 1 and buckets["7"] == 1 and sum(buckets.values()) == 2


def test_sla_section_flags_the_breach_and_says_which_source_started_the_clock(seeded) -> None:
    store, cfg, ids = seeded
    doc = report_doc(store, cfg, Selection(job="nightly"), AS_OF, None)
    sla = {(i["subject_key"], i["drift_class"]): i for i in doc["sla"]["items"]}
    bob = sla[(BOB, "missed_optout")]
    assert bob["sla"] == "breached" and bob["source"] == "ketch_collected_at" and bob["regulation"] == "can_spam"
    ann = sla[(ANN.casefold(), "missed_optout")]
    assert ann["sla"] == "met" and ann["business_days_to_done"] == 1 and ann["business_days_to_verified"] == 1
    ext = sla[(EXT, "missed_deletion")]
    assert ext["source"] == "first_seen" and "source time unknown" in ext["source_label"]
    assert ext["regulation"] == "gdpr" and ext["sla"] == "met"  # a month beats CCPA's 45 days
    assert doc["sla"]["source_unknown"] == 1 and doc["sla"]["counts"]["breached"] == 1
    log = {r["subject_key"]: r for r in doc["ccpa"]["requests"]}
    assert log[EXT]["manner"].startswith("found by reconciliation") and log[EXT]["response_date"] == "2026-03-11"
    assert log[BOB]["response_nature"] == "pending"
    metrics = {m["nature"]: m for m in doc["ccpa"]["metrics"]}
    assert metrics["deletion"]["complied"] == 1 and metrics["deletion"]["median_days"] == 9


@pytest.mark.parametrize("name, why", [("refused", "max_deletions"), ("failed", "HTTP 401: invalid API key")])
def test_refused_and_failed_runs_get_every_format_saying_why(seeded, name: str, why: str) -> None:
    store, cfg, ids = seeded
    md = write_report(store, ids[name], cfg)
    html = md.with_suffix(".html").read_text()
    doc = json.loads(md.with_suffix(".json").read_text())
    assert f'id="run-status">{name}<' in html and why in html.split('id="run-why">')[1].split("</pre>")[0]
    assert why in md.read_text() and "Why:" in md.read_text()
    assert doc["outcome"]["status"] == name and why in doc["outcome"]["error"]
    if name == "failed":
        assert "Drift was not computed" in html and "Capabilities" in html and "Not recorded" in html
    else:
        assert "tripped: 1 deletion planned" in html and "No guard was overridden" in html


def test_write_report_records_the_tool_version_and_a_reveal(seeded, tmp_path: Path, store_url: str) -> None:
    store, cfg, ids = seeded
    write_report(store, ids["applied"], cfg)
    run = store.get_run(ids["applied"])
    assert run["summary"]["tool_version"] and "reveals" not in run["summary"]
    revealing = report_config(tmp_path, store_url, reveal=True)
    md = write_report(store, ids["applied"], revealing)
    reveals = store.get_run(ids["applied"])["summary"]["reveals"]
    assert len(reveals) == 1 and reveals[0]["via"] == "report.reveal = true" and reveals[0]["actor"]
    assert ANN.casefold() in md.with_suffix(".html").read_text() and "Identities were revealed" in md.with_suffix(".html").read_text()


def test_html_is_escaped_and_requests_nothing(seeded) -> None:
    store, cfg, ids = seeded
    store.add_exceptions(ids["failed"], [{"identity": "x", "source": "universe",
                                          "reason": '<script>alert(1)</script><img src="http://127.0.0.1:9/a">'}])
    html = write_report(store, ids["failed"], cfg).with_suffix(".html").read_text()
    assert "<script" not in html and "&lt;script&gt;" in html and '<img src="http' not in html
    assert re.search(r"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "@import" not in html and "url(" not in html


def test_masked_report_keys_by_the_kept_secret(seeded) -> None:
    store, cfg, ids = seeded
    doc = report_doc(store, cfg, Selection(run_id=ids["applied"]), AS_OF, mask_key(cfg))
    assert doc["sla"]["items"][0]["subject_key"] == mask(ANN.casefold(), mask_key(cfg))
    paths = write(doc, cfg.report.dir, "x", ["csv"])
    assert {p.name for p in paths} == {f"x.{n}.csv" for n in
                                       ("requests", "metrics", "sla", "drift", "exceptions", "actions", "runs")}


def test_a_subjects_story_on_each_database(seeded) -> None:
    """`reconcile subject`'s gathering on SQLite and PostgreSQL: drift, the batch that named
    the subject (found inside the JSON list of subject keys), and its place in words."""
    from reconcile.reports.subject import subject_keys_for, subject_story

    store, _, ids = seeded
    story = subject_story(store, subject_keys_for(ANN), {})
    assert story["subject_keys"] == [ANN.casefold()] and story["known"]
    assert [(d["drift_class"], d["channel"], d["status"]) for d in story["drift"]] == [
        ("missed_optout", "email", "verified")]
    assert [(a["action_id"], a["status"]) for a in story["corrections"]] == [("a1", "confirmed")]
    assert [r["run_id"] for r in story["runs"]] == [ids["applied"]]
    ext = subject_story(store, subject_keys_for(EXT), {})
    assert [a["action_id"] for a in ext["corrections"]] == ["a3"]  # not a1: the LIKE is checked exactly
    assert subject_story(store, subject_keys_for("nobody@example.com"), {})["known"] is False
