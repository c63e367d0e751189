"""The Braze workspace the simulator serves: profiles, address lists and their persistence.

Braze keeps consent in two places. Each *profile* has a global `email_subscribe`
(`opted_in | subscribed | unsubscribed`) and a state per subscription group
(`subscribed | unsubscribed`, only for groups it ever changed). Each *address* has
workspace-level facts: the latest global unsubscribe (`/email/unsubscribes`), a hard
bounce (`/email/hard_bounces`) and blocklisting. Several profiles may share an email;
addresses are matched case-insensitively and stored as first given.

`BrazeState.to_dict()` / `from_dict()` round-trip exactly (JSON-safe).
"""

from __future__ import annotations

import bisect
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

EMAIL_STATES = ("opted_in", "subscribed", "unsubscribed")
GROUP_STATES = ("subscribed", "unsubscribed")
UNSUBSCRIBE_LISTS = ("while_any", "current_only")  # readings of when an address leaves /email/unsubscribes
STANDARD_FIELDS = ("first_name", "last_name", "gender", "dob", "country", "home_city", "language",
                   "time_zone", "attributed_campaign", "attributed_source", "attributed_adgroup",
                   "attributed_ad")
TRACK_KEYS = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only", "email", "phone",
                        "email_subscribe", "push_subscribe", "subscription_groups"})
Timestamp = float | int | str | datetime


EMAIL_MATCHES = ("lower", "casefold")


def norm(email: str, match: str = "lower") -> str:
    """The key an address is matched by: trimmed and, by `match`, "lower" (Unicode
    lower-casing: the Kelvin sign meets ``k``), or "casefold" (NFKC and Unicode case folding:
    ``ſ`` meets ``s``, ``ß`` meets ``ss``, fullwidth letters meet ASCII), the least convenient
    reading of Braze's undocumented comparison, under which a look-up by a look-alike
    address answers with another person's profile."""
    if match == "casefold":
        return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email.strip()).casefold())
    return email.strip().lower()


def to_epoch(value: Timestamp) -> float:
    """Epoch seconds from a number, an ISO-8601 string (naive = UTC) or a datetime."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def iso_utc(value: Timestamp) -> str:
    """ISO-8601 UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`."""
    moment = datetime.fromtimestamp(to_epoch(value), timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def export_time(ts: float) -> str:
    """The `created_at` style of `/users/export/ids`: `2020-07-10 15:00:00.000 UTC`."""
    return iso_utc(ts).replace("T", " ").replace("Z", " UTC")


@dataclass
class Profile:
    """One Braze user profile."""

    braze_id: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    email_subscribe: str = "subscribed"
    push_subscribe: str = "subscribed"
    groups: dict[str, str] = field(default_factory=dict)
    user_aliases: list[dict[str, str]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    custom_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    total_revenue: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    update_seq: int = 0

    def recency(self) -> tuple[float, int]:
        """Sort key for "most recently updated"."""
        return (self.updated_at, self.update_seq)

    def has_alias(self, name: str, label: str) -> bool:
        return any(a.get("alias_name") == name and a.get("alias_label") == label for a in self.user_aliases)


class AddressTable(dict[str, dict[str, str]]):
    """An address list (norm -> row) that keeps a sorted view of its rows for paging.

    The view, rows ordered by (time stamp, address), is rebuilt on the first read after a
    change; a page is then found by bisecting the times: O(log N + page) per request."""

    match = "lower"  # how addresses compare (`norm`); the workspace sets its own

    def __init__(self, stamp: str, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stamp = stamp
        self._version = 0
        self._view: tuple[int, list[dict[str, str]], list[float] | None] | None = None

    def _changed(self) -> None:
        self._version += 1

    def __setitem__(self, key: str, value: dict[str, str]) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._changed()
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._changed()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, dict[str, str]]:
        self._changed()
        return super().popitem()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def sorted_rows(self) -> tuple[list[dict[str, str]], list[float] | None]:
        """Rows by (stamp, address) ascending, and their epoch times when those ascend too
        (None when some stamp is written so that text order is not time order)."""
        if self._view is None or self._view[0] != self._version:
            rows = sorted(self.values(), key=lambda r: (r[self.stamp], norm(r["email"], self.match)))
            times = [to_epoch(r[self.stamp]) for r in rows]
            ordered = all(a <= b for a, b in zip(times, times[1:]))
            self._view = (self._version, rows, times if ordered else None)
        return self._view[1], self._view[2]


class _Index:
    """Profiles by address, by external_id and by phone, in the profile table's order."""

    def __init__(self, profiles: Iterable[Profile], key: Callable[[str], str]):
        self.key = key
        self.emails: dict[str, list[Profile]] = {}
        self.xids: dict[str, list[Profile]] = {}
        self.phones: dict[str, list[Profile]] = {}
        self.rank: dict[str, int] = {}
        self._added = 0
        for p in profiles:
            self.add(p)

    def add(self, p: Profile) -> None:
        """A profile appended to the table."""
        self.rank[p.braze_id] = self._added
        self._added += 1
        if p.email is not None:
            self.emails.setdefault(self.key(p.email), []).append(p)
        if p.external_id is not None:
            self.xids.setdefault(p.external_id, []).append(p)
        if p.phone is not None:
            self.phones.setdefault(p.phone, []).append(p)

    def remove(self, p: Profile) -> None:
        self.rank.pop(p.braze_id, None)
        for table, key in ((self.emails, None if p.email is None else self.key(p.email)), (self.xids, p.external_id),
                           (self.phones, p.phone)):
            if key is not None:
                self._drop(table, key, p)

    def move_email(self, p: Profile, old: str | None) -> None:
        """`p` changed address from `old`: out of the old list, into the new one in table order."""
        self._move(self.emails, None if old is None else self.key(old),
                   None if p.email is None else self.key(p.email), p)

    def move_phone(self, p: Profile, old: str | None) -> None:
        """`p` changed number from `old`."""
        self._move(self.phones, old, p.phone, p)

    def _move(self, table: dict[str, list[Profile]], old: str | None, new: str | None, p: Profile) -> None:
        if old is not None:
            self._drop(table, old, p)
        if new is not None:
            holders = table.setdefault(new, [])
            ranks = [self.rank[h.braze_id] for h in holders]
            holders.insert(bisect.bisect(ranks, self.rank[p.braze_id]), p)

    @staticmethod
    def _drop(table: dict[str, list[Profile]], key: str, p: Profile) -> None:
        holders = table.get(key)
        if holders is None:
            return
        remaining = [h for h in holders if h is not p]
        if remaining:
            table[key] = remaining
        else:
            del table[key]


class BrazeState:
    """The workspace's data and the rules that change it."""

    def __init__(self, clock: Callable[[], float], seed: int = 0, unsubscribe_list: str = "while_any",
                 email_match: str = "lower"):
        if email_match not in EMAIL_MATCHES:
            raise ValueError(f"email_match must be one of {', '.join(EMAIL_MATCHES)}, got {email_match!r}")
        self.email_match = email_match
        if unsubscribe_list not in UNSUBSCRIBE_LISTS:
            raise ValueError(f"unsubscribe_list must be one of {', '.join(UNSUBSCRIBE_LISTS)}, "
                             f"got {unsubscribe_list!r}")
        self.clock = clock
        self.unsubscribe_list = unsubscribe_list
        self.profiles: dict[str, Profile] = {}
        self.groups: dict[str, dict[str, str | None]] = {}
        self.unsubscribes = self.address_table("unsubscribed_at")  # norm -> {email, unsubscribed_at}
        self.hard_bounces = self.address_table("hard_bounced_at")  # norm -> {email, hard_bounced_at}
        self.blocklist: dict[str, str] = {}  # norm -> email
        self.address_states: dict[str, dict[str, str]] = {}  # norm -> {email, state}, no profile yet
        self.pending_deletions: list[dict[str, Any]] = []  # {braze_id, due_at}
        self.id_prefix = f"{(0x5fbd99ba + seed) & 0xFFFFFFFF:08x}"
        self.next_id = 1
        self.seq = 0
        self.identity_version = 0  # bumped whenever an email or external_id changes

    def norm(self, email: str) -> str:
        """The key this workspace matches `email` by."""
        return norm(email, self.email_match)

    def address_table(self, stamp: str, rows: dict[str, dict[str, str]] | None = None) -> AddressTable:
        table = AddressTable(stamp, rows or {})
        table.match = self.email_match
        return table

    # -- lookups ------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int, int]:
        return (self.identity_version, len(self.profiles), self.next_id)

    def _indexes(self) -> _Index:
        """Email and external_id indexes. Creating, deleting and re-addressing a profile
        update them in place; any other change (it bumps `identity_version` or the profile
        table) rebuilds them on the next lookup, so lookups stay O(1) for large workspaces."""
        if getattr(self, "_index_stamp", None) != self._stamp():
            self._index_cache, self._index_stamp = _Index(self.profiles.values(), self.norm), self._stamp()
        return self._index_cache

    def _current_index(self) -> _Index | None:
        """The index when it is up to date with everything but the change being made."""
        index = getattr(self, "_index_cache", None)
        return index if index is not None and getattr(self, "_index_stamp", None) == self._stamp() else None

    def by_email(self, email: str) -> list[Profile]:
        return list(self._indexes().emails.get(self.norm(email), []))

    def by_external_id(self, xid: str) -> Profile | None:
        holders = self._indexes().xids.get(xid)
        return holders[0] if holders else None

    def by_phone(self, phone: str) -> list[Profile]:
        return list(self._indexes().phones.get(phone, []))

    def place_phone(self, profile: Profile, phone: str | None) -> None:
        """Set a profile's number as it is (no state rules), keeping the phone index."""
        index, old = self._current_index(), profile.phone
        profile.phone = phone
        if index is not None and profile.braze_id in index.rank:
            index.move_phone(profile, old)
            self._index_stamp = self._stamp()

    def by_alias(self, name: str, label: str) -> Profile | None:
        return next((p for p in self.profiles.values() if p.has_alias(name, label)), None)

    def lookup(self, kind: str, value: str) -> list[Profile]:
        """Profiles matched by one identifier: external_id, braze_id, email(_address), phone.
        Profiles carry no devices, so device_id never matches."""
        if kind == "external_id":
            hit = self.by_external_id(value)
            return [hit] if hit else []
        if kind == "braze_id":
            return [self.profiles[value]] if value in self.profiles else []
        if kind in ("email", "email_address"):
            return self.by_email(value)
        return self.by_phone(value) if kind == "phone" else []

    @staticmethod
    def preferred(profiles: Iterable[Profile]) -> Profile | None:
        """Track's pick among profiles sharing an email or phone: the most recently updated
        one with an external_id, else the most recently updated."""
        pool = list(profiles)
        identified = [p for p in pool if p.external_id is not None]
        return max(identified or pool, key=Profile.recency, default=None)

    # -- profile life cycle ---------------------------------------------------------------
    def new_profile(self, *, external_id: str | None = None, created_at: float | None = None) -> Profile:
        now = self.clock()
        braze_id = f"{self.id_prefix}{self.next_id:016x}"
        index = self._current_index() if braze_id not in self.profiles else None
        self.next_id += 1
        profile = Profile(braze_id, external_id=external_id, created_at=now if created_at is None else created_at)
        self.profiles[braze_id] = profile
        if index is not None:
            index.add(profile)
            self._index_stamp = self._stamp()
        self.touch(profile, created_at)
        return profile

    def touch(self, profile: Profile, at: float | None = None) -> None:
        self.seq += 1
        profile.updated_at = self.clock() if at is None else at
        profile.update_seq = self.seq

    def attach_email(self, profile: Profile, email: str | None) -> None:
        index, old = self._current_index(), profile.email
        self._attach_email(profile, email)
        self.identity_version += 1
        if index is not None and profile.braze_id in index.rank:
            index.move_email(profile, old)
            self._index_stamp = self._stamp()

    def place_email(self, profile: Profile, email: str | None) -> None:
        """Set a profile's address as it already is in the workspace (no state rules)."""
        index, old = self._current_index(), profile.email
        profile.email = email
        self.identity_version += 1
        if index is not None and profile.braze_id in index.rank:
            index.move_email(profile, old)
            self._index_stamp = self._stamp()

    def _attach_email(self, profile: Profile, email: str | None) -> None:
        """Set a profile's address. A new address takes the state already known for it in
        the workspace (set by `/email/status` or held by another profile), else `subscribed`."""
        if email is None:
            profile.email = None
            return
        if profile.email is not None and self.norm(profile.email) == self.norm(email):
            profile.email = email
            return
        others = self.by_email(email)
        pending = self.address_states.pop(self.norm(email), None)
        profile.email = email
        if pending is not None:
            profile.email_subscribe = pending["state"]
        elif others:
            profile.email_subscribe = max(others, key=Profile.recency).email_subscribe
        elif self.norm(email) in self.unsubscribes or self.norm(email) in self.blocklist:
            profile.email_subscribe = "unsubscribed"
        else:
            profile.email_subscribe = "subscribed"

    def set_email_subscribe(self, profile: Profile, state: str) -> None:
        """Change global state; the address's unsubscribe event follows."""
        profile.email_subscribe = state
        self.touch(profile)
        if profile.email is not None:
            self._sync_unsubscribe(profile.email, state)

    def set_address_state(self, email: str, state: str) -> None:
        """`/email/status`: every profile with the address, or remembered until one appears."""
        profiles = self.by_email(email)
        for profile in profiles:
            profile.email_subscribe = state
            self.touch(profile)
        if not profiles:
            self.address_states[self.norm(email)] = {"email": email, "state": state}
        self._sync_unsubscribe(email, state)

    def _sync_unsubscribe(self, email: str, state: str) -> None:
        """The address's place on `/email/unsubscribes` after one of its profiles changed.
        `unsubscribe_list`: "while_any" keeps it while any profile is unsubscribed;
        "current_only" takes it off once any profile re-subscribes."""
        key = self.norm(email)
        if state == "unsubscribed":
            self.unsubscribes.setdefault(key, {"email": email, "unsubscribed_at": iso_utc(self.clock())})
            return
        still_out = any(p.email_subscribe == "unsubscribed" for p in self.by_email(email))
        if not still_out or self.unsubscribe_list == "current_only":
            self.unsubscribes.pop(key, None)

    def set_group(self, profile: Profile, group_id: str, state: str) -> None:
        """A group state; an SMS group's state belongs to the number: every profile holding
        the profile's phone takes it."""
        holders = self.by_phone(profile.phone) if profile.phone and self.is_sms(group_id) else []
        for target in holders or [profile]:
            target.groups[group_id] = state
            self.touch(target)

    def is_sms(self, group_id: str) -> bool:
        return (self.groups.get(group_id) or {}).get("channel") == "sms"

    def set_phone(self, profile: Profile, phone: str | None) -> None:
        """A profile's number changes. Braze: the new number inherits the profile's SMS group
        states, unless the number already exists in the workspace, whose states it then takes."""
        if phone == profile.phone:
            return
        others = [p for p in self.by_phone(phone) if p is not profile] if phone else []
        self.place_phone(profile, phone)
        if others:
            source = max(others, key=Profile.recency)
            for gid in [g for g in profile.groups if self.is_sms(g)]:
                del profile.groups[gid]
            profile.groups.update({g: st for g, st in source.groups.items() if self.is_sms(g)})

    def sms_stop(self, phone: str, group_ids: Iterable[str] | None = None) -> int:
        """A STOP reply from `phone`: its SMS groups (all, or the given ones) unsubscribed on
        every profile holding the number. Braze records no time for it anywhere."""
        holders = self.by_phone(phone)
        groups = list(group_ids) if group_ids is not None else [g for g in self.groups if self.is_sms(g)]
        for profile in holders:
            for gid in groups:
                profile.groups[gid] = "unsubscribed"
            self.touch(profile)
        return len(holders)

    def block(self, email: str) -> None:
        """`/email/blocklist`: unsubscribe the address everywhere and mark it hard bounced."""
        self.set_address_state(email, "unsubscribed")
        self.blocklist.setdefault(self.norm(email), email)
        self.hard_bounces.setdefault(self.norm(email), {"email": email, "hard_bounced_at": iso_utc(self.clock())})

    # -- /users/track --------------------------------------------------------------------
    def resolve(self, obj: dict[str, Any]) -> Profile | None:
        """The profile a valid track object addresses, created when Braze would create it.

        One primary id (`external_id`, `user_alias`, `braze_id`) decides; without one, the
        email (else phone) is looked up. `_update_existing_only` defaults to false, except
        for `user_alias` where it defaults to true; `braze_id` never creates a profile."""
        update_only = obj.get("_update_existing_only")
        if obj.get("external_id") is not None:
            found = self.by_external_id(obj["external_id"])
            return found or (None if update_only is True else self.new_profile(external_id=obj["external_id"]))
        if obj.get("user_alias") is not None:
            alias = {"alias_name": obj["user_alias"]["alias_name"], "alias_label": obj["user_alias"]["alias_label"]}
            found = self.by_alias(alias["alias_name"], alias["alias_label"])
            if found is not None or update_only is not False:
                return found
            created = self.new_profile()
            created.user_aliases.append(alias)
            return created
        if obj.get("braze_id") is not None:
            return self.profiles.get(obj["braze_id"])
        return self._resolve_contact(obj, update_only is True)

    def _resolve_contact(self, obj: dict[str, Any], update_only: bool) -> Profile | None:
        email = obj.get("email")
        found = self.preferred(self.by_email(email) if email else self.by_phone(obj["phone"]))
        if found is not None or update_only:
            return found
        created = self.new_profile()
        if email:
            self.attach_email(created, email)
        else:
            self.place_phone(created, obj["phone"])
        return created

    def apply_attributes(self, profile: Profile, obj: dict[str, Any]) -> None:
        """Write an attributes object. Group changes reach every profile sharing the email."""
        if "email" in obj:
            self.attach_email(profile, obj["email"])
        if "phone" in obj:
            self.set_phone(profile, obj["phone"])
        for key, value in obj.items():
            if key in TRACK_KEYS:
                continue
            target = profile.attributes if key in STANDARD_FIELDS else profile.custom_attributes
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        if obj.get("push_subscribe") is not None:
            profile.push_subscribe = obj["push_subscribe"]
        self.touch(profile)
        if obj.get("email_subscribe") is not None:
            self.set_email_subscribe(profile, obj["email_subscribe"])
        for item in obj.get("subscription_groups") or []:
            for target_profile in self.sharing_email(profile):
                self.set_group(target_profile, item["subscription_group_id"], item["subscription_state"])

    def sharing_email(self, profile: Profile) -> list[Profile]:
        return self.by_email(profile.email) if profile.email is not None else [profile]

    def record_event(self, profile: Profile, name: str, at: str) -> None:
        """Count a custom event by name."""
        self._count(profile.custom_events, name, at)
        self.touch(profile)

    def record_purchase(self, profile: Profile, obj: dict[str, Any]) -> None:
        """Count a purchase by product id and add it to the revenue."""
        self._count(profile.purchases, obj["product_id"], str(obj["time"]))
        profile.total_revenue += float(obj["price"]) * int(obj.get("quantity", 1))
        self.touch(profile)

    @staticmethod
    def _count(table: dict[str, dict[str, Any]], name: str, at: str) -> None:
        entry = table.setdefault(name, {"count": 0, "first": at, "last": at})
        entry["count"] += 1
        entry["last"] = at

    # -- deletion -------------------------------------------------------------------------
    def queue_deletion(self, profile: Profile, delay: float) -> None:
        if not any(d["braze_id"] == profile.braze_id for d in self.pending_deletions):
            self.pending_deletions.append({"braze_id": profile.braze_id, "due_at": self.clock() + delay})

    def apply_deletions(self) -> None:
        """Remove queued profiles whose deletion is due."""
        if not self.pending_deletions:
            return
        now = self.clock()
        due = [d for d in self.pending_deletions if d["due_at"] <= now]
        if not due:
            return
        index = self._current_index()
        for item in due:
            profile = self.profiles.pop(item["braze_id"], None)
            self.identity_version += 1
            if index is not None and profile is not None:
                index.remove(profile)
        done = {id(d) for d in due}
        self.pending_deletions = [d for d in self.pending_deletions if id(d) not in done]
        if index is not None:
            self._index_stamp = self._stamp()

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "profiles": [asdict(p) for p in self.profiles.values()],
            "groups": {k: dict(v) for k, v in self.groups.items()},
            "unsubscribes": {k: dict(v) for k, v in self.unsubscribes.items()},
            "hard_bounces": {k: dict(v) for k, v in self.hard_bounces.items()},
            "blocklist": dict(self.blocklist),
            "address_states": {k: dict(v) for k, v in self.address_states.items()},
            "pending_deletions": [dict(d) for d in self.pending_deletions],
            "counters": {"id_prefix": self.id_prefix, "next_id": self.next_id, "seq": self.seq},
        }

    def load(self, data: dict[str, Any]) -> None:
        """Replace everything with `data` as produced by `to_dict()`."""
        self.profiles = {p["braze_id"]: Profile(**p) for p in data.get("profiles", [])}
        self.identity_version += 1
        self.groups = {k: dict(v) for k, v in data.get("groups", {}).items()}
        self.unsubscribes = self.address_table("unsubscribed_at",
                                               {k: dict(v) for k, v in data.get("unsubscribes", {}).items()})
        self.hard_bounces = self.address_table("hard_bounced_at",
                                               {k: dict(v) for k, v in data.get("hard_bounces", {}).items()})
        self.blocklist = dict(data.get("blocklist", {}))
        self.address_states = {k: dict(v) for k, v in data.get("address_states", {}).items()}
        self.pending_deletions = [dict(d) for d in data.get("pending_deletions", [])]
        counters = data.get("counters", {})
        self.id_prefix = counters.get("id_prefix", self.id_prefix)
        self.next_id = counters.get("next_id", self.next_id)
        self.seq = counters.get("seq", self.seq)
