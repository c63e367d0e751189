"""A simulator of the public Ketch Web API (see docs/ketch-api.md §1-§3).

Serves the same paths under `/web/v2` and `/web/v3`:

    POST /consent/{org}/get          POST /consent/{org}/update
    POST /subscriptions/{org}/get    POST /subscriptions/{org}/update
    POST /rights/{org}/invoke        GET  /config/{org}/{prop}/boot.json

No authentication (the real API has none). Consent values are the strings "true"/"false";
subscription and control statuses are "granted"/"denied". A get for an identity with
nothing stored answers 204 or `{}` (`empty_style`, or per route `consent_empty` and
`subscriptions_empty`). Errors use the body the iOS SDK decodes:
`{"error": {"code", "message", "status"}}`.

The less convenient answers the docs allow, each a constructor option:
`purpose_shape="bare"` (`{"p": "true"}`), `topic_shape="flat"` (`{topic: {status}}`),
`hide_topics` (topics left out of subscriptions/get answers), `error_identities` and
`error_share` (those identities, or that share of all, chosen by a stable hash, get
HTTP 200 with an error body on both gets: `{"message": "error"}`, or the iOS error body
with `error_style="ios"`), `update_mode="replace"` (an update replaces the stored
purposes, or topics and controls, instead of merging into them), and
`unknown_identity="defaults"`: a get for an identity with nothing stored answers the
jurisdiction's legal-basis defaults instead of an empty answer, with no `collectedAt`
(consent: each purpose the request asks about, `allowed` "false" under `consent_optin`
and "true" under any other basis; subscriptions: `default_topics` and `default_controls`).
`require_legal_basis=True` refuses (400) a consent update naming a purpose without its
`legalBasisCode`, as Ketch's `SetConsentRequest` type requires one.

Records are keyed by (identity space, value); a request's `identities` map matches a
record when any of its pairs does, and email values match case-insensitively after
trimming. An update links every identity pair of the request to the matched record, so
one record can span several identities (as Ketch's identity resolution does). Updates
merge by default: the purposes, topics and controls named in the request are set, others are kept,
and `collectedAt` is the request's (epoch seconds) or the clock's. A consent get answers
every stored purpose, whichever purposes the request lists (the tag filters them itself).
With `rate_limit=(n, seconds)` the API routes share one fixed window and a 429 carries
`Retry-After` (seconds until the window resets).

Ketch publishes no rate limit and serves the API through a CDN, so a client may meet the
edge rather than the API: `edge_style="html403"` answers requests over the rate limit
with the 403 HTML page a CDN or web firewall shows (no JSON error, no `Retry-After`)
instead of the API's 429. `refused_identities` get a 400 with the API's JSON error on
both gets (a request Ketch refuses for one subject, e.g. an identity value it rejects).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from reconcile.sandbox.core import SimRequest, SimResponse, Simulator

_PREFIX = r"/web/v[23]"
_SEG = r"[^/]+"
_STATUSES = ("granted", "denied")
_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                429: "too_many_requests", 500: "internal", 502: "bad_gateway", 503: "unavailable"}

Topics = dict[tuple[str, str | None], str]
EDGE_BLOCK_PAGE = (b"<!DOCTYPE html><html><head><title>Attention Required! | Access denied</title></head>"
                   b"<body><h1>Sorry, you have been blocked</h1><p>Error 1015: you are being rate limited.</p>"
                   b"</body></html>")


class BadRequest(ValueError):
    """A request the API would refuse with 400 (the core turns ValueError into 400)."""


@dataclass
class _Record:
    identities: list[tuple[str, str]]
    purposes: dict[str, dict[str, Any]] | None = None  # code -> {"allowed": bool, "legalBasisCode": str|None}
    consent_at: int | None = None
    topics: Topics | None = None  # (topic, channel or None) -> status
    controls: dict[str, str] = field(default_factory=dict)
    subs_at: int | None = None


def identity_key(space: str, value: str) -> tuple[str, str]:
    """The lookup key of one identity pair: emails compare trimmed and case-insensitively."""
    if "@" in value or "email" in space.lower():
        return space, value.strip().lower()
    return space, value


class _hybrid:
    """A method callable on the class (build a new simulator) or on an instance (load in place)."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        return lambda *a, **kw: self.func(owner, obj, *a, **kw)


class KetchSim(Simulator):
    """The Ketch Web API for one organization, with seeding and inspection helpers."""

    name = "ketch"

    def __init__(self, *, organization: str = "acme", clock: Callable[[], float] = time.time, seed: int = 0,
                 empty_style: str = "204", purpose_shape: str = "object", topic_shape: str = "channel",
                 rate_limit: tuple[int, float] | None = None, consent_empty: str | None = None,
                 subscriptions_empty: str | None = None, hide_topics: Iterable[str] = (),
                 error_identities: Iterable[str] = (), error_share: float = 0.0, error_style: str = "message",
                 update_mode: str = "merge", edge_style: str = "json429", refused_identities: Iterable[str] = (),
                 unknown_identity: str = "empty", default_topics: dict[str, dict[str, str]] | None = None,
                 default_controls: dict[str, str] | None = None, require_legal_basis: bool = False):
        super().__init__(clock=clock, seed=seed)
        _check_choice("edge_style", edge_style, ("json429", "html403"))
        self.edge_style = edge_style
        self.refused_identities = tuple(refused_identities)
        for name, value in (("empty_style", empty_style), ("consent_empty", consent_empty or empty_style),
                            ("subscriptions_empty", subscriptions_empty or empty_style)):
            _check_choice(name, value, ("204", "empty_object"))
        _check_choice("purpose_shape", purpose_shape, ("object", "bare"))
        _check_choice("topic_shape", topic_shape, ("channel", "flat"))
        _check_choice("error_style", error_style, ("message", "ios"))
        _check_choice("update_mode", update_mode, ("merge", "replace"))
        _check_choice("unknown_identity", unknown_identity, ("empty", "defaults"))
        if not 0.0 <= float(error_share) <= 1.0:
            raise ValueError(f"error_share must be between 0 and 1, got {error_share!r}")
        self.organization = organization
        self.empty_style, self.purpose_shape, self.topic_shape = empty_style, purpose_shape, topic_shape
        self.consent_empty, self.subscriptions_empty = consent_empty, subscriptions_empty
        self.hide_topics = tuple(hide_topics)
        self.error_identities = tuple(error_identities)
        self._error_values = {_value_key(v) for v in self.error_identities}
        self.error_share, self.error_style, self.update_mode = float(error_share), error_style, update_mode
        self.unknown_identity, self.require_legal_basis = unknown_identity, bool(require_legal_basis)
        self.default_topics = {t: dict(chans) for t, chans in (default_topics or {}).items()}
        self.default_controls = dict(default_controls or {})
        self.rate_limit = tuple(rate_limit) if rate_limit else None
        if self.rate_limit:
            self.limiter.set_limit("web", int(self.rate_limit[0]), float(self.rate_limit[1]))
        self._records: list[_Record] = []
        self._index: dict[tuple[str, str], _Record] = {}
        self.rights: list[dict[str, Any]] = []
        self._register()

    def _register(self) -> None:
        self.route("POST", f"{_PREFIX}/consent/{_SEG}/get", self._consent_get, "web")
        self.route("POST", f"{_PREFIX}/consent/{_SEG}/update", self._consent_update, "web")
        self.route("POST", f"{_PREFIX}/subscriptions/{_SEG}/get", self._subs_get, "web")
        self.route("POST", f"{_PREFIX}/subscriptions/{_SEG}/update", self._subs_update, "web")
        self.route("POST", f"{_PREFIX}/rights/{_SEG}/invoke", self._rights_invoke, "web")
        self.route("GET", f"{_PREFIX}/config/{_SEG}/{_SEG}/boot\\.json", self._boot, "web")

    # -- core hooks --------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": _ERROR_CODES.get(status, "error"), "message": message, "status": status}}

    def state(self) -> dict[str, Any]:
        return self.to_dict()

    def _dispatch(self, req: SimRequest) -> SimResponse:
        resp = super()._dispatch(req)
        if resp.status == 429 and self.edge_style == "html403":
            return SimResponse(403, EDGE_BLOCK_PAGE, {"Content-Type": "text/html; charset=UTF-8"})
        if resp.status == 429 and "Retry-After" not in resp.headers:
            resp.headers["Retry-After"] = self._retry_after(resp.headers)
        return resp

    def _retry_after(self, headers: dict[str, str]) -> str:
        reset = headers.get("X-RateLimit-Reset")
        if reset is None:
            return "1"
        return str(max(1, math.ceil(float(reset) - self.clock())))

    # -- routes ------------------------------------------------------------------------
    def _refused(self, identities: dict[str, str]) -> SimResponse | None:
        refused = {_value_key(v) for v in self.refused_identities}
        if refused and any(_value_key(v) in refused for v in identities.values()):
            return SimResponse(400, self.error_body(400, "invalid identity value"))
        return None

    def _consent_get(self, req: SimRequest) -> SimResponse:
        body, err = self._open(req)
        if err:
            return err
        refused = self._refused(body["identities"])
        if refused is not None:
            return refused
        if self._errs(body["identities"]):
            return self._error_answer()
        rec = self._find(body["identities"])
        if rec is None or rec.purposes is None:
            if self.unknown_identity == "defaults":
                return SimResponse(200, self._consent_defaults(body))
            return self._empty(self.consent_empty)
        return SimResponse(200, self._consent_body(body, rec))

    def _consent_update(self, req: SimRequest) -> SimResponse:
        body, err = self._open(req)
        if err:
            return err
        purposes = _read_purposes(body.get("purposes"))
        if self.require_legal_basis:
            missing = [code for code, p in purposes.items() if not p.get("legalBasisCode")]
            if missing:
                raise BadRequest(f"purposes.{missing[0]}.legalBasisCode is required")
        at = self._collected_at(body)
        rec = self._ensure(body["identities"])
        rec.purposes = purposes if self.update_mode == "replace" else {**(rec.purposes or {}), **purposes}
        rec.consent_at = at
        return SimResponse(200, self._consent_body(body, rec))

    def _subs_get(self, req: SimRequest) -> SimResponse:
        body, err = self._open(req)
        if err:
            return err
        refused = self._refused(body["identities"])
        if refused is not None:
            return refused
        if self._errs(body["identities"]):
            return self._error_answer()
        rec = self._find(body["identities"])
        if rec is None or rec.topics is None:
            if self.unknown_identity == "defaults":
                return SimResponse(200, self._subs_defaults(body))
            return self._empty(self.subscriptions_empty)
        return SimResponse(200, self._subs_body(body, rec))

    def _subs_update(self, req: SimRequest) -> SimResponse:
        body, err = self._open(req)
        if err:
            return err
        topics = _read_topics(body.get("topics"))
        controls = _read_controls(body.get("controls"))
        at = self._collected_at(body)
        rec = self._ensure(body["identities"])
        if self.update_mode == "replace":
            rec.topics, rec.controls = topics, controls
        else:
            rec.topics = {**(rec.topics or {}), **topics}
            rec.controls = {**rec.controls, **controls}
        rec.subs_at = at
        return SimResponse(200, self._subs_body(body, rec))

    def _rights_invoke(self, req: SimRequest) -> SimResponse:
        body, err = self._open(req)
        if err:
            return err
        if not isinstance(body.get("rightCode"), str) or not body["rightCode"]:
            raise BadRequest("rightCode is required")
        if "user" in body and not isinstance(body["user"], dict):
            raise BadRequest("user must be an object")
        self.rights.append({**body, "receivedAt": int(self.clock())})
        return SimResponse(200, {})

    def _boot(self, req: SimRequest) -> SimResponse:
        parts = req.path.split("/")
        org, prop = parts[4], parts[5]
        if org != self.organization:
            return self._unknown_org(org)
        return SimResponse(200, {
            "organization": {"code": org}, "property": {"code": prop},
            "environments": [{"code": "production", "pattern": ""}],
            "jurisdictionInfo": {"defaultJurisdictionCode": "default", "variable": "", "jurisdictions": {}},
        })

    # -- request helpers ---------------------------------------------------------------
    def _open(self, req: SimRequest) -> tuple[dict[str, Any], SimResponse | None]:
        """Check the path's org and the body's required fields."""
        org = req.path.split("/")[4]
        if org != self.organization:
            return {}, self._unknown_org(org)
        body = req.json()
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        code = body.get("organizationCode")
        if code is not None and code != org:
            raise BadRequest(f"organizationCode {code!r} does not match the path")
        ids = body.get("identities")
        if not isinstance(ids, dict) or not ids or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in ids.items()):
            raise BadRequest("identities must be a non-empty map of identity space to value")
        return body, None

    def _unknown_org(self, org: str) -> SimResponse:
        return SimResponse(404, self.error_body(404, f"organization {org!r} not found"))

    def _empty(self, style: str | None = None) -> SimResponse:
        return SimResponse(204) if (style or self.empty_style) == "204" else SimResponse(200, {})

    def _errs(self, identities: dict[str, str]) -> bool:
        """Whether this request gets an error body (error_identities, error_share)."""
        for value in identities.values():
            key = _value_key(value)
            if key in self._error_values:
                return True
            if self.error_share and zlib.crc32(key.encode()) / 2 ** 32 < self.error_share:
                return True
        return False

    def _error_answer(self) -> SimResponse:
        if self.error_style == "ios":
            return SimResponse(200, {"error": {"code": "internal", "message": "error", "status": 500}})
        return SimResponse(200, {"message": "error"})

    def _collected_at(self, body: dict[str, Any]) -> int:
        value = body.get("collectedAt")
        if value is None:
            return int(self.clock())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BadRequest("collectedAt must be epoch seconds")
        return int(value)

    def _echo(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"organizationCode": self.organization}
        for key in ("propertyCode", "environmentCode", "jurisdictionCode"):
            if key in body:
                out[key] = body[key]
        out["identities"] = body["identities"]
        return out

    def _consent_body(self, body: dict[str, Any], rec: _Record) -> dict[str, Any]:
        purposes = {code: self._purpose_out(p) for code, p in (rec.purposes or {}).items()}
        return {**self._echo(body), "purposes": purposes, "vendors": [], "collectedAt": rec.consent_at}

    def _consent_defaults(self, body: dict[str, Any]) -> dict[str, Any]:
        """The legal-basis defaults of the purposes asked about; no collectedAt: no choice was made."""
        raw = body.get("purposes")
        asked: dict[str, Any] = raw if isinstance(raw, dict) else {}
        purposes = {}
        for code, item in asked.items():
            basis = item.get("legalBasisCode") if isinstance(item, dict) else None
            purposes[code] = self._purpose_out({"allowed": basis != "consent_optin", "legalBasisCode": basis})
        return {**self._echo(body), "purposes": purposes, "vendors": []}

    def _subs_defaults(self, body: dict[str, Any]) -> dict[str, Any]:
        topics = {(t, ch or None): st for t, chans in self.default_topics.items() for ch, st in chans.items()}
        return {**self._echo(body), "topics": self._topics_out(topics),
                "controls": {code: {"status": st} for code, st in self.default_controls.items()}}

    def _purpose_out(self, p: dict[str, Any]) -> Any:
        allowed = "true" if p["allowed"] else "false"
        if self.purpose_shape == "bare":
            return allowed
        out = {"allowed": allowed}
        if p.get("legalBasisCode"):
            out["legalBasisCode"] = p["legalBasisCode"]
        return out

    def _subs_body(self, body: dict[str, Any], rec: _Record) -> dict[str, Any]:
        controls = {code: {"status": status} for code, status in rec.controls.items()}
        return {**self._echo(body), "topics": self._topics_out(rec.topics or {}), "controls": controls,
                "collectedAt": rec.subs_at}

    def _topics_out(self, topics: Topics) -> dict[str, Any]:
        grouped: dict[str, dict[str | None, str]] = {}
        for (topic, channel), status in topics.items():
            if topic not in self.hide_topics:
                grouped.setdefault(topic, {})[channel] = status
        return {topic: self._topic_out(chans) for topic, chans in grouped.items()}

    def _topic_out(self, chans: dict[str | None, str]) -> dict[str, Any]:
        if self.topic_shape == "flat" or set(chans) == {None}:
            return {"status": "denied" if "denied" in chans.values() else "granted"}
        return {ch: {"status": st} for ch, st in chans.items() if ch is not None}

    # -- records -----------------------------------------------------------------------
    def _find(self, identities: dict[str, str]) -> _Record | None:
        for space, value in identities.items():
            rec = self._index.get(identity_key(space, value))
            if rec is not None:
                return rec
        return None

    def _ensure(self, identities: dict[str, str]) -> _Record:
        rec = self._find(identities)
        if rec is None:
            rec = _Record(identities=[])
            self._records.append(rec)
        for space, value in identities.items():
            key = identity_key(space, value)
            if key not in self._index:
                self._index[key] = rec
                rec.identities.append((space, value))
        return rec

    # -- seeding and inspection --------------------------------------------------------
    def set_consent(self, space: str, value: str, purposes: dict[str, bool], collected_at: int,
                    legal_basis: dict[str, str] | None = None) -> None:
        """Replace the consent stored for one identity (purpose code -> allowed)."""
        basis = legal_basis or {}
        with self.lock:
            rec = self._ensure({space: value})
            rec.purposes = {c: {"allowed": bool(a), "legalBasisCode": basis.get(c)} for c, a in purposes.items()}
            rec.consent_at = int(collected_at)

    def set_subscriptions(self, space: str, value: str, topics: dict[str, dict[str | None, str]],
                          controls: dict[str, str], collected_at: int) -> None:
        """Replace the subscriptions of one identity; topics: topic -> {channel or None: status}."""
        flat = {(t, ch): _status(st, f"topics.{t}") for t, chans in topics.items() for ch, st in chans.items()}
        ctrl = {c: _status(st, f"controls.{c}") for c, st in controls.items()}
        with self.lock:
            rec = self._ensure({space: value})
            rec.topics, rec.controls, rec.subs_at = flat, ctrl, int(collected_at)

    def consent_of(self, space: str, value: str) -> dict[str, Any] | None:
        """`{"purposes": {code: bool}, "collected_at": int}` or None when nothing is stored."""
        with self.lock:
            rec = self._index.get(identity_key(space, value))
            if rec is None or rec.purposes is None:
                return None
            return {"purposes": {c: p["allowed"] for c, p in rec.purposes.items()}, "collected_at": rec.consent_at}

    def subscriptions_of(self, space: str, value: str) -> dict[str, Any] | None:
        """`{"topics": {topic: {channel: status}}, "controls": {...}, "collected_at": int}` or None."""
        with self.lock:
            rec = self._index.get(identity_key(space, value))
            if rec is None or rec.topics is None:
                return None
            topics: dict[str, dict[str | None, str]] = {}
            for (t, ch), st in rec.topics.items():
                topics.setdefault(t, {})[ch] = st
            return {"topics": topics, "controls": dict(rec.controls), "collected_at": rec.subs_at}

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "organization": self.organization,
                "options": {"empty_style": self.empty_style, "purpose_shape": self.purpose_shape,
                            "topic_shape": self.topic_shape,
                            "rate_limit": list(self.rate_limit) if self.rate_limit else None,
                            "consent_empty": self.consent_empty, "subscriptions_empty": self.subscriptions_empty,
                            "hide_topics": list(self.hide_topics), "error_identities": list(self.error_identities),
                            "error_share": self.error_share, "error_style": self.error_style,
                            "update_mode": self.update_mode,
                            "edge_style": self.edge_style, "refused_identities": list(self.refused_identities),
                            "unknown_identity": self.unknown_identity, "default_topics": self.default_topics,
                            "default_controls": self.default_controls,
                            "require_legal_basis": self.require_legal_basis},
                "records": [_record_to_dict(r) for r in self._records],
                "rights": list(self.rights),
            }

    @_hybrid
    def from_dict(cls: "type[KetchSim]", self: "KetchSim | None", data: dict[str, Any], **kwargs: Any) -> "KetchSim":
        """On the class: a new simulator from `data` (kwargs override its options).
        On an instance: replace this simulator's records and rights with `data`'s."""
        if self is None:
            opts = dict(data.get("options") or {})
            if opts.get("rate_limit"):
                opts["rate_limit"] = tuple(opts["rate_limit"])
            self = cls(**{"organization": data.get("organization", "acme"), **opts, **kwargs})
        self._load_records(data)
        return self

    def _load_records(self, data: dict[str, Any]) -> None:
        with self.lock:
            self._records, self._index = [], {}
            for item in data.get("records", []):
                rec = _record_from_dict(item)
                self._records.append(rec)
                for space, value in rec.identities:
                    self._index.setdefault(identity_key(space, value), rec)
            self.rights = list(data.get("rights", []))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True), encoding="utf-8")

    @_hybrid
    def load(cls, self: "KetchSim | None", path: str | Path, **kwargs: Any) -> "KetchSim":
        """On the class: a new simulator from a saved file. On an instance: load in place."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_dict(data, **kwargs) if self is None else self.from_dict(data)


# -- request body readers ------------------------------------------------------------------
def _value_key(value: str) -> str:
    """An identity value as error_identities match it: emails trimmed and lower-cased."""
    return value.strip().lower() if "@" in value else value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _status(value: Any, where: str) -> str:
    if value not in _STATUSES:
        raise BadRequest(f"{where}.status must be granted or denied, got {value!r}")
    return value


def _read_purposes(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("purposes must be an object")
    out = {}
    for code, item in raw.items():
        allowed = item.get("allowed") if isinstance(item, dict) else item
        if allowed not in ("true", "false"):
            raise BadRequest(f"purposes.{code}.allowed must be \"true\" or \"false\", got {allowed!r}")
        basis = item.get("legalBasisCode") if isinstance(item, dict) else None
        out[code] = {"allowed": allowed == "true", "legalBasisCode": basis}
    return out


def _read_topics(raw: Any) -> Topics:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("topics must be an object")
    out: Topics = {}
    for topic, chans in raw.items():
        if not isinstance(chans, dict):
            raise BadRequest(f"topics.{topic} must be an object")
        if "status" in chans and not isinstance(chans["status"], dict):
            out[(topic, None)] = _status(chans["status"], f"topics.{topic}")
            continue
        for ch, setting in chans.items():
            status = setting.get("status") if isinstance(setting, dict) else None
            out[(topic, ch)] = _status(status, f"topics.{topic}.{ch}")
    return out


def _read_controls(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("controls must be an object")
    out = {}
    for code, setting in raw.items():
        status = setting.get("status") if isinstance(setting, dict) else None
        out[code] = _status(status, f"controls.{code}")
    return out


def _record_to_dict(rec: _Record) -> dict[str, Any]:
    consent = None if rec.purposes is None else {"purposes": rec.purposes, "collectedAt": rec.consent_at}
    subs = None if rec.topics is None else {
        "topics": [[t, ch, st] for (t, ch), st in rec.topics.items()],
        "controls": rec.controls, "collectedAt": rec.subs_at}
    return {"identities": [list(p) for p in rec.identities], "consent": consent, "subscriptions": subs}


def _record_from_dict(item: dict[str, Any]) -> _Record:
    rec = _Record(identities=[(s, v) for s, v in item["identities"]])
    if item.get("consent") is not None:
        rec.purposes = {c: dict(p) for c, p in item["consent"]["purposes"].items()}
        rec.consent_at = item["consent"].get("collectedAt")
    if item.get("subscriptions") is not None:
        subs = item["subscriptions"]
        rec.topics = {(t, ch): st for t, ch, st in subs["topics"]}
        rec.controls = dict(subs.get("controls", {}))
        rec.subs_at = subs.get("collectedAt")
    return rec
