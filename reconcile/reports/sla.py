"""Deadline ageing: every opt-out and deletion aged against the deadlines that apply.

The clock starts at the request's source time: Ketch's `collectedAt` for an opt-out, the
deletion request's time for a deletion. When that is unknown the clock starts when the
job first saw the drift, and the item says so (`source = "first_seen"`): the true age is
then at least the one shown. An item is done when it was corrected (the change was
accepted by Braze), or when its drift resolved without a correction; verification (read
back after Braze's consistency window) is aged separately.

Deadlines (`report.regulations` picks which apply; the strictest due time wins). An
opt-out has a channel: SMS when it concerns a group mapped from a topic's `sms` channel,
email otherwise (global `email_subscribe`, blocklist, email groups). CAN-SPAM governs
email opt-outs, the TCPA SMS ones, the CCPA both:

    can_spam   email opt-out  10 business days   15 U.S.C. §7704(a)(4)
    tcpa       SMS opt-out    10 business days   47 CFR 64.1200(a)(10)
    ccpa       opt-out        15 business days   11 CCR §7026(f)
    ccpa       deletion   45 calendar days   11 CCR §7021
    gdpr       deletion   one calendar month GDPR Art. 12(3), 17

A business-day deadline ends when the N-th business day after the source date ends, in
`report.timezone`. Everything here is pure: `now` is passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, overload

from reconcile.reports.calendar import BusinessCalendar, add_months
from reconcile.reports.channels import channel_of

OPT_OUT, DELETION = "opt-out", "deletion"
KIND = {"missed_optout": OPT_OUT, "missed_blocklist": OPT_OUT,
        "missed_deletion": DELETION, "resurrected": DELETION, "ambiguous_identity": DELETION}
SOURCES = {"ketch_collected_at": "Ketch collectedAt", "deletion_request": "deletion request time",
           "first_seen": "first seen by the job (source time unknown)"}
ORDER = {"breached": 0, "nearing": 1, "open": 2, "no deadline": 3, "met": 4}


@dataclass(frozen=True)
class Deadline:
    regulation: str
    kind: str
    amount: int
    unit: str  # business_days | calendar_days | months
    citation: str
    channel: str | None = None  # "email" | "sms": the only channel it governs; None: every channel

    @property
    def label(self) -> str:
        unit = {"business_days": "business days", "calendar_days": "calendar days", "months": "calendar month(s)"}
        what = f"{'SMS' if self.channel == 'sms' else self.channel} {self.kind}" if self.channel else self.kind
        return f"{self.regulation.upper().replace('_', '-')} {what}: {self.amount} {unit[self.unit]}"

    def due(self, source: datetime, cal: BusinessCalendar) -> datetime:
        start = cal.local_date(source)
        if self.unit == "business_days":
            last = cal.add_business_days(start, self.amount)
        elif self.unit == "calendar_days":
            last = start + timedelta(days=self.amount)
        else:
            last = add_months(start, self.amount)
        return cal.end_of_day(last)


DEADLINES = (
    Deadline("can_spam", OPT_OUT, 10, "business_days", "15 U.S.C. §7704(a)(4)", "email"),
    Deadline("tcpa", OPT_OUT, 10, "business_days", "47 CFR 64.1200(a)(10)", "sms"),
    Deadline("ccpa", OPT_OUT, 15, "business_days", "11 CCR §7026(f)"),
    Deadline("ccpa", DELETION, 45, "calendar_days", "11 CCR §7021"),
    Deadline("gdpr", DELETION, 1, "months", "GDPR Art. 12(3), Art. 17"),
)


@dataclass(frozen=True)
class SlaPolicy:
    regulations: tuple[str, ...]
    calendar: BusinessCalendar
    near_days: int = 2
    sms_groups: frozenset[str] = frozenset()  # groups mapped from a topic's sms channel

    @classmethod
    def from_config(cls, rc: Any, sms_groups: Iterable[str] = ()) -> SlaPolicy:
        return cls(tuple(rc.regulations), BusinessCalendar.from_config(rc), int(rc.near_deadline_days),
                   frozenset(sms_groups))

    def deadlines(self, kind: str, channel: str = "email") -> list[Deadline]:
        return [d for d in DEADLINES if d.kind == kind and d.regulation in self.regulations
                and d.channel in (None, channel)]

    def channel(self, item: Mapping[str, Any]) -> str:
        """"sms" for an item about a group mapped from an SMS channel, else "email"."""
        return channel_of(item, self.sms_groups)


def source_time(item: Mapping[str, Any]) -> tuple[datetime, str]:
    """(when the clock starts, which source that is) for one drift item."""
    detail = item.get("detail") or {}
    if KIND.get(item.get("drift_class", "")) == DELETION:
        requested = _parse(detail.get("deletion_requested_at") or detail.get("requested_at"))
        if requested is not None:
            return requested, "deletion_request"
    if item.get("ketch_collected_at") is not None:
        return _parse(item["ketch_collected_at"]), "ketch_collected_at"
    return _parse(item["first_seen_at"]), "first_seen"


def done_time(item: Mapping[str, Any]) -> datetime | None:
    """When the item stopped being a problem: corrected, or else resolved (or verified)."""
    for name in ("corrected_at", "resolved_at", "verified_at"):
        if item.get(name) is not None:
            return _parse(item[name])
    return None


def age_item(item: Mapping[str, Any], policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """One opt-out or deletion aged against its strictest applicable deadline."""
    cal = policy.calendar
    kind = KIND[item["drift_class"]]
    channel = policy.channel(item)
    source, source_kind = source_time(item)
    done, verified = done_time(item), _parse(item.get("verified_at"))
    start = cal.local_date(source)
    options = sorted(((d.due(source, cal), d) for d in policy.deadlines(kind, channel)), key=lambda pair: pair[0])
    due, deadline = options[0] if options else (None, None)
    out: dict[str, Any] = {
        "drift_id": item.get("id"), "subject_key": item["subject_key"], "drift_class": item["drift_class"],
        "kind": kind, "channel": channel, "field": item.get("field") or "", "drift_status": item.get("status"),
        "source": source_kind, "source_label": SOURCES[source_kind], "source_at": source,
        "first_seen_at": _parse(item.get("first_seen_at")), "corrected_at": _parse(item.get("corrected_at")),
        "verified_at": verified, "done_at": done,
        "deadline": deadline.label if deadline else None, "regulation": deadline.regulation if deadline else None,
        "citation": deadline.citation if deadline else None, "due_at": due,
        "business_days_to_done": cal.business_days_between(start, cal.local_date(done)) if done else None,
        "business_days_to_verified": cal.business_days_between(start, cal.local_date(verified)) if verified else None,
        "business_days_open": None if done else cal.business_days_between(start, cal.local_date(now)),
        "business_days_left": None,
    }
    if due is None:
        out["sla"] = "no deadline"
    elif done is not None:
        out["sla"] = "met" if done < due else "breached"
    elif now >= due:
        out["sla"] = "breached"
    else:
        last_day = cal.local_date(due - timedelta(microseconds=1))
        out["business_days_left"] = cal.business_days_between(cal.local_date(now), last_day)
        out["sla"] = "nearing" if out["business_days_left"] <= policy.near_days else "open"
    return out


def sla_section(items: Iterable[Mapping[str, Any]], policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """The `sla` section: policy, every aged item (worst first) and counts."""
    aged = [age_item(i, policy, now) for i in items if i.get("drift_class") in KIND]
    aged.sort(key=lambda a: (ORDER[a["sla"]], a["due_at"] or now, a["drift_id"] or 0))
    counts = Counter(a["sla"] for a in aged)
    cal = policy.calendar
    return {
        "as_of": now,
        "policy": {"regulations": list(policy.regulations), "holiday_countries": list(cal.countries),
                   "extra_holidays": sorted(d.isoformat() for d in cal.extra), "timezone": cal.tz,
                   "near_deadline_business_days": policy.near_days,
                   "deadlines": [d.label + f" ({d.citation})" for d in DEADLINES
                                 if d.regulation in policy.regulations]},
        "counts": {name: counts.get(name, 0) for name in ORDER} | {"total": len(aged)},
        "by_channel": {ch: {name: sum(1 for a in aged if a["channel"] == ch and a["sla"] == name) for name in ORDER}
                       for ch in sorted({a["channel"] for a in aged})},
        "source_unknown": sum(1 for a in aged if a["source"] == "first_seen"),
        "items": aged,
    }


@overload
def _parse(value: None) -> None: ...
@overload
def _parse(value: datetime | str) -> datetime: ...
def _parse(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
