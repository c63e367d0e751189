"""A Braze REST API simulator: the endpoints the reconciliation job reads and writes.

Follows `docs/braze-api.md`: bearer auth with per-endpoint permissions, the documented
request limits and 400 messages, per-class rate limits with `X-RateLimit-*` headers,
capitalised `/subscription/status/get` values, `/users/track` identifier resolution with
per-object errors, asynchronous `/users/delete`, the address lists `/email/unsubscribes`
/ `/email/hard_bounces`, and asynchronous `/users/export/segment` whose file is served
outside the REST paths (`/_downloads/<prefix>.zip`, no Braze auth, S3-style 404 until
ready). The data model lives in `braze_state`, request checks, response shapes and every
error message in `braze_checks`.

The less convenient behaviours Braze may show are options: `track_object_limit=50` (the
MAU CY 24-25 contracts), `track_limit_wording="other"` (that limit refused with a 400 in
other words than "Max Input Length Exceeded", with an `errors` entry per object over it),
`user_status_shape="documented"` (the flat answer of `/subscription/user/status`),
`not_found_style="omit"`, `permissions="partner"` (the eight permissions of Braze's Ketch
partner page), `deletion_delay_seconds`, `alias_visibility_delay_seconds` (an alias made by
`/users/alias/new` is not seen by `/users/track` until then, which creates a second
profile for it), and for `/users/export/segment`: `segment_export_delay_seconds` (the file
appears late), `segment_export="bucket"` (no `url`: the files go to the customer's own
bucket), `"failed"` (the export never produces a file), `"busy"` (another integration's
export of the segment is running: every start is refused with 429, as one started while
this job's own export runs always is), `unsubscribe_list="current_only"` (an address
leaves `/email/unsubscribes` once any of its profiles re-subscribes; by default it stays
while any profile is unsubscribed). `braze_sim_options(cfg.sandbox)` maps the job config's
`[sandbox]` keys to these arguments.

    sim = BrazeSim(clock=fake_clock)
    sim.add_group("news")
    sim.add_profile(external_id="u1", email="a@x.com", groups={"news": "subscribed"})
    client = httpx.Client(transport=sim.transport(), base_url="http://braze.test",
                          headers={"Authorization": "Bearer sandbox-rest-key"})
"""

from __future__ import annotations

import bisect
import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

from reconcile.config import DEFAULT_RATE_LIMITS
from reconcile.sandbox.braze_checks import (
    BadRequest, ListQuery, Msg, alias_ok, body_of, community_user, emails_arg, export_fields, export_targets,
    export_user, group_change, id_limit, int_arg, known_group, pick_identifiers, prioritized, s3_error,
    segment_export_request, segment_zip, track_problem,
)
from reconcile.sandbox.braze_state import (
    EMAIL_STATES, GROUP_STATES, AddressTable, BrazeState, Profile, Timestamp, iso_utc, to_epoch,
)
from reconcile.sandbox.core import SimRequest, SimResponse, Simulator

RATE_LIMITED = "429 Rate Limited - Over rate limit"
PERMISSIONS = {
    "/users/export/ids": "users.export.ids",
    "/subscription/status/get": "subscription.status.get",
    "/subscription/user/status": "subscription.groups.get",
    "/subscription/status/set": "subscription.status.set",
    "/v2/subscription/status/set": "subscription.status.set",
    "/users/track": "users.track",
    "/users/delete": "users.delete",
    "/users/alias/new": "users.alias.new",
    "/email/unsubscribes": "email.unsubscribe",
    "/email/hard_bounces": "email.hard_bounces",
    "/email/status": "email.status",
    "/email/blocklist": "email.blacklist",
    "/email/blacklist": "email.blacklist",
    "/users/export/segment": "users.export.segment",
}
ALL_PERMISSIONS = frozenset(PERMISSIONS.values())
# The key Braze's Ketch partner page asks for (braze-partner-page-ketch.md).
PARTNER_PERMISSIONS = frozenset({
    "users.track", "subscription.status.get", "subscription.status.set", "users.delete", "users.alias.new",
    "users.export.ids", "email.unsubscribe", "email.blacklist",
})
PERMISSION_SETS = {"all": ALL_PERMISSIONS, "partner": PARTNER_PERMISSIONS}
USER_STATUS_SHAPES = {"users": "users", "community": "users", "documented": "documented"}
DOWNLOADS = "/_downloads/"
DELETE_KEYS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
TRACK_ARRAYS = ("attributes", "events", "purchases")
SLOW_EXPORT_FIELDS = frozenset({"campaigns_received", "canvases_received"})
Handler = Callable[[SimRequest], SimResponse]


TRACK_LIMIT_WORDINGS = ("documented", "other")
SEGMENT_EXPORT_MODES = ("url", "bucket", "failed", "busy")
# `/subscription/status/get` for a group the workspace does not have (undocumented): a 400
# naming the group, or every identifier answered "Unknown" as for a group it never held.
UNKNOWN_GROUP_READS = ("refused", "unknown")


def braze_sim_options(sandbox_cfg: Any) -> dict[str, Any]:
    """`BrazeSim` keyword arguments for a `SandboxConfig` (`braze_permissions`,
    `track_object_limit`, `track_limit_wording`, `user_status_shape`, `segment_export`,
    `segment_export_delay_seconds`, `alias_visibility_delay_seconds`)."""
    return {
        "permissions": set(permission_set(getattr(sandbox_cfg, "braze_permissions", "all"))),
        "track_object_limit": int(getattr(sandbox_cfg, "track_object_limit", 75)),
        "track_limit_wording": getattr(sandbox_cfg, "track_limit_wording", "documented"),
        "user_status_shape": getattr(sandbox_cfg, "user_status_shape", "users"),
        "segment_export": getattr(sandbox_cfg, "segment_export", "url"),
        "segment_export_delay_seconds": float(getattr(sandbox_cfg, "segment_export_delay_seconds", 0.0)),
        "alias_visibility_delay_seconds": float(getattr(sandbox_cfg, "alias_visibility_delay_seconds", 0.0)),
        "email_match": getattr(sandbox_cfg, "email_match", "lower"),
    }


def permission_set(name: str) -> frozenset[str]:
    """The permissions named "all" or "partner"."""
    if name not in PERMISSION_SETS:
        raise ValueError(f"braze permissions must be 'all' or 'partner', got {name!r}")
    return PERMISSION_SETS[name]


def rate_limits_with_defaults(overrides: dict[str, tuple[int, float]] | None) -> dict[str, tuple[int, float]]:
    """The documented per-class limits (requests, per seconds), with `overrides` applied."""
    unknown = sorted(set(overrides or {}) - set(DEFAULT_RATE_LIMITS))
    if unknown:
        raise ValueError(f"unknown rate-limit classes {unknown}; use {sorted(DEFAULT_RATE_LIMITS)}")
    limits = {name: (lim.requests, float(lim.per_seconds)) for name, lim in DEFAULT_RATE_LIMITS.items()}
    return {**limits, **(overrides or {})}


class BrazeSim(Simulator):
    """An in-memory Braze workspace behind the documented REST endpoints."""

    name = "braze"

    def __init__(self, *, api_key: str = "sandbox-rest-key", clock: Callable[[], float] = time.time, seed: int = 0,
                 deletion_delay_seconds: float = 0.0, rate_limits: dict[str, tuple[int, float]] | None = None,
                 track_object_limit: int = 75, require_fields_to_export: bool = True,
                 not_found_style: str = "unknown", user_status_shape: str = "users",
                 permissions: set[str] | frozenset[str] | str | None = None, segment_id: str = "all-users",
                 segment_export_delay_seconds: float = 0.0, segment_file_users: int = 5000,
                 track_limit_wording: str = "documented", segment_export: str = "url",
                 alias_visibility_delay_seconds: float = 0.0, unsubscribe_list: str = "while_any",
                 email_match: str = "lower", unknown_group_read: str = "refused"):
        super().__init__(clock=clock, seed=seed)
        if unknown_group_read not in UNKNOWN_GROUP_READS:
            raise ValueError(f"unknown_group_read must be 'refused' or 'unknown', got {unknown_group_read!r}")
        if track_limit_wording not in TRACK_LIMIT_WORDINGS:
            raise ValueError(f"track_limit_wording must be 'documented' or 'other', got {track_limit_wording!r}")
        if segment_export not in SEGMENT_EXPORT_MODES:
            raise ValueError(f"segment_export must be one of {', '.join(SEGMENT_EXPORT_MODES)}, got {segment_export!r}")
        if not_found_style not in ("unknown", "omit"):
            raise ValueError(f"not_found_style must be 'unknown' or 'omit', got {not_found_style!r}")
        if user_status_shape not in USER_STATUS_SHAPES:
            raise ValueError(f"user_status_shape must be 'users' or 'documented', got {user_status_shape!r}")
        if track_object_limit < 1 or segment_file_users < 1:
            raise ValueError("track_object_limit and segment_file_users must be at least 1")
        self.api_key = api_key
        self.deletion_delay_seconds = deletion_delay_seconds
        self.track_object_limit = track_object_limit
        self.require_fields_to_export = require_fields_to_export
        self.not_found_style = not_found_style
        self.unknown_group_read = unknown_group_read
        self.user_status_shape = USER_STATUS_SHAPES[user_status_shape]
        self.permissions = None if permissions is None else set(
            permission_set(permissions) if isinstance(permissions, str) else permissions)
        self.segment_id = segment_id
        self.segment_export_delay_seconds = segment_export_delay_seconds
        self.segment_file_users = segment_file_users
        self.track_limit_wording = track_limit_wording
        self.segment_export = segment_export
        self.alias_visibility_delay_seconds = alias_visibility_delay_seconds
        self.hidden_aliases: dict[tuple[str, str], float] = {}  # alias -> when /users/track sees it
        self.exports: dict[str, dict[str, Any]] = {}  # object_prefix -> {segment_id, ready_at, signature, content}
        self.db = BrazeState(clock, seed, unsubscribe_list, email_match)
        for name, (limit, seconds) in rate_limits_with_defaults(rate_limits).items():
            self.limiter.set_limit(name, limit, seconds)
        self._register_routes()

    def _register_routes(self) -> None:
        api = self._api
        self.route("POST", "/users/export/ids", self._export_route)
        self.route("GET", "/subscription/status/get", api(self._status_get), "shared")
        self.route("GET", "/subscription/user/status", api(self._user_status), "shared")
        self.route("POST", "/subscription/status/set", api(self._status_set), "subscription_set")
        self.route("POST", "/v2/subscription/status/set", api(self._status_set_v2), "subscription_set")
        self.route("POST", "/users/track", api(self._track), "users_track")
        self.route("POST", "/users/delete", api(self._delete), "users_identity")
        self.route("POST", "/users/alias/new", api(self._alias_new), "users_identity")
        self.route("GET", "/email/unsubscribes", api(self._unsubscribes), "shared")
        self.route("GET", "/email/hard_bounces", api(self._hard_bounces), "shared")
        self.route("POST", "/email/status", api(self._email_status), "shared")
        self.route("POST", "/email/blocklist", api(self._blocklist), "shared")
        self.route("POST", "/email/blacklist", api(self._blocklist), "shared")
        self.route("POST", "/users/export/segment", api(self._export_segment), "shared")
        self.route("GET", f"{DOWNLOADS}[^/]+", self._download)

    @staticmethod
    def _api(handler: Handler) -> Handler:
        """Turn a `BadRequest` raised by a handler into Braze's fatal error body."""

        def run(req: SimRequest) -> SimResponse:
            try:
                return handler(req)
            except BadRequest as exc:
                return SimResponse(exc.status, exc.body())

        return run

    # -- hooks ---------------------------------------------------------------------------
    def authorize(self, req: SimRequest) -> SimResponse | None:
        """401 unless `Authorization: Bearer <key>` (a quoted key is rejected); 403 when the
        key lacks the endpoint's permission. Downloads are pre-signed, not Braze-authorized."""
        if req.path.startswith(DOWNLOADS):
            return None
        scheme, _, token = req.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            return SimResponse(401, self.error_body(401, Msg.UNAUTHORIZED))
        if self.permissions is not None and PERMISSIONS.get(req.path) not in self.permissions:
            return SimResponse(403, self.error_body(403, Msg.ACCESS_DENIED))
        return None

    def tick(self) -> None:
        """Apply queued deletions that are due."""
        with self.lock:
            self.db.apply_deletions()

    def state(self) -> dict[str, Any]:
        return self.to_dict()

    # -- seeding and reading -------------------------------------------------------------
    def add_group(self, group_id: str, channel: str = "email", name: str | None = None) -> None:
        """Declare a subscription group so the API accepts its id."""
        with self.lock:
            self.db.groups[group_id] = {"channel": channel, "name": name}

    def add_profile(self, external_id: str | None = None, email: str | None = None,
                    email_subscribe: str = "subscribed", groups: dict[str, str] | None = None,
                    created_at: Timestamp | None = None, updated_at: Timestamp | None = None, *,
                    phone: str | None = None, user_aliases: list[dict[str, str]] | None = None) -> str:
        """Create a profile as it already exists in the workspace; returns its braze_id.
        Group ids in `groups` are declared as email groups when unknown."""
        if email_subscribe not in EMAIL_STATES or any(s not in GROUP_STATES for s in (groups or {}).values()):
            raise ValueError(f"bad state in email_subscribe={email_subscribe!r} groups={groups!r}")
        with self.lock:
            created = None if created_at is None else to_epoch(created_at)
            profile = self.db.new_profile(external_id=external_id, created_at=created)
            profile.email_subscribe = email_subscribe
            self.db.place_phone(profile, phone)
            self.db.place_email(profile, email)
            profile.user_aliases = [dict(a) for a in user_aliases or []]
            for group_id, state in (groups or {}).items():
                self.db.groups.setdefault(group_id, {"channel": "email", "name": None})
                profile.groups[group_id] = state
            self.db.touch(profile, to_epoch(updated_at) if updated_at is not None else created)
            return profile.braze_id

    def sms_stop(self, phone: str, group_ids: list[str] | None = None) -> int:
        """A STOP reply from `phone` (E.164): every SMS group (or the given ones) unsubscribed
        on each profile holding the number, with no time kept; returns the profiles changed."""
        with self.lock:
            return self.db.sms_stop(phone, group_ids)

    def add_unsubscribe(self, email: str, at: Timestamp) -> None:
        """Record a global unsubscribe event for an address (profiles are not changed)."""
        with self.lock:
            self.db.unsubscribes[self.db.norm(email)] = {"email": email, "unsubscribed_at": iso_utc(at)}

    def add_hard_bounce(self, email: str, at: Timestamp) -> None:
        """Record a hard bounce for an address."""
        with self.lock:
            self.db.hard_bounces[self.db.norm(email)] = {"email": email, "hard_bounced_at": iso_utc(at)}

    def profiles_by_email(self, email: str) -> list[Profile]:
        """Copies of every profile holding the address (case-insensitive), deletions applied."""
        self.tick()
        with self.lock:
            return copy.deepcopy(self.db.by_email(email))

    def profile_by_external_id(self, xid: str) -> Profile | None:
        self.tick()
        with self.lock:
            return copy.deepcopy(self.db.by_external_id(xid))

    def group_state(self, braze_id: str, group_id: str) -> str | None:
        """`subscribed`, `unsubscribed`, or None when the profile never changed the group."""
        self.tick()
        with self.lock:
            profile = self.db.profiles.get(braze_id)
            return None if profile is None else profile.groups.get(group_id)

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return self.db.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> "BrazeSim":
        sim = cls(**kwargs)
        sim.db.load(copy.deepcopy(data))
        return sim

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> "BrazeSim":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), **kwargs)

    # -- /users/export/ids ---------------------------------------------------------------
    def _export_route(self, req: SimRequest) -> SimResponse:
        """Charged per request: the 40/s class when fields_to_export lists neither
        campaigns_received nor canvases_received and the 250/min default is in force."""
        try:
            body: dict[str, Any] | None = body_of(req)
        except BadRequest:
            body = None
        allowed, headers = self.limiter.take(self._export_class(body))
        if not allowed:
            return SimResponse(429, self.error_body(429, RATE_LIMITED), headers)
        resp = self._api(self._export_ids)(req)
        resp.headers = {**headers, **resp.headers}
        return resp

    def _export_class(self, body: dict[str, Any] | None) -> str:
        fields = (body or {}).get("fields_to_export")
        slow = self.limiter.windows.get("users_export_ids")
        default_tier = slow is not None and slow.limit * 60 / slow.seconds <= 250
        if (default_tier and "users_export_ids_fast" in self.limiter.windows and isinstance(fields, list)
                and fields and not SLOW_EXPORT_FIELDS & {str(f) for f in fields}):
            return "users_export_ids_fast"
        return "users_export_ids"

    def _export_ids(self, req: SimRequest) -> SimResponse:
        body = body_of(req)
        profiles, invalid = export_targets(body, self.db)
        fields = export_fields(body.get("fields_to_export"), self.require_fields_to_export)
        out: dict[str, Any] = {"message": "success", "users": [export_user(p, fields) for p in profiles]}
        if invalid:
            out["invalid_user_ids"] = invalid
        return SimResponse(200, out)

    # -- subscription groups -------------------------------------------------------------
    def _status_get(self, req: SimRequest) -> SimResponse:
        """Capitalised state per submitted identifier; the most recently updated matching
        profile that has a state for the group speaks for a shared email. An unknown group is
        refused (400), or with `unknown_group_read="unknown"` answered "Unknown" for each id."""
        kind, ids = pick_identifiers(req.args("external_id"), req.args("email"), req.args("phone"))
        asked = req.arg("subscription_group_id")
        if self.unknown_group_read == "unknown" and isinstance(asked, str) and asked and asked not in self.db.groups:
            return SimResponse(200, {"status": {ident: "Unknown" for ident in ids}, "message": "success"})
        group_id = known_group(self.db, asked)
        if kind == "email" and self.db.is_sms(group_id):  # SMS groups take phone or external_id only
            raise BadRequest(Msg.WRONG_CHANNEL.format(channel="sms"))
        status: dict[str, str] = {}
        for ident in ids:
            profiles = self.db.lookup(kind, ident)
            if profiles or self.not_found_style == "unknown":
                holders = [p for p in profiles if group_id in p.groups]
                best = max(holders, key=Profile.recency, default=None)
                status[ident] = best.groups[group_id].capitalize() if best else "Unknown"
        return SimResponse(200, {"status": status, "message": "success"})

    def _user_status(self, req: SimRequest) -> SimResponse:
        """Groups each matching profile has a state for, paged by limit (≤100) and offset."""
        kind, ids = pick_identifiers(req.args("external_id"), req.args("email"), req.args("phone"))
        limit = int_arg(req, "limit", 100, 1, 100)
        offset = int_arg(req, "offset", 0, 0, None)
        profiles = list({p.braze_id: p for ident in ids for p in self.db.lookup(kind, ident)}.values())
        if self.user_status_shape == "users":
            users = [community_user(p, self.db.groups) for p in profiles[offset:offset + limit]]
            return SimResponse(200, {"message": "success", "users": users, "total_count": len(profiles)})
        entries = [{"subscription_group_id": gid, "subscription_status": state}
                   for p in profiles for gid, state in p.groups.items()]
        return SimResponse(200, {"success": True, "subscription_groups": entries[offset:offset + limit]})

    def _status_set(self, req: SimRequest) -> SimResponse:
        """One group; by email every profile holding the address is updated."""
        change = group_change(body_of(req), ("external_id", "email", "phone"), self.db)
        self._apply_group_change(*change)
        return SimResponse(201, {"message": "success"})

    def _status_set_v2(self, req: SimRequest) -> SimResponse:
        """Several groups per request; all are checked before any is applied."""
        items = body_of(req).get("subscription_groups")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise BadRequest(Msg.GROUPS_REQUIRED)
        changes = [group_change(item, ("external_ids", "emails", "phones"), self.db) for item in items]
        for change in changes:
            self._apply_group_change(*change)
        return SimResponse(201, {"message": "success"})

    def _apply_group_change(self, group_id: str, state: str, targets: list[Profile]) -> None:
        for profile in {p.braze_id: p for p in targets}.values():
            self.db.set_group(profile, group_id, state)

    # -- /users/track --------------------------------------------------------------------
    def _track(self, req: SimRequest) -> SimResponse:
        """Each valid object is applied; invalid ones are reported by array and index.
        Nothing valid at all is fatal."""
        body = body_of(req)
        arrays = {name: body.get(name) or [] for name in TRACK_ARRAYS}
        if not all(isinstance(a, list) for a in arrays.values()):
            raise BadRequest(Msg.NO_TRACK_DATA)
        if sum(map(len, arrays.values())) > self.track_object_limit:
            if self.track_limit_wording == "documented":
                raise BadRequest(Msg.MAX_INPUT)
            flat = [(name, index) for name, objects in arrays.items() for index in range(len(objects))]
            raise BadRequest(Msg.OVER_CONTRACT, [{"type": Msg.OVER_CONTRACT_OBJECT, "input_array": name, "index": i}
                                                 for name, i in flat[self.track_object_limit:]])
        errors: list[dict[str, Any]] = []
        counts = {f"{name}_processed": 0 for name in TRACK_ARRAYS if body.get(name)}
        for name, objects in arrays.items():
            for index, obj in enumerate(objects):
                problem = track_problem(obj, name, self.db.groups)
                if problem:
                    errors.append({"type": problem, "input_array": name, "index": index})
                    continue
                self._track_apply(obj, name)
                counts[f"{name}_processed"] += 1
        if not any(counts.values()):
            raise BadRequest(Msg.NO_TRACK_DATA, errors)
        return SimResponse(201, {"message": "success", **counts, **({"errors": errors} if errors else {})})

    def _track_apply(self, obj: dict[str, Any], array: str) -> None:
        profile = self._not_yet_visible(obj) or self.db.resolve(obj)
        if profile is None:
            return
        if array == "attributes":
            self.db.apply_attributes(profile, obj)
        elif array == "events":
            self.db.record_event(profile, obj["name"], str(obj["time"]))
        else:
            self.db.record_purchase(profile, obj)

    # -- /users/delete and /users/alias/new ------------------------------------------------
    def _delete(self, req: SimRequest) -> SimResponse:
        """Queue profiles for deletion; `deleted` counts what was queued. An email or
        phone still matching several profiles after prioritization deletes nothing."""
        body = body_of(req)
        present = [k for k in DELETE_KEYS if body.get(k) is not None]
        if len(present) != 1:
            raise BadRequest(Msg.DELETE_ONE_TYPE)
        key = present[0]
        items = body[key]
        if not isinstance(items, list) or not items:
            raise BadRequest(Msg.NOT_A_LIST.format(name=key))
        id_limit(items, key)
        targets = {p.braze_id: p for p in (self._delete_target(key, item) for item in items) if p}
        for profile in targets.values():
            self.db.queue_deletion(profile, self.deletion_delay_seconds)
        return SimResponse(201, {"deleted": len(targets), "message": "success"})

    def _delete_target(self, key: str, item: Any) -> Profile | None:
        if key in ("external_ids", "braze_ids"):
            if not isinstance(item, str):
                raise BadRequest(Msg.NOT_A_STRING.format(name=key))
            hits = self.db.lookup(key[:-1], item)
            return hits[0] if hits else None
        if not isinstance(item, dict):
            raise BadRequest(Msg.NOT_AN_OBJECT.format(name=key))
        if key == "user_aliases":
            return self.db.by_alias(str(item.get("alias_name")), str(item.get("alias_label")))
        field = "email" if key == "email_addresses" else "phone"
        value = item.get(field)
        if not isinstance(value, str) or not value:
            raise BadRequest(Msg.MISSING.format(name=f"{key}[].{field}"))
        return prioritized(self.db.lookup(field, value), item.get("prioritization"))

    def _alias_new(self, req: SimRequest) -> SimResponse:
        """Add aliases to existing users (by external_id) or create alias-only users."""
        aliases = body_of(req).get("user_aliases")
        if not isinstance(aliases, list) or not aliases:
            raise BadRequest(Msg.NOT_A_LIST.format(name="user_aliases"))
        id_limit(aliases, "user_aliases")
        errors = [{"type": Msg.BAD_ALIAS, "index": i} for i, a in enumerate(aliases) if not alias_ok(a)]
        good = [a for a in aliases if alias_ok(a)]
        if not good:
            raise BadRequest(Msg.BAD_ALIAS, errors)
        for alias in good:
            self._add_alias(alias)
        out = {"aliases_processed": len(good), "message": "success"}
        return SimResponse(201, {**out, **({"errors": errors} if errors else {})})

    def _add_alias(self, item: dict[str, Any]) -> None:
        name, label = item["alias_name"], item["alias_label"]
        if self.db.by_alias(name, label) is not None:
            return
        owner = (self.db.new_profile() if item.get("external_id") is None
                 else self.db.by_external_id(item["external_id"]))
        if owner is not None:
            owner.user_aliases.append({"alias_name": name, "alias_label": label})
            self.db.touch(owner)
            if self.alias_visibility_delay_seconds > 0:
                self.hidden_aliases[(name, label)] = self.clock() + self.alias_visibility_delay_seconds

    def _not_yet_visible(self, obj: dict[str, Any]) -> Profile | None:
        """A track object naming an alias `/users/alias/new` made too recently: Braze has not
        propagated it, so an object that may create a profile creates a second one for it."""
        alias = obj.get("user_alias")
        if not isinstance(alias, dict) or obj.get("external_id") is not None:
            return None
        key = (str(alias.get("alias_name")), str(alias.get("alias_label")))
        if self.hidden_aliases.get(key, 0.0) <= self.clock() or obj.get("_update_existing_only") is not False:
            return None
        twin = self.db.new_profile()
        twin.user_aliases.append({"alias_name": key[0], "alias_label": key[1]})
        return twin

    # -- email endpoints -----------------------------------------------------------------
    def _unsubscribes(self, req: SimRequest) -> SimResponse:
        return self._address_list(req, self.db.unsubscribes, "unsubscribed_at", email_wins=False)

    def _hard_bounces(self, req: SimRequest) -> SimResponse:
        return self._address_list(req, self.db.hard_bounces, "hard_bounced_at", email_wins=True)

    def _address_list(self, req: SimRequest, table: dict[str, dict[str, str]], stamp: str,
                      email_wins: bool) -> SimResponse:
        """Events in [start_date 00:00 UTC, end of end_date], newest first by default."""
        query = ListQuery.parse(req)
        if query.email is not None:  # the table is keyed by the normalised address: one row at most
            row = table.get(self.db.norm(query.email))
            rows = [row] if row is not None and query.matches(row["email"], row[stamp], email_wins) else []
        else:
            listed = table if isinstance(table, AddressTable) else self.db.address_table(stamp, table)
            rows = _window_page(listed, query)
        page = rows[query.offset:query.offset + query.limit] if query.email is not None else rows
        return SimResponse(200, {"emails": [dict(r) for r in page], "message": "success"})

    def _email_status(self, req: SimRequest) -> SimResponse:
        """Set global email state for addresses, on every profile holding them or, for an
        address no profile has yet, when one attaches it."""
        body = body_of(req)
        emails = emails_arg(body.get("email"))
        state = body.get("subscription_state")
        if state not in EMAIL_STATES:
            raise BadRequest(Msg.BAD_EMAIL_STATE)
        for email in emails:
            self.db.set_address_state(email, state)
        return SimResponse(201, {"message": "success"})

    def _blocklist(self, req: SimRequest) -> SimResponse:
        """Unsubscribe each address everywhere and mark it hard bounced."""
        for email in emails_arg(body_of(req).get("email")):
            self.db.block(email)
        return SimResponse(201, {"message": "success"})

    # -- /users/export/segment and its download --------------------------------------------
    def _export_segment(self, req: SimRequest) -> SimResponse:
        """Start an export of the built-in all-users segment; one per segment at a time (429
        while one runs, as Braze answers). The file (a zip of JSON-lines files) is prepared
        now and served once the delay passed (never, for a failed export)."""
        segment_id, fields = segment_export_request(body_of(req), {self.segment_id})
        now = self.clock()
        running = any(e["segment_id"] == segment_id and e["ready_at"] > now for e in self.exports.values())
        if running or self.segment_export == "busy":
            raise BadRequest(Msg.EXPORT_RUNNING.format(segment_id=segment_id), status=429)
        prefix = f"{self.rng.getrandbits(128):032x}-{int(now)}"
        users = [export_user(p, fields) for p in self.db.profiles.values()]
        ends = self.segment_export in ("failed", "bucket")  # failed at once, or written to the bucket at once
        self.exports[prefix] = {"segment_id": segment_id, "signature": f"{self.rng.getrandbits(128):032x}",
                                "ready_at": now if ends else now + self.segment_export_delay_seconds,
                                "failed": self.segment_export == "failed",
                                "content": segment_zip(prefix, users, self.segment_file_users)}
        if self.segment_export == "bucket":  # the files land in the customer's bucket: no download URL
            return SimResponse(201, {"message": "success", "object_prefix": prefix})
        export = self.exports[prefix]
        url = f"{req.origin()}{DOWNLOADS}{prefix}.zip?X-Amz-Expires=3600&X-Amz-Signature={export['signature']}"
        return SimResponse(201, {"message": "success", "object_prefix": prefix, "url": url})

    def _download(self, req: SimRequest) -> SimResponse:
        """S3 behaviour of a pre-signed URL: 404 NoSuchKey until the file exists, 403 for a
        wrong signature, 400 when an Authorization header is sent as well."""
        key = req.path[len(DOWNLOADS):]
        export = self.exports.get(key[:-4] if key.endswith(".zip") else "")
        request_id = f"{self.rng.getrandbits(64):016X}"
        if req.headers.get("authorization"):
            return _xml(400, s3_error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                      "query parameter, Signature query string parameter or the Authorization "
                                      "header should be specified", key, request_id))
        if export is not None and req.arg("X-Amz-Signature") != export["signature"]:
            return _xml(403, s3_error("SignatureDoesNotMatch", "The request signature we calculated does not match "
                                      "the signature you provided.", key, request_id))
        if export is None or export["ready_at"] > self.clock() or export.get("failed"):
            return _xml(404, s3_error("NoSuchKey", "The specified key does not exist.", key, request_id))
        return SimResponse(200, export["content"], {"Content-Type": "application/zip"})


def _window_page(table: AddressTable, query: ListQuery) -> list[dict[str, str]]:
    """The page of rows in [query.start, query.end), by (time, address) in the query's
    direction: bisected in the table's sorted view, or filtered when its times are unordered."""
    stamp = table.stamp
    rows, times = table.sorted_rows()
    if times is None:
        hits = [r for r in rows if query.matches(r["email"], r[stamp], False)]
        if query.descending:
            hits.reverse()
        return hits[query.offset:query.offset + query.limit]
    lo = 0 if query.start is None else bisect.bisect_left(times, query.start)
    hi = bisect.bisect_left(times, query.end)
    if not query.descending:
        first = lo + query.offset
        return rows[first:min(hi, first + query.limit)]
    top = hi - query.offset
    return rows[max(lo, top - query.limit):max(lo, top)][::-1]


def _xml(status: int, body: bytes) -> SimResponse:
    return SimResponse(status, body, {"Content-Type": "application/xml"})
