"""The Ketch mirror's value objects and its merge rule (pure; the store keeps the entries).

An entry holds, per field of one subject's Ketch state (a consent purpose, a subscription
topic on a channel, a subscription control), the status last seen and when it was true:
`as_of`, the time of the observation that set it (a Forwarder message's `collectedAt` or
`submittedTimestamp`, or the time an API read was made), and `changed_at`, Ketch's own time
of the choice (None for a legal-basis default no one chose).

Two kinds of observation feed an entry:
* a `Change` (a Forwarder message): some fields, each as of the message's time;
* a `Snapshot` (a Ketch API read): every field as of the read, a field it does not name
  being absent at that time.

The merge keeps, per field, the observation with the greatest (as_of, status rank,
changed_at), absence ranking lowest and a denial above a grant, so an older observation
never overwrites a newer one and the result does not depend on the order observations
arrive in. An entry is trusted (`read_at` set) once a snapshot has filled it: a message
alone may carry only part of the subject's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping

PURPOSE, TOPIC, CONTROL = "purpose", "topic", "control"
FIELD_KINDS = (PURPOSE, TOPIC, CONTROL)
STATUSES = ("granted", "denied")
FieldKey = tuple[str, str, str]  # (kind, code, channel or "" when the topic has no channel level)
_RANK = {None: 0, "granted": 1, "denied": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Choice:
    status: str  # granted | denied
    as_of: datetime  # when it was observed true (message time, or API read time)
    changed_at: datetime | None = None  # Ketch's time of the choice; None: a default no one chose

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be granted or denied, got {self.status!r}")


@dataclass(frozen=True, slots=True)
class MirrorEntry:
    choices: Mapping[FieldKey, Choice] = field(default_factory=dict)
    read_at: datetime | None = None  # the latest Ketch API read that filled it (None: never: not trusted)

    @property
    def trusted(self) -> bool:
        return self.read_at is not None


@dataclass(frozen=True, slots=True)
class Change:
    """A Forwarder message's fields (each `Choice.as_of` the message's own time)."""

    choices: Mapping[FieldKey, Choice]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A Ketch API read: every field the subject has, as of `read_at` (each choice's as_of)."""

    choices: Mapping[FieldKey, Choice]
    read_at: datetime


def _order(choice: Choice | None, absent_at: datetime | None) -> tuple[datetime, int, datetime]:
    if choice is None:
        return (absent_at or _EPOCH, 0, _EPOCH)
    return (choice.as_of, _RANK[choice.status], choice.changed_at or _EPOCH)


def merge(entry: MirrorEntry | None, obs: Change | Snapshot) -> MirrorEntry:
    """The entry after one more observation (see the module docstring for the rule)."""
    entry = entry or MirrorEntry()
    read_at = entry.read_at
    out = dict(entry.choices)
    if isinstance(obs, Snapshot):
        keys = set(out) | set(obs.choices)
        for key in keys:
            mine, theirs = out.get(key), obs.choices.get(key)
            if theirs is not None:
                theirs = Choice(theirs.status, obs.read_at, theirs.changed_at)
            if _order(theirs, obs.read_at) > _order(mine, read_at):
                if theirs is None:
                    out.pop(key, None)
                else:
                    out[key] = theirs
        newest = obs.read_at if read_at is None else max(read_at, obs.read_at)
        return MirrorEntry(out, newest)
    for key, theirs in obs.choices.items():
        if _order(theirs, None) > _order(out.get(key), read_at):
            out[key] = theirs
    return MirrorEntry(out, read_at)


def values(entry: MirrorEntry) -> dict[FieldKey, str]:
    """The statuses alone (what a reconciliation reads), for comparing two entries."""
    return {key: c.status for key, c in entry.choices.items()}
