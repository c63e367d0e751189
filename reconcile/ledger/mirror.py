"""The Ketch mirror's translations (pure): Forwarder messages and Ketch API records into
mirror observations, entries back into records, the rolling audit slice, and what an audit
compares. The merge rule itself is models/mirror.py; the table is store/mirror.py.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Mapping

from reconcile.clients.ketch_parse import (
    ConsentState, KetchRecord, SubscriptionState, parse_consent, parse_subscriptions,
)
from reconcile.errors import DataError
from reconcile.ledger import messages as m
from reconcile.models.mirror import CONTROL, PURPOSE, TOPIC, Change, Choice, FieldKey, MirrorEntry, Snapshot

AUDIT_KEY = b"reconcile-mirror"


def _status(allowed: bool) -> str:
    return "granted" if allowed else "denied"


def _consent_choices(consent: ConsentState | None, as_of: datetime) -> dict[FieldKey, Choice]:
    if consent is None:
        return {}
    return {(PURPOSE, code, ""): Choice(_status(allowed), as_of, consent.collected_at)
            for code, allowed in consent.purposes.items()}


def _subscription_choices(subs: SubscriptionState | None, as_of: datetime) -> dict[FieldKey, Choice]:
    if subs is None:
        return {}
    out = {(TOPIC, topic, channel or ""): Choice(status, as_of, subs.collected_at)
           for (topic, channel), status in subs.topics.items()}
    out.update({(CONTROL, code, ""): Choice(status, as_of, subs.collected_at)
                for code, status in subs.controls.items()})
    return out


def message_change(msg: m.Message) -> Change | None:
    """What a ConsentRequest, SubscriptionTopicRequest or SubscriptionControlRequest says of
    its subject, each field as of the message's own time; None for other kinds, or a message
    whose state does not parse the way the Ketch API's answers do (the run reads that
    subject from Ketch as usual)."""
    at = msg.changed_at()
    if msg.kind not in m.CHANGE_KINDS or at is None:
        return None
    r = msg.request
    try:
        if msg.kind == m.CONSENT:
            consent = parse_consent({"purposes": r.get("purposes")}, "ConsentRequest")
            choices = _consent_choices(consent and ConsentState(consent.purposes, at), at)
        else:
            if msg.kind == m.TOPICS:
                body = {"topics": _per_channel(r.get("topics"))}
            else:
                body = {"controls": r.get("controls")}
            subs = parse_subscriptions(body, msg.kind)
            choices = _subscription_choices(subs and SubscriptionState(subs.topics, subs.controls, at), at)
    except DataError:
        return None
    return Change(choices) if choices else None


def _per_channel(topics: object) -> object:
    """Topics in the Forwarder spec's `{topic: {status, contactMethods}}` shape as the Web
    API's `{topic: {channel: {status}}}`, one entry per contact method, so a message names
    the same fields a Ketch read does; other shapes are left as they are."""
    if not isinstance(topics, dict):
        return topics
    out: dict[str, object] = {}
    for code, item in topics.items():
        methods = item.get("contactMethods") if isinstance(item, dict) else None
        if isinstance(methods, list) and methods and all(isinstance(c, str) and c for c in methods) \
                and "status" in item:
            out[code] = {channel: {"status": item["status"]} for channel in methods}
        else:
            out[code] = item
    return out


def snapshot(record: KetchRecord | None, read_at: datetime) -> Snapshot:
    """A Ketch API read (no record: every field absent) as of when it was made."""
    if record is None:
        return Snapshot({}, read_at)
    return Snapshot({**_consent_choices(record.consent, read_at),
                     **_subscription_choices(record.subscriptions, read_at)}, read_at)


def record_of(identity: str, entry: MirrorEntry) -> KetchRecord:
    """The KetchRecord an API read would give for an entry: each part's time is the latest
    Ketch time among its fields (None, a default, when none has one)."""
    purposes: dict[str, bool] = {}
    topics: dict[tuple[str, str | None], str] = {}
    controls: dict[str, str] = {}
    consent_at: list[datetime] = []
    subs_at: list[datetime] = []
    for (kind, code, channel), c in _one_topic_level(entry).items():
        if kind == PURPOSE:
            purposes[code] = c.status == "granted"
            consent_at += [c.changed_at] if c.changed_at is not None else []
            continue
        if kind == TOPIC:
            topics[(code, channel or None)] = c.status
        else:
            controls[code] = c.status
        subs_at += [c.changed_at] if c.changed_at is not None else []
    consent = ConsentState(purposes, max(consent_at, default=None)) if purposes else None
    subs = SubscriptionState(topics, controls, max(subs_at, default=None)) if topics or controls else None
    return KetchRecord(identity, consent, subs)


def _one_topic_level(entry: MirrorEntry) -> Mapping[FieldKey, Choice]:
    """The choices with each topic at one level: where a topic is known both without a
    channel (an API answer without the channel level) and per channel (a message), the
    level seen last is kept."""
    levels: dict[str, dict[bool, datetime]] = {}
    for (kind, code, channel), c in entry.choices.items():
        if kind == TOPIC:
            seen = levels.setdefault(code, {})
            seen[bool(channel)] = max(c.as_of, seen.get(bool(channel), c.as_of))
    mixed = {code: seen[True] >= seen[False] for code, seen in levels.items() if len(seen) == 2}
    if not mixed:
        return entry.choices
    return {key: c for key, c in entry.choices.items()
            if not (key[0] == TOPIC and key[1] in mixed and bool(key[2]) != mixed[key[1]])}


def audited(key: str, day: date, fraction: float) -> bool:
    """Whether a subject is in `day`'s audit slice: a window of `fraction` of the hash
    circle moving by `fraction` a day, so each subject is audited once every 1/fraction days."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=AUDIT_KEY).digest()
    position = int.from_bytes(digest, "big") / 2.0 ** 64
    return (position - day.toordinal() * fraction) % 1.0 < fraction


def disagreement(entry: MirrorEntry, read: Snapshot, email_purpose: str | None) -> list[str]:
    """The fields where a trusted entry and a fresh Ketch read disagree on a status, as
    `kind code[/channel]: mirror -> ketch` (empty: they agree). Purposes the read does not
    name are compared only for `email_purpose` (a consent read may answer only the purposes
    it asked about); a field the mirror learned after the read is not a disagreement."""
    out = []
    keys = set(entry.choices) | set(read.choices)
    for key in sorted(keys):
        kind, code, channel = key
        mine, theirs = entry.choices.get(key), read.choices.get(key)
        if kind == PURPOSE and theirs is None and code != email_purpose:
            continue
        if mine is not None and mine.as_of > read.read_at:
            continue
        a, b = (mine.status if mine else "none"), (theirs.status if theirs else "none")
        if a != b:
            out.append(f"{kind} {code}{'/' + channel if channel else ''}: {a} -> {b}")
    return out


def shown(problems: Mapping[str, list[str]], limit: int = 5) -> str:
    """A few disagreements for a log line (subject keys are not shown)."""
    fields = [p for items in problems.values() for p in items]
    return "; ".join(fields[:limit]) + (f"; and {len(fields) - limit} more" if len(fields) > limit else "")
