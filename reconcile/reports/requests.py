"""Consumer requests: the aged drift items of one person's one request, taken together.

A person who opts out in Ketch once may be missing that opt-out in several places in
Braze (the global `email_subscribe`, each mapped subscription group, the blocklist): the
job keeps one drift item per place, but the person made one request. A request is the
items of one subject, of one kind (opt-out or deletion), whose clock starts at the same
source time. Its deadline is the earliest of its items', it is done when every item is,
and its deadline status is the worst of its items'.

Each place is named for a reader: the channel (email, sms, ...) and the group (its Ketch
topic and Braze subscription group id) from the config's `[[mapping.topics]]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconcile.reports.sla import ORDER

FIELD_PLACES = {"email_subscribe": ("email", "all email (global subscription)"),
                "blocklist": ("email", "email blocklist"),
                "profile": ("profile", "Braze profile")}


@dataclass(frozen=True)
class Place:
    channel: str
    group: str

    @property
    def label(self) -> str:
        return f"{self.channel}: {self.group}"


def topic_names(topics: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """{subscription group id: (channel, topic)} from `[[mapping.topics]]` entries."""
    return {str(t.subscription_group_id): (t.channel or "email", t.topic) for t in topics}


def place(field: str, groups: Mapping[str, tuple[str, str]]) -> Place:
    """Where a drift item's field lives, in words."""
    if field in FIELD_PLACES:
        return Place(*FIELD_PLACES[field])
    kind, sep, ident = field.partition(":")
    if sep and kind == "group":
        channel, topic = groups.get(ident, ("email", ""))
        return Place(channel, f"{topic} (group {ident})" if topic else f"group {ident}")
    if sep:
        return Place(kind, ident or kind)
    return Place("email" if field.startswith("email") else field.split("_")[0] or "-", field or "-")


def request_key(aged: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(aged["subject_key"]), str(aged["kind"]), aged["source_at"].isoformat())


def group_requests(aged: Sequence[Mapping[str, Any]],
                   groups: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per request, worst deadline status first; `items` keeps each aged item."""
    by_key: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for a in aged:
        by_key.setdefault(request_key(a), []).append(a)
    out = []
    for (subject, kind, _), items in by_key.items():
        places = [place(str(i.get("field") or ""), groups) for i in items]
        worst = min(items, key=lambda i: ORDER[i["sla"]])
        done = [i["done_at"] for i in items]
        dues = [i["due_at"] for i in items if i["due_at"] is not None]
        out.append({
            "subject_key": subject, "kind": kind, "source_at": items[0]["source_at"],
            "source": items[0]["source"], "source_label": items[0]["source_label"],
            "drift_classes": sorted({str(i["drift_class"]) for i in items}),
            "channels": sorted({p.channel for p in places}),
            "places": sorted({p.label for p in places}),
            "groups": sorted({p.group for p in places}),
            "deadline": worst["deadline"], "citation": worst["citation"],
            "due_at": min(dues) if dues else None,
            "done_at": max(done) if all(d is not None for d in done) else None,
            "sla": worst["sla"],
            "business_days_open": max((i["business_days_open"] for i in items
                                       if i["business_days_open"] is not None), default=None),
            "business_days_left": min((i["business_days_left"] for i in items
                                       if i["business_days_left"] is not None), default=None),
            "items": [dict(i) | {"channel": p.channel, "group": p.group} for i, p in zip(items, places)],
        })
    out.sort(key=lambda r: (ORDER[r["sla"]], r["due_at"] or r["source_at"], r["subject_key"]))
    return out


def oldest(requests: Iterable[Mapping[str, Any]], status: str) -> Mapping[str, Any] | None:
    """The request with that deadline status whose clock started first."""
    rows = [r for r in requests if r["sla"] == status]
    return min(rows, key=lambda r: r["source_at"]) if rows else None
