"""The CCPA request log (11 CCR §7101) and yearly metrics (§7102), one row per request.

The job sees a request when Braze disagreed with it: an opt-out Braze had not applied, a
deletion whose profile still existed. Requests Braze already honoured never become drift
and are not in this log; the consent platform's own log holds those.

A request is one person's opt-out or deletion, however many places in Braze it had to
reach (`reconcile.reports.requests`): the log counts requests, not drift items.

Log fields: date of request, nature, manner, date and nature of the response, and the
basis for any denial. A deletion whose email matches several Braze profiles is not
executed (semantics §1): it is logged as denied with that basis until it is resolved.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

NATURE = {"opt-out": "opt-out of sale/sharing and marketing (unsubscribe)", "deletion": "deletion"}
MANNER = {"ketch_collected_at": "consent choice recorded in Ketch",
          "deletion_request": "deletion request (Ketch DSR)",
          "first_seen": "found by reconciliation (request time unknown)"}
RESPONSE = {"missed_optout": "complied: unsubscribed in Braze", "missed_blocklist": "complied: email blocklisted",
            "missed_deletion": "complied: Braze profile deleted", "resurrected": "complied: reappeared profile deleted"}


def request_log(requests: Iterable[Mapping[str, Any]],
                reasons: Mapping[Any, str | None] | None = None) -> list[dict[str, Any]]:
    """One row per consumer request (`reconcile.reports.requests.group_requests`), the
    places in Braze it concerned listed inside it; `reasons` maps drift ids to reasons."""
    reasons = reasons or {}
    rows = []
    for r in requests:
        items = r["items"]
        denied = [i for i in items if i["drift_class"] == "ambiguous_identity"]
        if denied:
            responded = min(i["first_seen_at"] for i in denied)
            nature = "denied: the email matches several Braze profiles; not deleted without a prioritization rule"
        elif r["done_at"] is not None:
            responded = r["done_at"]
            nature = "; ".join(dict.fromkeys(
                RESPONSE[i["drift_class"]] if i.get("corrected_at") else "complied: found honoured in Braze"
                for i in items))
        else:
            responded, nature = None, "pending"
        verified = [i.get("verified_at") for i in items]
        rows.append({
            "subject_key": r["subject_key"],
            "request_date": _day(r["source_at"]),
            "request_date_source": r["source_label"],
            "nature": NATURE[r["kind"]],
            "manner": MANNER[r["source"]],
            "places": "; ".join(r["places"]),
            "items": len(items),
            "response_date": _day(responded),
            "response_nature": nature,
            "denial_basis": "; ".join(dict.fromkeys(reasons.get(i["drift_id"]) or
                                                    "identity could not be resolved to one profile" for i in denied)),
            "verified_date": _day(max(verified)) if verified and all(v is not None for v in verified) else "",
            "days_to_respond": (responded - r["source_at"]).days if responded else None,
        })
    return sorted(rows, key=lambda r: (r["request_date"], r["nature"], r["subject_key"]))


def yearly_metrics(log: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per calendar year of request and nature: received, complied, denied, pending, and the
    median and mean calendar days to a substantive response (complied or denied)."""
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in log:
        groups[(int(row["request_date"][:4]), row["nature"])].append(row)
    out = []
    for (year, nature), rows in sorted(groups.items()):
        days = [r["days_to_respond"] for r in rows if r["days_to_respond"] is not None]
        out.append({
            "year": year, "nature": nature, "received": len(rows),
            "complied": sum(1 for r in rows if r["response_nature"].startswith("complied")),
            "denied": sum(1 for r in rows if r["response_nature"].startswith("denied")),
            "pending": sum(1 for r in rows if r["response_nature"] == "pending"),
            "median_days": statistics.median(days) if days else None,
            "mean_days": round(statistics.fmean(days), 1) if days else None,
        })
    return out


def _day(ts: datetime | None) -> str:
    return ts.date().isoformat() if ts else ""
