"""Plan and action models: what a run intends to change, as frozen values with a JSON form.

A `DriftKey` names one drift item (subject, class, field, group). An `Action` is one
batch the executor sends: a kind, the `Target`s it addresses (one identifier of one
subject each: a subject with three Braze profiles sharing its address has three targets
for a global opt-out), and the drift keys it corrects. A `Plan` is the ordered actions
plus the drift table they came from. JSON round-trips exactly (`to_json` / `from_json`);
`from_json` refuses malformed input with a `DataError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconcile.errors import DataError


class ActionKind(StrEnum):
    """A correction, in the order phases run: stop unwanted mail first, then suppress,
    then erase, then report back and create, then (only when asked) resubscribe."""

    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GLOBAL_UNSUBSCRIBE = "global_unsubscribe"
    BLOCKLIST = "blocklist"
    DELETE = "delete"
    KETCH_WRITEBACK = "ketch_writeback"
    ALIAS_OPTOUT = "alias_optout"
    GROUP_SUBSCRIBE = "group_subscribe"
    GLOBAL_SUBSCRIBE = "global_subscribe"

    @property
    def phase(self) -> int:
        return _PHASE[self]

    @property
    def unsubscribes(self) -> bool:
        return self in (ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GLOBAL_UNSUBSCRIBE)

    @property
    def subscribes(self) -> bool:
        return self in (ActionKind.GROUP_SUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE)


_PHASE = {ActionKind.GROUP_UNSUBSCRIBE: 0, ActionKind.GLOBAL_UNSUBSCRIBE: 0, ActionKind.BLOCKLIST: 1,
          ActionKind.DELETE: 2, ActionKind.KETCH_WRITEBACK: 3, ActionKind.ALIAS_OPTOUT: 4,
          ActionKind.GROUP_SUBSCRIBE: 5, ActionKind.GLOBAL_SUBSCRIBE: 5}


class PlanStatus(StrEnum):
    """A saved plan's status (a CHECK constraint in the store enforces the same set)."""

    PLANNED = "planned"
    APPLYING = "applying"
    APPLIED = "applied"
    STALE = "stale"
    REFUSED = "refused"


class ActionStatus(StrEnum):
    """A journaled batch's status."""

    PENDING = "pending"
    SENDING = "sending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REJECTED = "rejected"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """Never sent again."""
        return self in (ActionStatus.CONFIRMED, ActionStatus.REJECTED, ActionStatus.SKIPPED)


class IdType(StrEnum):
    """Which identifier a target sends."""

    EMAIL = "email"
    EXTERNAL_ID = "external_id"
    BRAZE_ID = "braze_id"
    PHONE = "phone"  # E.164; SMS groups
    KETCH = "ketch"  # the subject's identity in the configured Ketch identity space


class Field(StrEnum):
    """The Braze field a drift item concerns (groups carry their id in `DriftKey.group_id`)."""

    EMAIL_SUBSCRIBE = "email_subscribe"
    GROUP = "group"
    PROFILE = "profile"
    BLOCKLIST = "blocklist"
    CONSENT = "consent"


@dataclass(frozen=True, order=True)
class DriftKey:
    subject_key: str
    drift_class: str
    field: Field
    group_id: str | None = None

    @property
    def stored_field(self) -> str:
        """The field as the state store keys it: one text per (field, group)."""
        return f"{self.field.value}:{self.group_id}" if self.field is Field.GROUP else self.field.value

    @classmethod
    def from_stored(cls, subject_key: str, drift_class: str, stored: str) -> "DriftKey":
        name, _, group = stored.partition(":")
        try:
            f = Field(name)
        except ValueError:
            raise DataError(f"drift field {stored!r} is not one of {', '.join(x.value for x in Field)}") from None
        if (f is Field.GROUP) != bool(group):
            raise DataError(f"drift field {stored!r}: a group field names its group id, no other field does")
        return cls(subject_key, drift_class, f, group or None)

    def to_json(self) -> list[Any]:
        return [self.subject_key, self.drift_class, self.field.value, self.group_id]

    @classmethod
    def from_json(cls, value: Any) -> "DriftKey":
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, str) for v in value[:3])
                and (value[3] is None or isinstance(value[3], str))):
            raise DataError(f"drift key {value!r}: expected [subject_key, drift_class, field, group_id|null]")
        try:
            f = Field(value[2])
        except ValueError:
            raise DataError(f"drift key {value!r}: unknown field {value[2]!r}") from None
        return cls(value[0], value[1], f, value[3])


@dataclass(frozen=True)
class Target:
    """One identifier of one subject, as sent to an API."""

    subject_key: str
    id_type: IdType
    value: str

    def to_json(self) -> list[str]:
        return [self.subject_key, self.id_type.value, self.value]

    @classmethod
    def from_json(cls, value: Any) -> "Target":
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) and v for v in value)):
            raise DataError(f"target {value!r}: expected [subject_key, id_type, value]")
        try:
            return cls(value[0], IdType(value[1]), value[2])
        except ValueError:
            raise DataError(f"target {value!r}: unknown id type {value[1]!r}") from None


@dataclass(frozen=True)
class WriteBack:
    """What one subject's Ketch write-back sends: the groups and global field Braze
    opted out of, and the newest Braze opt-out time (becomes Ketch's collectedAt)."""

    subject_key: str
    group_ids: tuple[str, ...]
    email_subscribe: bool
    at: str  # ISO 8601
    phone: str | None = None  # E.164, for an SMS opt-out: sent in the Ketch phone identity space too

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject_key": self.subject_key, "group_ids": list(self.group_ids),
                               "email_subscribe": self.email_subscribe, "at": self.at}
        if self.phone:
            out["phone"] = self.phone
        return out

    @classmethod
    def from_json(cls, value: Any) -> "WriteBack":
        try:
            phone = value.get("phone")
            return cls(str(value["subject_key"]), tuple(str(g) for g in value["group_ids"]),
                       bool(value["email_subscribe"]), str(value["at"]), str(phone) if phone else None)
        except (KeyError, TypeError):
            raise DataError(f"write-back entry {value!r}: "
                            "expected subject_key, group_ids, email_subscribe, at") from None


@dataclass(frozen=True)
class Action:
    """One batch: a request to Braze (or one Ketch write-back batch)."""

    action_id: str
    plan_id: str
    seq: int
    kind: ActionKind
    targets: tuple[Target, ...]
    drift_keys: tuple[DriftKey, ...]
    endpoint: str
    group_id: str | None = None
    prioritization: tuple[str, ...] = ()
    writeback: tuple[WriteBack, ...] = ()

    @property
    def subject_keys(self) -> list[str]:
        return list(dict.fromkeys(t.subject_key for t in self.targets))

    @property
    def id_type(self) -> IdType:
        return self.targets[0].id_type

    @property
    def values(self) -> list[str]:
        return [t.value for t in self.targets]

    def content_hash(self) -> str:
        """A hash of what the action sends and corrects (not of its id or position)."""
        body = {k: v for k, v in self.to_json().items() if k not in ("action_id", "plan_id", "seq")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "plan_id": self.plan_id, "seq": self.seq, "kind": self.kind.value,
                "endpoint": self.endpoint, "group_id": self.group_id, "prioritization": list(self.prioritization),
                "targets": [t.to_json() for t in self.targets], "drift_keys": [k.to_json() for k in self.drift_keys],
                "writeback": [w.to_json() for w in self.writeback]}

    @classmethod
    def from_json(cls, value: Any, index: int = 0) -> "Action":
        if not isinstance(value, dict):
            raise DataError(f"plan action {index}: expected an object")
        missing = [k for k in ("action_id", "plan_id", "seq", "kind", "endpoint", "targets", "drift_keys")
                   if k not in value]
        if missing:
            raise DataError(f"plan action {index} lacks {', '.join(missing)}; write the plan again with "
                            "`reconcile plan --out`")
        try:
            kind = ActionKind(value["kind"])
        except ValueError:
            raise DataError(f"plan action {index}: unknown kind {value['kind']!r}") from None
        targets = tuple(Target.from_json(t) for t in value["targets"] or [])
        keys = tuple(DriftKey.from_json(k) for k in value["drift_keys"] or [])
        if not targets or not keys:
            raise DataError(f"plan action {index} ({kind}) has no targets or no drift keys; every correction "
                            "must come from detected drift")
        return cls(str(value["action_id"]), str(value["plan_id"]), int(value["seq"]), kind, targets, keys,
                   str(value["endpoint"]), value.get("group_id"), tuple(value.get("prioritization") or ()),
                   tuple(WriteBack.from_json(w) for w in value.get("writeback") or ()))


@dataclass(frozen=True)
class Plan:
    plan_id: str
    fingerprint: str
    actions: tuple[Action, ...] = field(default_factory=tuple)

    @property
    def deletion_subjects(self) -> set[str]:
        return {s for a in self.actions if a.kind is ActionKind.DELETE for s in a.subject_keys}

    @property
    def unsubscribe_subjects(self) -> set[str]:
        return {s for a in self.actions if a.kind.unsubscribes for s in a.subject_keys}

    @property
    def subscribe_subjects(self) -> set[str]:
        return {s for a in self.actions if a.kind.subscribes for s in a.subject_keys}

    def actions_hash(self) -> str:
        """A hash of every action's full content, in order: a plan file must match it."""
        h = hashlib.sha256()
        for a in self.actions:
            h.update(json.dumps(a.to_json(), sort_keys=True).encode())
        return h.hexdigest()

    def only(self, kinds: set[ActionKind]) -> "Plan":
        return Plan(self.plan_id, self.fingerprint, tuple(a for a in self.actions if a.kind in kinds))
