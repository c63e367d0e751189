"""The evidence in the demo's reports against numbers computed here from the state database
with plain SQL: one CCPA request-log row per consumer request, the installed version, the
proposed corrections of a plan run, and a change section whose numbers add up."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from importlib import metadata

import pytest

pytestmark = pytest.mark.slow

OPT_OUT = ("missed_optout", "missed_blocklist")
DELETION = ("missed_deletion", "resurrected", "ambiguous_identity")


def _db(h) -> sqlite3.Connection:
    conn = sqlite3.connect(h.db)
    conn.row_factory = sqlite3.Row
    return conn


def _t(text: str | None) -> datetime | None:
    if text is None:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def test_one_ccpa_row_per_consumer_request(demo_history) -> None:
    h = demo_history
    doc = h.doc(h.demo_run)
    with _db(h) as conn:
        rows = conn.execute(f"""select subject_key, drift_class, field, ketch_collected_at, first_seen_at, detail
                                from drift_items where first_seen_run = ? and drift_class in
                                ({",".join("?" * (len(OPT_OUT) + len(DELETION)))})""",
                            (h.demo_run, *OPT_OUT, *DELETION)).fetchall()
    requests = set()
    for r in rows:
        detail = json.loads(r["detail"] or "{}")
        deletion = r["drift_class"] in DELETION
        clock = (detail.get("requested_at") if deletion else None) or r["ketch_collected_at"] or r["first_seen_at"]
        requests.add((r["subject_key"], "deletion" if deletion else "opt-out", _t(clock)))
    assert len(rows) > len(requests) > 0  # some people's opt-out had to reach several places
    log = doc["ccpa"]["requests"]
    assert len(log) == len(requests)
    assert sum(m["received"] for m in doc["ccpa"]["metrics"]) == len(requests)
    assert sum(r["items"] for r in log) == len(rows)
    assert any(r["items"] > 1 and ";" in r["places"] for r in log)
    assert doc["sla"]["request_counts"]["total"] == len(requests)


def test_the_tool_version_is_the_installed_distributions(demo_history) -> None:
    h = demo_history
    installed = metadata.version("ketch-braze-reconcile")
    doc = h.doc(h.demo_run)
    assert doc["report"]["tool_version"] == installed != "unknown"
    assert doc["summary"]["tool_version"] == installed
    with _db(h) as conn:
        summary = json.loads(conn.execute("select summary from runs where run_id = ?", (h.demo_run,)).fetchone()[0])
    assert summary["tool_version"] == installed
    assert f"by reconcile {installed}" in h.report(h.demo_run, "html").read_text()


def test_a_plan_report_lists_the_proposed_corrections(demo_history) -> None:
    h = demo_history
    with _db(h) as conn:
        plan_id, body = conn.execute("select plan_id, body from plans where run_id = ?", (h.plan_run,)).fetchone()
        journaled = conn.execute("select count(*) from actions where plan_id = ?", (plan_id,)).fetchone()[0]
    planned = json.loads(body)["actions"]
    assert planned and journaled == 0
    doc = h.doc(h.plan_run)
    assert doc["run"]["status"] == "planned"
    assert [(p["kind"], p["endpoint"], p["subjects"]) for p in doc["proposed"]] == [
        (a["kind"], a["endpoint"], len({t[0] for t in a["targets"]})) for a in planned]
    html = h.report(h.plan_run, "html").read_text()
    assert f"Proposed corrections ({len(planned)})" in html and "No action was journaled" not in html
    assert f"## Proposed corrections ({len(planned)})" in h.report(h.plan_run, "md").read_text()


def _open_at(rows, at: datetime) -> list:
    out = []
    for r in rows:
        closes = [t for t in (_t(r["verified_at"]), _t(r["resolved_at"])) if t is not None]
        if _t(r["first_seen_at"]) <= at and (not closes or min(closes) > at):
            out.append(r)
    return out


@pytest.mark.parametrize("which", ["demo_run", "rerun"])
def test_the_change_section_agrees_with_the_state_database(demo_history, which: str) -> None:
    h = demo_history
    run_id = getattr(h, which)
    doc = h.doc(run_id)
    ch = doc["changes"]
    with _db(h) as conn:
        rows = conn.execute("select * from drift_items").fetchall()
        run = conn.execute("select * from runs where run_id = ?", (run_id,)).fetchone()
        prev = conn.execute("select * from runs where started_at < ? and mode != 'prune' order by started_at desc "
                            "limit 1", (run["started_at"],)).fetchone()
    t1 = _t(run["finished_at"])
    t0 = _t(prev["finished_at"]) if prev else None
    before = _open_at(rows, t0) if t0 else []
    now = _open_at(rows, t1)
    new = [r for r in rows if (t0 is None or _t(r["first_seen_at"]) > t0) and _t(r["first_seen_at"]) <= t1]
    assert ch["previous_run"] == (prev["run_id"] if prev else None)
    assert (ch["total"]["before"], ch["total"]["new"], ch["total"]["now"]) == (len(before), len(new), len(now))
    assert ch["total"]["now"] == ch["total"]["before"] + ch["total"]["new"] - ch["total"]["closed"]
    for row in ch["by_class"]:
        assert row["now"] == row["before"] + row["new"] - row["fixed"] - row["resolved"]
        assert row["now"] == sum(1 for r in now if r["drift_class"] == row["drift_class"])
    if which == "rerun":
        # the demo verified its corrections: nothing of theirs is open before the rerun, and the
        # rerun found no correctable drift, so it closed nothing and opened nothing new
        assert ch["total"]["before"] == len(before) > 0 and ch["total"]["new"] == 0
        assert ch["by_class"][0]["drift_class"] == "missed_optout" and ch["by_class"][0]["before"] == 0
    else:
        verified = [r for r in rows if r["first_seen_run"] == run_id and r["verified_at"] is not None]
        assert ch["total"]["fixed"] == len(verified) > 0


def test_the_index_counts_agree_with_each_reports_change_section(demo_history) -> None:
    from pathlib import Path

    from reconcile.reports.index import index_rows
    from reconcile.store.store import Store

    h = demo_history
    with Store.open(f"sqlite:///{h.db}") as store:
        rows = {r["run_id"]: r for r in index_rows(store, Path(h.folder / "reports"))}
    for run_id in (h.demo_run, h.rerun, h.plan_run):
        doc = h.doc(run_id)
        assert rows[run_id]["open_items"] == doc["changes"]["total"]["now"]
        critical = sum(c["now"] for c in doc["changes"]["by_class"] if c["severity"] == "critical")
        assert rows[run_id]["open_critical"] == critical
        assert rows[run_id]["report"] == f"{run_id}.html"
    assert rows[h.rerun]["drift_found"] == sum(h.doc(h.rerun)["run"]["drift_counts"].values())
