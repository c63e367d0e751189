"""Request checks and response shapes for the Braze simulator, with every error message.

Messages the reference documents are quoted verbatim (`Msg.MAX_INPUT`, ...); the others
are the simulator's own wording, kept here so they change in one place.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from reconcile.sandbox.braze_state import EMAIL_STATES, GROUP_STATES, BrazeState, Profile, export_time, to_epoch
from reconcile.sandbox.core import SimRequest

MAX_IDS = 50
EXPORT_FIELDS = frozenset((
    "apps attributed_campaign attributed_source attributed_adgroup attributed_ad braze_id campaigns_received "
    "canvases_received cards_clicked country created_at custom_attributes custom_events devices dob email "
    "email_subscribe external_id first_name gender home_city language last_coordinates last_name phone "
    "purchases push_subscribe push_tokens random_bucket time_zone total_revenue uninstalled_at user_aliases").split())
PRIORITIES = ("identified", "unidentified", "most_recently_updated")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Msg:
    """Every error message the simulator answers with."""

    # documented (braze-api.md §0 "Response / error format", §3, §4)
    UNAUTHORIZED = "Unauthorized"
    ACCESS_DENIED = "Access Denied"
    MAX_IDS_AND_ALIASES = "The max number of external_ids and aliases per request was exceeded"
    MAX_IDS = "The max number of ids per request was exceeded"
    MAX_INPUT = "Max Input Length Exceeded"
    EMAIL_AND_PHONE = "Either an email address or a phone number should be provided, but not both."
    NO_TRACK_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    TRACK_ID_REQUIRED = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
    # the simulator's own wording
    BAD_JSON = "Bad Request: the body must be a JSON object"
    NOT_A_LIST = "Bad Request: '{name}' must be a non-empty array"
    NOT_A_STRING = "Bad Request: '{name}' must contain strings"
    SINGLE_STRING = "Bad Request: '{name}' must be a single string"
    NOT_AN_OBJECT = "Bad Request: '{name}' must contain objects"
    MISSING = "Bad Request: '{name}' is required"
    NO_IDENTIFIER = "Bad Request: no user identifier was provided"
    ONE_EXPORT_ID = "Bad Request: only one of 'email_address', 'braze_id', 'device_id' or 'phone' may be provided"
    FIELDS_REQUIRED = "Bad Request: 'fields_to_export' is required"
    BAD_FIELDS = "Bad Request: 'fields_to_export' contains invalid fields"
    GROUP_REQUIRED = "Bad Request: 'subscription_group_id' is required"
    GROUPS_REQUIRED = "Bad Request: 'subscription_groups' must be a non-empty array of objects"
    UNKNOWN_GROUP = "Bad Request: subscription group '{group_id}' does not exist"
    WRONG_CHANNEL = "Bad Request: identifiers do not match the subscription group's channel ({channel})"
    BAD_PHONE = "Bad Request: phone numbers must be in E.164 format (+<country code><number>)"
    BAD_GROUP_STATE = "Bad Request: 'subscription_state' must be 'subscribed' or 'unsubscribed'"
    BAD_EMAIL_STATE = "Bad Request: 'subscription_state' must be 'subscribed', 'unsubscribed' or 'opted_in'"
    INVALID_EMAIL = "Bad Request: invalid email address"
    DELETE_ONE_TYPE = ("Bad Request: exactly one of 'external_ids', 'user_aliases', 'braze_ids', "
                       "'email_addresses' or 'phone_numbers' must be provided")
    BAD_PRIORITIZATION = ("Bad Request: 'prioritization' must be an array of identified, unidentified, "
                          "most_recently_updated with at most one of identified/unidentified")
    BAD_ALIAS = "Bad Request: each alias needs string 'alias_name' and 'alias_label'"
    BAD_DATE = "Bad Request: '{name}' must be a date as YYYY-MM-DD"
    END_DATE_REQUIRED = "Bad Request: 'end_date' is required"
    EMAIL_OR_START = "Bad Request: 'email' or 'start_date' is required"
    START_NOT_BEFORE_END = "Bad Request: 'start_date' must be before 'end_date'"
    BAD_INT = "Bad Request: '{name}' must be an integer between {lo} and {hi}"
    BAD_SORT = "Bad Request: 'sort_direction' must be 'asc' or 'desc'"
    SEGMENT_REQUIRED = "Bad Request: 'segment_id' is required"
    UNKNOWN_SEGMENT = "Bad Request: segment '{segment_id}' does not exist"
    EXPORT_RUNNING = "An export of segment '{segment_id}' is already in progress; try again once it finished"
    OVER_CONTRACT = "Bad Request: this request holds more objects than the workspace's contract allows"
    OVER_CONTRACT_OBJECT = "object over the contract's per-request limit"
    BAD_OUTPUT_FORMAT = "Bad Request: 'output_format' must be 'zip' or 'gzip'"
    GZIP_NEEDS_BUCKET = "Bad Request: 'output_format' gzip needs an S3, Azure or GCS export bucket"
    BAD_CALLBACK = "Bad Request: 'callback_endpoint' must be a URL"
    # /users/track per-object errors without a documented code
    TRACK_NOT_OBJECT = "object must be a JSON object"
    TRACK_ONE_PRIMARY = "only one of 'external_id', 'braze_id' or 'user_alias' may be provided"
    TRACK_BAD_ID = "'{name}' must be a string"
    TRACK_BAD_ALIAS = "'user_alias' must have string 'alias_name' and 'alias_label'"
    TRACK_BAD_FLAG = "'_update_existing_only' must be a boolean"
    EVENT_FIELDS = "events require a string 'name' and a 'time'"
    PURCHASE_FIELDS = ("purchases require 'product_id', a 3-letter 'currency', a numeric 'price', a 'time' "
                       "and an optional integer 'quantity' from 1 to 100")


class BadRequest(Exception):
    """A fatal client error: `{"message": ..., "errors": [...]}` with HTTP `status`."""

    def __init__(self, message: str, errors: list[Any] | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.errors, self.status = message, errors or [], status

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **({"errors": self.errors} if self.errors else {})}


# -- generic parameters -------------------------------------------------------------------
def body_of(req: SimRequest) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise BadRequest(Msg.BAD_JSON) from None
    if not isinstance(body, dict):
        raise BadRequest(Msg.BAD_JSON)
    return body


def strings(value: Any, name: str, single_ok: bool = False) -> list[str]:
    """An array of strings (or one string when `single_ok` or a single-valued field)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(Msg.NOT_A_STRING.format(name=name))
    return list(value)


def id_limit(values: list[Any], kind: str) -> None:
    """At most 50 identifiers; external ids and aliases have their own documented message."""
    if len(values) > MAX_IDS:
        ids_and_aliases = kind in ("external_id", "external_ids", "user_aliases")
        raise BadRequest(Msg.MAX_IDS_AND_ALIASES if ids_and_aliases else Msg.MAX_IDS)


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(EMAIL_RE.match(value.strip()))


def emails_arg(value: Any, required: bool = True) -> list[str]:
    """`email`: one address or an array of up to 50, each well formed."""
    emails = strings(value, "email")
    if required and not emails:
        raise BadRequest(Msg.MISSING.format(name="email"))
    id_limit(emails, "email")
    bad = [e for e in emails if not valid_email(e)]
    if bad:
        raise BadRequest(Msg.INVALID_EMAIL, [f"'{e}' is not a valid email address" for e in bad])
    return emails


def pick_identifiers(xids: list[str], emails: list[str], phones: list[str]) -> tuple[str, list[str]]:
    """Which identifier list a subscription read uses: external_id wins; email and phone
    together without external_id is an error."""
    if xids:
        kind, ids = "external_id", xids
    elif emails and phones:
        raise BadRequest(Msg.EMAIL_AND_PHONE)
    elif emails or phones:
        kind, ids = ("email", emails) if emails else ("phone", phones)
    else:
        raise BadRequest(Msg.NO_IDENTIFIER)
    id_limit(ids, kind)
    if kind == "phone":
        check_phones(ids)
    return kind, ids


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def check_phones(phones: list[str]) -> None:
    """Subscription endpoints take phone numbers in E.164 only."""
    if any(not E164.match(p) for p in phones):
        raise BadRequest(Msg.BAD_PHONE)


def int_arg(req: SimRequest, name: str, default: int, lo: int, hi: int | None) -> int:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if value < lo or (hi is not None and value > hi):
        raise BadRequest(Msg.BAD_INT.format(name=name, lo=lo, hi="any" if hi is None else hi))
    return value


# -- /email/unsubscribes and /email/hard_bounces ------------------------------------------
@dataclass(frozen=True)
class ListQuery:
    start: float | None
    end: float
    email: str | None
    limit: int
    offset: int
    descending: bool

    @classmethod
    def parse(cls, req: SimRequest) -> "ListQuery":
        """end_date is required, plus email or start_date; start_date < end_date; limit
        1..500 (default 100); sort_direction asc|desc (default desc, newest first)."""
        email, start, end = req.arg("email") or None, _day(req, "start_date"), _day(req, "end_date")
        if end is None:
            raise BadRequest(Msg.END_DATE_REQUIRED)
        if email is None and start is None:
            raise BadRequest(Msg.EMAIL_OR_START)
        if start is not None and start >= end:
            raise BadRequest(Msg.START_NOT_BEFORE_END)
        direction = req.arg("sort_direction") or "desc"
        if direction not in ("asc", "desc"):
            raise BadRequest(Msg.BAD_SORT)
        end_ts = datetime.combine(end + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp()
        start_ts = None if start is None else datetime.combine(start, datetime.min.time(), timezone.utc).timestamp()
        return cls(start_ts, end_ts, email, int_arg(req, "limit", 100, 1, 500), int_arg(req, "offset", 0, 0, None),
                   direction == "desc")

    def matches(self, email: str, stamp: str, email_wins: bool) -> bool:
        """In the window (end_date inclusive) and, when asked, for this address. With
        `email_wins` an email filter ignores the dates."""
        if self.email is not None:
            if email.strip().lower() != self.email.strip().lower():
                return False
            if email_wins:
                return True
        at = to_epoch(stamp)
        return (self.start is None or at >= self.start) and at < self.end


def _day(req: SimRequest, name: str) -> date | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        if not DAY_RE.match(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(Msg.BAD_DATE.format(name=name)) from None


# -- identifiers --------------------------------------------------------------------------
def export_targets(body: dict[str, Any], db: BrazeState) -> tuple[list[Profile], list[str]]:
    """Users a `/users/export/ids` body names: up to 50 external_ids plus user_aliases,
    and at most one of email_address / braze_id / device_id / phone. Requested string
    identifiers that match nobody come back as `invalid_user_ids`."""
    xids = strings(body.get("external_ids"), "external_ids")
    aliases = body.get("user_aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, dict) for a in aliases):
        raise BadRequest(Msg.NOT_AN_OBJECT.format(name="user_aliases"))
    if len(xids) + len(aliases) > MAX_IDS:
        raise BadRequest(Msg.MAX_IDS_AND_ALIASES)
    singles = {k: body[k] for k in ("email_address", "braze_id", "device_id", "phone") if body.get(k) is not None}
    if len(singles) > 1:
        raise BadRequest(Msg.ONE_EXPORT_ID)
    if any(not isinstance(v, str) for v in singles.values()):
        raise BadRequest(Msg.SINGLE_STRING.format(name=next(iter(singles))))
    if not (xids or aliases or singles):
        raise BadRequest(Msg.NO_IDENTIFIER)
    found: dict[str, Profile] = {}
    invalid: list[str] = []
    for kind, value in [("external_id", x) for x in xids] + list(singles.items()):
        matches = db.lookup(kind, value)
        found.update((p.braze_id, p) for p in matches)
        invalid += [] if matches else [value]
    hits = (db.by_alias(str(a.get("alias_name")), str(a.get("alias_label"))) for a in aliases)
    found.update((p.braze_id, p) for p in hits if p is not None)
    return list(found.values()), invalid


def known_group(db: BrazeState, group_id: Any) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise BadRequest(Msg.GROUP_REQUIRED)
    if group_id not in db.groups:
        raise BadRequest(Msg.UNKNOWN_GROUP.format(group_id=group_id))
    return group_id


def group_change(item: dict[str, Any], keys: tuple[str, str, str], db: BrazeState) -> tuple[str, str, list[Profile]]:
    """(group, state, profiles) for one subscription-status write. `keys` name the
    external id / email / phone arrays (v1 singular, v2 plural); email and phone exclude
    each other; an email reaches every profile holding it."""
    group_id = known_group(db, item.get("subscription_group_id"))
    state = item.get("subscription_state")
    if state not in GROUP_STATES:
        raise BadRequest(Msg.BAD_GROUP_STATE)
    xids, emails, phones = (strings(item.get(k), k, single_ok=True) for k in keys)
    if emails and phones:
        raise BadRequest(Msg.EMAIL_AND_PHONE)
    if not (xids or emails or phones):
        raise BadRequest(Msg.NO_IDENTIFIER)
    by_kind = (("external_id", xids), ("email", emails), ("phone", phones))
    for kind, values in by_kind:
        id_limit(values, kind)
    check_phones(phones)
    channel = db.groups[group_id].get("channel")
    if (emails and channel not in ("email", None)) or (phones and channel == "email"):
        raise BadRequest(Msg.WRONG_CHANNEL.format(channel=channel))
    emails_arg(emails, required=False)
    return group_id, state, [p for kind, values in by_kind for v in values for p in db.lookup(kind, v)]


# -- /users/track -------------------------------------------------------------------------
def track_problem(obj: Any, array: str, groups: dict[str, Any]) -> str | None:
    """The error `type` for an invalid track object, or None when it is valid."""
    if not isinstance(obj, dict):
        return Msg.TRACK_NOT_OBJECT
    problem = _identifier_problem(obj)
    if problem is None and array == "attributes":
        problem = _attribute_problem(obj, groups)
    elif problem is None and array == "events":
        ok = isinstance(obj.get("name"), str) and obj["name"] and obj.get("time") is not None
        problem = None if ok else Msg.EVENT_FIELDS
    elif problem is None and array == "purchases":
        problem = None if _purchase_ok(obj) else Msg.PURCHASE_FIELDS
    return problem


def _identifier_problem(obj: dict[str, Any]) -> str | None:
    primaries = [k for k in ("external_id", "user_alias", "braze_id") if obj.get(k) is not None]
    if len(primaries) > 1:
        return Msg.TRACK_ONE_PRIMARY
    if not primaries and not obj.get("email") and not obj.get("phone"):
        return Msg.TRACK_ID_REQUIRED
    for name in ("external_id", "braze_id", "phone"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return Msg.TRACK_BAD_ID.format(name=name)
    if len((obj.get("external_id") or "").encode()) > 987:
        return "EXTERNAL_USER_ID_TOO_LARGE"
    alias = obj.get("user_alias")
    if alias is not None and not (isinstance(alias, dict) and isinstance(alias.get("alias_name"), str)
                                  and isinstance(alias.get("alias_label"), str)):
        return Msg.TRACK_BAD_ALIAS
    if obj.get("email") is not None and not valid_email(obj["email"]):
        return "EMAIL_BAD_FORMAT"
    if "_update_existing_only" in obj and not isinstance(obj["_update_existing_only"], bool):
        return Msg.TRACK_BAD_FLAG
    return None


def _attribute_problem(obj: dict[str, Any], groups: dict[str, Any]) -> str | None:
    if obj.get("email_subscribe") is not None and obj["email_subscribe"] not in EMAIL_STATES:
        return "BAD_EMAIL_SUBSCRIPTION_STATE"
    if obj.get("push_subscribe") is not None and obj["push_subscribe"] not in EMAIL_STATES:
        return "BAD_PUSH_SUBSCRIPTION_STATE"
    items = obj.get("subscription_groups")
    if items is None:
        return None
    if not isinstance(items, list):
        return "BAD_SUBSCRIPTION_GROUP_ARRAY"
    for item in items:
        if not isinstance(item, dict):
            return "BAD_SUBSCRIPTION_GROUP_HASH"
        group_id = item.get("subscription_group_id")
        if not isinstance(group_id, str) or group_id not in groups:
            return "BAD_SUBSCRIPTION_GROUP_ID"
        if item.get("subscription_state") not in GROUP_STATES:
            return "BAD_SUBSCRIPTION_GROUP_STATE"
    return None


def _purchase_ok(obj: dict[str, Any]) -> bool:
    """Braze purchases: product_id, 3-letter currency, numeric price, time; quantity 1..100."""
    price, quantity = obj.get("price"), obj.get("quantity", 1)
    return (isinstance(obj.get("product_id"), str) and bool(obj["product_id"])
            and isinstance(obj.get("currency"), str) and len(obj["currency"]) == 3
            and isinstance(price, (int, float)) and not isinstance(price, bool)
            and isinstance(quantity, int) and not isinstance(quantity, bool) and 0 < quantity <= 100
            and obj.get("time") is not None)


# -- /users/delete, /users/alias/new --------------------------------------------------------
def prioritized(candidates: list[Profile], prioritization: Any) -> Profile | None:
    """The one profile an email/phone deletion targets, or None when none or several
    still match. Each rule narrows the candidates when it can."""
    rules = prioritization
    if (not isinstance(rules, list) or not rules or any(r not in PRIORITIES for r in rules)
            or {"identified", "unidentified"} <= set(rules)):
        raise BadRequest(Msg.BAD_PRIORITIZATION)
    for rule in rules:
        if rule == "most_recently_updated":
            narrowed = [max(candidates, key=Profile.recency)] if candidates else []
        else:
            narrowed = [p for p in candidates if (p.external_id is not None) == (rule == "identified")]
        candidates = narrowed or candidates
    return candidates[0] if len(candidates) == 1 else None


def alias_ok(item: Any) -> bool:
    return (isinstance(item, dict)
            and all(isinstance(item.get(k), str) and item[k] for k in ("alias_name", "alias_label"))
            and (item.get("external_id") is None or isinstance(item["external_id"], str)))


# -- response shapes ------------------------------------------------------------------------
def export_fields(fields: Any, required: bool) -> list[str] | None:
    """The requested `fields_to_export` (None = all, only when not required)."""
    if fields is None or fields == []:
        if required:
            raise BadRequest(Msg.FIELDS_REQUIRED)
        return None
    names = strings(fields, "fields_to_export")
    unknown = [f for f in names if f not in EXPORT_FIELDS]
    if unknown:
        raise BadRequest(Msg.BAD_FIELDS, [f"'{f}' is not a valid field" for f in unknown])
    return names


def export_user(p: Profile, fields: list[str] | None) -> dict[str, Any]:
    """A `/users/export/ids` user object: only the requested fields, empty ones left out."""
    full: dict[str, Any] = {
        "created_at": export_time(p.created_at), "external_id": p.external_id, "braze_id": p.braze_id,
        "user_aliases": p.user_aliases, "email": p.email, "phone": p.phone,
        "email_subscribe": p.email_subscribe, "push_subscribe": p.push_subscribe,
        "custom_attributes": p.custom_attributes,
        "custom_events": [{"name": n, **e} for n, e in p.custom_events.items()],
        "purchases": [{"name": n, **e} for n, e in p.purchases.items()],
        "total_revenue": p.total_revenue if p.purchases else None, **p.attributes,
    }
    keys = fields if fields is not None else list(full)
    return {k: _copy(full[k]) for k in keys if full.get(k) is not None and full.get(k) not in ([], {})}


def segment_export_request(body: dict[str, Any], segment_ids: set[str]) -> tuple[str, list[str]]:
    """(segment id, fields) of a valid `/users/export/segment` body: `segment_id` and
    `fields_to_export` required; `output_format` zip (gzip needs a bucket the sandbox does
    not have); `callback_endpoint` a URL when given."""
    segment_id = body.get("segment_id")
    if not isinstance(segment_id, str) or not segment_id:
        raise BadRequest(Msg.SEGMENT_REQUIRED)
    if segment_id not in segment_ids:
        raise BadRequest(Msg.UNKNOWN_SEGMENT.format(segment_id=segment_id))
    fields = export_fields(body.get("fields_to_export"), required=True)
    fmt = body.get("output_format")
    if fmt is not None and fmt not in ("zip", "gzip"):
        raise BadRequest(Msg.BAD_OUTPUT_FORMAT)
    if fmt == "gzip":
        raise BadRequest(Msg.GZIP_NEEDS_BUCKET)
    callback = body.get("callback_endpoint")
    if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
        raise BadRequest(Msg.BAD_CALLBACK)
    return segment_id, fields or []


def segment_zip(prefix: str, users: list[dict[str, Any]], per_file: int) -> bytes:
    """A zip of JSON-lines files, `per_file` users each (one file for an empty segment)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for n, start in enumerate(range(0, max(len(users), 1), per_file)):
            lines = "".join(json.dumps(u, separators=(",", ":")) + "\n" for u in users[start:start + per_file])
            archive.writestr(f"{prefix}/{prefix}-{n}.json", lines)
    return out.getvalue()


def s3_error(code: str, message: str, key: str, request_id: str) -> bytes:
    """An S3-style XML error body, as a pre-signed download answers it."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message><Key>{key}</Key>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()


def community_user(p: Profile, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A user in the braze-node shape of `/subscription/user/status`."""
    items = [{"id": gid, "name": groups.get(gid, {}).get("name"), "channel": groups.get(gid, {}).get("channel"),
              "status": state.capitalize()} for gid, state in p.groups.items()]
    return {"external_id": p.external_id, "email": p.email, "phone": p.phone, "subscription_groups": items}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
