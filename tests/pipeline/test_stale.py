"""`check_stale` as a table: when a saved plan no longer matches the world it is refused.

A pending (or failed) action is stale when its drift is gone or its expected value changed;
an action left `sending` whose drift is gone is not (the batch may have landed: its drift
is gone because it did); confirmed, rejected and skipped actions are never re-judged."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from reconcile.engine.diff import Rules
from reconcile.engine.frames import DRIFT_COLUMNS, conform
from reconcile.engine.plan import build_plan, plan_document
from reconcile.errors import ExitCode, StalePlan
from reconcile.models.plan import Plan
from reconcile.pipeline.saved import check_stale

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
CONFIG = "cfg-hash-1"
RULES = Rules(key_type="email")


def drift_row(subject: str, *, group: str = "g-news", expected: str = "unsubscribed") -> dict:
    return {"subject_key": subject, "identity": subject, "drift_class": "missed_optout", "field": "group",
            "expected": expected, "actual": "subscribed", "severity": "critical", "reason": "denied in Ketch",
            "action": "group_unsubscribe", "group_id": group, "ketch_collected_at": T0,
            "braze_unsubscribed_at": None}


def frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DRIFT_COLUMNS})
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def planned() -> tuple[dict, Plan, list[dict]]:
    """A saved plan of two actions (groups g-news and g-promo), a@ and b@ in each."""
    rows = [drift_row(s, group=g) for g in ("g-news", "g-promo") for s in ("a@x.io", "b@x.io")]
    drift = frame(rows)
    emails = pd.Series({r["subject_key"]: r["subject_key"] for r in rows})
    plan = build_plan(drift, emails, conform(pd.DataFrame(), "braze_profiles"), RULES, plan_fp="fp", plan_id="plan-1")
    assert [a.group_id for a in plan.actions] == ["g-news", "g-promo"]
    doc = json.loads(json.dumps(plan_document(plan, drift, run_id="run-1", config_hash=CONFIG)))
    return doc, plan, rows


def without(rows: list[dict], subject: str, group: str) -> list[dict]:
    return [r for r in rows if not (r["subject_key"] == subject and r["group_id"] == group)]


def changed(rows: list[dict], subject: str, group: str, expected: str) -> list[dict]:
    return [dict(r, expected=expected) if (r["subject_key"], r["group_id"]) == (subject, group) else r for r in rows]


NEWS_GONE = lambda rows: without(rows, "a@x.io", "g-news")  # noqa: E731
NEWS_CHANGED = lambda rows: changed(rows, "a@x.io", "g-news", "subscribed")  # noqa: E731
ALL_GONE = lambda rows: []  # noqa: E731
SAME = lambda rows: rows  # noqa: E731


@pytest.mark.parametrize("now, news_status, stale", [
    (SAME, None, False),
    (SAME, "pending", False),
    # the planned drift of a still-pending action is gone: someone else fixed it, or the world moved
    (NEWS_GONE, None, True),
    (NEWS_GONE, "pending", True),
    (NEWS_GONE, "failed", True),
    # a batch left `sending` may have reached Braze: its drift being gone is expected
    (NEWS_GONE, "sending", False),
    (ALL_GONE, "sending", True),  # ...but the other (pending) action's drift is gone too
    # the expected value changed (Ketch now says something else)
    (NEWS_CHANGED, None, True),
    (NEWS_CHANGED, "pending", True),
    (NEWS_CHANGED, "sending", True),
    # finished actions are never re-judged
    (NEWS_GONE, "confirmed", False),
    (NEWS_GONE, "rejected", False),
    (NEWS_GONE, "skipped", False),
    (NEWS_CHANGED, "confirmed", False),
    (NEWS_CHANGED, "rejected", False),
    (NEWS_CHANGED, "skipped", False),
], ids=["same", "same-pending", "gone", "gone-pending", "gone-failed", "gone-sending", "all-gone-one-sending",
        "changed", "changed-pending", "changed-sending", "gone-confirmed", "gone-rejected", "gone-skipped",
        "changed-confirmed", "changed-rejected", "changed-skipped"])
def test_stale_table(now, news_status, stale):
    doc, plan, rows = planned()
    news = plan.actions[0]
    done = {} if news_status is None else {news.action_id: news_status}
    drift_now = frame(now(rows))
    if stale:
        with pytest.raises(StalePlan) as caught:
            check_stale(doc, plan, drift_now, done, CONFIG)
        assert f"plan {plan.plan_id} is stale" in str(caught.value)
        assert "nothing was sent" in str(caught.value)
        assert caught.value.exit_code == ExitCode.STALE_PLAN
    else:
        check_stale(doc, plan, drift_now, done, CONFIG)


def test_the_message_counts_and_names_the_changed_corrections():
    doc, plan, rows = planned()
    with pytest.raises(StalePlan, match=r"2 planned correction\(s\) no longer match .*missed_optout group:g-news"):
        check_stale(doc, plan, frame(without(without(rows, "a@x.io", "g-news"), "b@x.io", "g-news")), {}, CONFIG)


def test_when_every_action_is_finished_nothing_is_stale():
    doc, plan, _ = planned()
    done = {plan.actions[0].action_id: "confirmed", plan.actions[1].action_id: "skipped"}
    check_stale(doc, plan, frame([]), done, CONFIG)


def test_new_drift_that_was_not_planned_does_not_make_a_plan_stale():
    doc, plan, rows = planned()
    check_stale(doc, plan, frame(rows + [drift_row("c@x.io")]), {}, CONFIG)


@pytest.mark.parametrize("statuses", [{}, "all-confirmed"])
def test_a_changed_config_hash_is_stale_whatever_the_journal_says(statuses):
    doc, plan, rows = planned()
    done = {a.action_id: "confirmed" for a in plan.actions} if statuses else {}
    with pytest.raises(StalePlan, match=f"was made with config {CONFIG}, the config is now cfg-hash-2"):
        check_stale(doc, plan, frame(rows), done, "cfg-hash-2")


def test_a_document_without_a_config_hash_is_stale():
    doc, plan, rows = planned()
    del doc["config_hash"]
    with pytest.raises(StalePlan, match="was made with config None"):
        check_stale(doc, plan, frame(rows), {}, CONFIG)
