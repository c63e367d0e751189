"""The Braze REST API client: batching at documented limits, pacing, error mapping.

Every request goes through one `Pacer` (see `pacing.py`): per-endpoint-class rate
budgets, `X-RateLimit-*` headers, 429 waits and backoff on 5xx/timeouts; the shared
class is capped at `budget_share` of its limit, and `usage()` reports the use per class.
Reads split into several requests (status/get, user/status, export chunks, addresses)
keep up to `read_concurrency` of them in flight on the client's threads, results in
order. `/users/export/ids` is paced per `export_fast_mode` (see `_export`). Callers pass
any number of identifiers; the client chunks them at Braze's limits (50 ids, 75 track
objects, 500 rows per email page). Errors map as:

    401 AuthError · 403 PermissionDenied · 404 NotFound · other 4xx FatalApiError
    429 / 5xx / timeout / connection error, retries spent -> TransientApiError (RateLimited)
    2xx body without a documented field -> FatalApiError naming endpoint and field
    2xx to a write without Braze's success marker (HTML, not JSON) -> UnconfirmedWrite
    an answer over braze.max_body_bytes (as sent or decompressed), a certificate that
    fails verification -> FatalApiError with the reason, never retried

Every try is bounded (`resilience.send_bounded`): the body is read at most
`max_body_bytes` as sent and after gzip/deflate, and the whole try (connect, send, read
every byte) ends at `timeout_seconds`, so a trickling answer is cut off and retried.

A write batch refused as a whole with a 400 (not a limit error) is split in halves until
the bad items are isolated; they come back in `WriteResult.rejected` while the good ones
go through. Errors carrying a per-array `index` (`/users/track`, `/users/alias/new`) are
mapped straight back to the caller's object; a 2xx answer with `errors` that name no
index is resolved by the same splitting.

`/users/track` takes 75 objects on most contracts and 50 on others: any 400 to a batch of
more than 50 objects ("Max Input Length Exceeded", or other wording) is split to 50 and
resent, and the client keeps sending 50 from then on (one warning names
`braze.track_batch_size`).

The engine calls the intent-named writes (`unsubscribe_groups`, `set_global_state`,
`delete_profiles`, `blocklist_emails`, `create_alias_optouts`, `braze_writes.py`), whose
`rejected` pairs are `(identifier, reason)`; `user_profiles_by_email` (`braze_profiles.py`)
and `export_segment` (`braze_segment.py`) are reads built the same way.
Messages carry sanitized URLs without identifiers, emails masked, and never the API key.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import date
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from reconcile.clients.tls import verified_context
from reconcile.clients import braze_results as br
from reconcile.clients.braze_profiles import ProfileReads
from reconcile.clients.braze_results import BatchRefused, ExportResult, LimitExceeded, TrackResult, WriteResult
from reconcile.clients.braze_segment import SegmentExports
from reconcile.clients.braze_writes import IntentWrites
from reconcile.clients.pacing import BudgetBackend, Clock, Pacer, RequestLabel, RetryPolicy, Sleep
from reconcile.clients.resilience import Answered, send_bounded
from reconcile.clients.limits import MAX_IDS, MAX_TRACK_OBJECTS
from reconcile.config import BrazeConfig, RateLimit, has_control_chars
from reconcile.errors import AuthError, DataError, FatalApiError, NotFound, PermissionDenied, UnconfirmedWrite
from reconcile.redact import redact_text, sanitize_url

log = logging.getLogger(__name__)

CONTRACT_TRACK_OBJECTS = 50
USER_STATUS_LIMIT = 100
EMAIL_PAGE_LIMIT = 500
SLOW_EXPORT_FIELDS = frozenset({"campaigns_received", "canvases_received"})
PRIORITIES = frozenset({"identified", "unidentified", "most_recently_updated"})
_LIMIT_ERROR = re.compile(r"exceed|max(imum)?\s+(input|number)", re.IGNORECASE)
_IDENTIFIER_PARAM = re.compile(r"^(email|external_id|phone|braze_id)", re.IGNORECASE)
# Classes whose budget the workspace's other integrations share: `braze.budget_share` caps the job there.
SHARED_CLASSES = frozenset({"shared"})
EXPORT_PATH = "/users/export/ids"
T = TypeVar("T")
R = TypeVar("R")


class _Scrubber:
    """Masks the API key in text; its repr never shows the key."""

    def __init__(self, secret: str):
        self._secrets = [secret]

    def __call__(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def __repr__(self) -> str:
        return "_Scrubber(***)"


def chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


class Stopped(BaseException):
    """A call ended by `BrazeClient.stop()` (never sent, or not retried). A BaseException, like
    asyncio.CancelledError, so no retry loop or error mapping takes it for a failed request."""


def unique(values: Iterable[Any] | None) -> list[Any]:
    return list(dict.fromkeys(values or ()))


def message_url(url: httpx.URL | str) -> str:
    """The sanitized URL with identifier parameters (emails, ids) left out."""
    parts = urlsplit(sanitize_url(str(url)))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _IDENTIFIER_PARAM.match(k)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class BrazeClient(IntentWrites, ProfileReads, SegmentExports):
    """Sync Braze REST client; safe to share between a few threads."""

    def __init__(self, cfg: BrazeConfig, api_key: str, *, transport: httpx.BaseTransport | None = None,
                 sleep: Sleep = time.sleep, clock: Clock = time.time, rng: random.Random | None = None,
                 max_pages: int = 10_000, retry_policy: RetryPolicy | None = None,
                 interrupt_check: Callable[[], None] | None = None):
        key = api_key.strip().strip("\"'")
        if not key:
            raise ValueError("the Braze REST API key is empty")
        if has_control_chars(key):
            raise ValueError("the Braze REST API key holds a control character (a line break, tab or NUL); "
                             "set it again with the key alone on one line")
        self.cfg = cfg
        self.max_pages = max_pages
        self._scrub = _Scrubber(key)
        policy = retry_policy or RetryPolicy(max_retries=cfg.max_retries, backoff_cap_seconds=cfg.backoff_cap_seconds)
        self._stopped = threading.Event()
        self._interrupt_check = interrupt_check or (lambda: None)
        self._pacer = Pacer(cfg.rate_limits, policy, clock=clock, sleep=self._pausing(sleep), rng=rng,
                            scrub=self._scrub, shares={name: cfg.budget_share for name in SHARED_CLASSES})
        self._http = httpx.Client(base_url=cfg.rest_endpoint, transport=transport, timeout=cfg.timeout_seconds,
                                  verify=verified_context(),
                                  headers={"Authorization": f"Bearer {key}", "Accept": "application/json",
                                           "Accept-Encoding": "gzip, deflate"})
        self._transport, self._sleep, self._clock = transport, sleep, clock
        self._flat_user_status = False
        self._track_cap: int | None = None
        self._lock = threading.Lock()
        self._base_label = sanitize_url(str(self._http.base_url)).rstrip("/")
        self._export_class: str | None = None  # learned from the first export answer when export_fast_mode = "auto"
        self._export_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"BrazeClient(endpoint={sanitize_url(self.cfg.rest_endpoint)!r})"

    def stop(self) -> None:
        """From any thread: every call in progress or to come raises `Stopped` before its next
        send or at once from a wait for the rate limit, until `resume()`. Used to end a read
        early when the read beside it (Ketch's) failed."""
        self._stopped.set()

    def resume(self) -> None:
        self._stopped.clear()

    def _pausing(self, sleep: Sleep) -> Sleep:
        def pause(seconds: float) -> None:
            if self._stopped.is_set():
                raise Stopped("Braze read stopped")
            if sleep is time.sleep:  # in slices: a signal waiting to stop the run ends the wait
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0 and not self._stopped.wait(min(left, 0.2)):
                    self._interrupt_check()
            else:
                sleep(seconds)
            if self._stopped.is_set():
                raise Stopped("Braze read stopped")
        return pause

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def usage(self) -> dict[str, Any]:
        """Requests per rate class and endpoint, 429 answers, wait seconds (wall time a send
        was held back; `cap_wait_seconds` by the class's own window cap), the limits in force
        (`window_cap` is the job's share of the reported or configured limit), and the
        `/users/export/ids` class in use."""
        return {"classes": self._pacer.usage(), "export_class": self._export_class}

    def share_budget(self, backend: BudgetBackend | None) -> None:
        """Count every rate class's windows in `backend` too (the state store, shared by
        workers); None: in this process only."""
        self._pacer.set_backend(backend)

    def __enter__(self) -> "BrazeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------
    def request(self, klass: str, method: str, path: str, *, body: Any = None,
                params: list[tuple[str, Any]] | None = None) -> br.Answer:
        """One request of rate class `klass`, paced and retried like the job's own, its key
        scrubbed from every message (`reconcile doctor`'s permission probes)."""
        return self._call(klass, method, path, body=body, params=params)

    def _call(self, klass: str, method: str, path: str, *, body: Any = None,
              params: list[tuple[str, Any]] | None = None,
              seen: Callable[[httpx.Response], None] | None = None, final: frozenset[int] = frozenset()) -> br.Answer:
        """One request, paced and retried; `final`: statuses raised at once, never retried."""
        request = self._http.build_request(method, path, json=body, params=params)
        label = RequestLabel("braze", method, self._label_url(path, params))
        response = self._pacer.send(klass, lambda: self._send(request), label, path, final=final)
        decoded = _decode(response)
        message = br.mask_emails(self._scrub(br.body_message(decoded, response.text)))
        if 200 <= response.status_code < 300:
            if seen is not None:
                seen(response)
            return br.Answer(response.status_code, decoded, message, label.url)
        raise self._error(response.status_code, decoded, message, label)

    def _label_url(self, path: str, params: list[tuple[str, Any]] | None) -> str:
        """`message_url` of the request, from its path and its few non-identifier parameters
        (the identifiers, up to 50 of them, are never encoded twice or parsed back)."""
        kept = [(k, v) for k, v in params or () if not _IDENTIFIER_PARAM.match(k)]
        url = f"{self._base_label}{path}"
        return sanitize_url(f"{url}?{urlencode(kept)}") if kept else url

    def _send(self, request: httpx.Request) -> httpx.Response:
        """One try: the answer read whole, at most `max_body_bytes` as sent and decompressed,
        within `timeout_seconds` overall."""
        if self._stopped.is_set():
            raise Stopped("Braze read stopped")
        return send_bounded(self._http, request, limit=self.cfg.max_body_bytes,
                            deadline_seconds=self.cfg.timeout_seconds)

    def _error(self, status: int, body: Any, message: str, label: RequestLabel) -> FatalApiError:
        where: Answered = {"service": label.service, "method": label.method, "url": label.url,
                           "status_code": status, "body": message}
        if status == 400 and not _LIMIT_ERROR.search(message):
            return BatchRefused("request refused", errors=br.answer_errors(body), **where)
        if status == 400:
            return LimitExceeded("over a documented Braze limit", **where)
        if status == 401:
            return AuthError("unauthorized: check the REST API key and that rest_endpoint is its instance", **where)
        if status == 403:
            return PermissionDenied("forbidden: the key lacks this endpoint's permission or the account is inactive",
                                    **where)
        if status == 404:
            return NotFound("not found", **where)
        return FatalApiError("request failed", **where)

    # -- batched writes ---------------------------------------------------------------
    def _write(self, result: WriteResult, klass: str, items: Sequence[Any], size: int,
               build: Callable[[list[Any]], dict[str, Any]]) -> WriteResult:
        for chunk in chunked(items, size):
            self._send_batch(result, klass, chunk, build)
        return result

    def _send_batch(self, result: WriteResult, klass: str, chunk: list[Any],
                    build: Callable[[list[Any]], dict[str, Any]]) -> None:
        try:
            answer = self._call(klass, "POST", result.endpoint, body=build(chunk))
        except (BatchRefused, LimitExceeded) as exc:
            if self._lower_track_cap(result, chunk, exc):
                for part in chunked(chunk, CONTRACT_TRACK_OBJECTS):
                    self._send_batch(result, klass, part, build)
                return
            if not isinstance(exc, BatchRefused):
                raise
            result.record(400, exc.body, len(chunk))
            outcome = br.refuse_items(chunk, exc)
        else:
            self._confirm(result.endpoint, answer)
            result.record(answer.status, answer.message, len(chunk))
            outcome = br.accept_items(chunk, answer, result)
        result.rejected.extend(outcome.rejected)
        if outcome.retry:
            log.debug("braze %s: batch of %d, %d rejected, %d to send again", result.endpoint, len(chunk),
                      len(outcome.rejected), len(outcome.retry))
        for part in br.resend_parts(outcome, result):
            self._send_batch(result, klass, part, build)

    @staticmethod
    def _confirm(endpoint: str, answer: br.Answer) -> None:
        if not br.confirms(endpoint, answer.body):
            expected = "a numeric 'deleted' or " if endpoint == "/users/delete" else ""
            raise UnconfirmedWrite(
                f"the 2xx answer does not confirm the write (expected JSON with {expected}\"message\": \"success\"); "
                "the batch is not known to be applied and must be sent again",
                service="braze", status_code=answer.status, method="POST", url=answer.url, body=answer.message)

    def _lower_track_cap(self, result: WriteResult, chunk: list[Any], exc: FatalApiError) -> bool:
        """After any 400 to more than 50 track objects: send 50 from now on. Braze documents
        "Max Input Length Exceeded" for the contracts capped at 50, but a 400 in other words
        (or with an `errors` list naming the objects over the cap) is the same refusal, and
        50-object requests tell a real per-object error apart at the cost of one request."""
        if result.endpoint != "/users/track" or len(chunk) <= CONTRACT_TRACK_OBJECTS:
            return False
        with self._lock:
            first, self._track_cap = self._track_cap is None, CONTRACT_TRACK_OBJECTS
        if first:
            log.warning("braze /users/track refused %d objects with a 400 (%s): read as this contract's cap of %d "
                        "objects per request; sending %d from now on (set braze.track_batch_size = %d)",
                        len(chunk), (exc.body or "no message")[:120], CONTRACT_TRACK_OBJECTS, CONTRACT_TRACK_OBJECTS,
                        CONTRACT_TRACK_OBJECTS)
        return True

    def _track_size(self) -> int:
        size = max(1, min(self.cfg.track_batch_size, MAX_TRACK_OBJECTS))
        return min(size, self._track_cap) if self._track_cap is not None else size

    # -- exports ----------------------------------------------------------------------
    def export_ids(self, external_ids: Iterable[str], fields: Sequence[str]) -> ExportResult:
        """Profiles for any number of external ids (50 per request)."""
        fields_list, fast = self._export_fields(fields)
        result = ExportResult()
        answers = self._in_order(lambda chunk: self._export({"external_ids": chunk, "fields_to_export": fields_list},
                                                            fast), list(chunked(unique(external_ids), MAX_IDS)))
        for answer in answers:
            result.requests_sent += 1
            result.users.extend(br.export_users(answer))
            invalid = answer.body.get("invalid_user_ids")
            result.invalid_user_ids.extend(str(i) for i in (invalid if isinstance(invalid, list) else []))
        return result

    def export_email(self, email: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Every profile carrying `email` (one email per request)."""
        fields_list, fast = self._export_fields(fields)
        return br.export_users(self._export({"email_address": email, "fields_to_export": fields_list}, fast))

    def export_emails(self, emails: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """`export_email` of each distinct address, `read_concurrency` requests in flight;
        the profiles in the order of the addresses."""
        fields_list, fast = self._export_fields(fields)
        answers = self._in_order(lambda email: self._export({"email_address": email, "fields_to_export": fields_list},
                                                            fast), unique(emails))
        return [user for answer in answers for user in br.export_users(answer)]

    def _export_fields(self, fields: Sequence[str]) -> tuple[list[str], bool]:
        """The fields, and whether the request qualifies for the 40/s option."""
        fields_list = list(dict.fromkeys(fields))
        if not fields_list:
            raise ValueError("fields_to_export must name at least one field")
        return fields_list, not SLOW_EXPORT_FIELDS & set(fields_list)

    def _export(self, body: dict[str, Any], qualifies: bool) -> br.Answer:
        """One `/users/export/ids` request in the class it is paced in.

        export_fast_mode true: the 40/s class whenever the request qualifies; false: never.
        "auto": the first qualifying request goes alone in the 250/min class and its
        `X-RateLimit-Limit` decides for the rest: at most the 40/s class's limit means the
        option applies; up to the 250/min class's limit, that class; above it, a raised
        limit, paced at the reported number per the class's period."""
        mode = self.cfg.export_fast_mode
        if not qualifies or mode is False:
            return self._call("users_export_ids", "POST", EXPORT_PATH, body=body)
        if mode is True:
            return self._call("users_export_ids_fast", "POST", EXPORT_PATH, body=body)
        if self._export_class is None:
            with self._export_lock:
                if self._export_class is None:
                    return self._call("users_export_ids", "POST", EXPORT_PATH, body=body, seen=self._learn_export_class)
        return self._call(self._export_class, "POST", EXPORT_PATH, body=body)

    def _learn_export_class(self, response: httpx.Response) -> None:
        reported = _int_header(response.headers.get("x-ratelimit-limit"))
        limits = self.cfg.rate_limits
        fast, slow = limits.get("users_export_ids_fast"), limits.get("users_export_ids")
        if reported is None or fast is None or reported <= fast.requests:
            klass = "users_export_ids_fast"
        else:
            klass = "users_export_ids"
            if slow is not None and reported > slow.requests:
                self._pacer.set_limit(klass, RateLimit(reported, slow.per_seconds))
        log.info("braze %s: the workspace reports a limit of %s; exports paced in class %s", EXPORT_PATH,
                 reported if reported is not None else "(none)", klass)
        self._export_class = klass

    # -- concurrent reads -------------------------------------------------------------
    def _in_order(self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`work(item)` for every item, `read_concurrency` at once on the client's threads;
        results in the items' order. The first failure in that order stops what has not
        started, waits for what is in flight and is raised."""
        workers = max(1, int(self.cfg.read_concurrency))
        if workers == 1 or len(items) <= 1 or getattr(self._local, "worker", False):
            return [work(item) for item in items]
        pool = self._executor(workers)
        pending: deque[Future[R]] = deque()
        upcoming = iter(items)
        results: list[R] = []

        def submit() -> None:
            for item in upcoming:
                pending.append(pool.submit(self._as_worker, work, item))
                return

        for _ in range(2 * workers):
            submit()
        try:
            while pending:
                results.append(pending.popleft().result())
                submit()
        finally:
            for future in pending:
                future.cancel()
            wait(pending)
        return results

    def _as_worker(self, work: Callable[[T], R], item: T) -> R:
        self._local.worker = True
        return work(item)

    def _executor(self, workers: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="braze-read")
            return self._pool

    # -- subscription groups: read ----------------------------------------------------
    def subscription_status_get(self, group_id: str, *, external_ids: Iterable[str] | None = None,
                                emails: Iterable[str] | None = None,
                                phones: Iterable[str] | None = None) -> dict[str, str]:
        """identifier -> "subscribed" | "unsubscribed" | "unknown" for one group (phones in
        E.164, for SMS groups)."""
        out: dict[str, str] = {}
        chunks = [(id_field, chunk) for id_field, idents in _id_sets(external_id=external_ids, email=emails,
                                                                     phone=phones)
                  for chunk in chunked(idents, MAX_IDS)]
        for found in self._in_order(lambda c: self._status_chunk(group_id, *c), chunks):
            out.update(found)
        return out

    def _status_chunk(self, group_id: str, id_field: str, chunk: list[str]) -> dict[str, str]:
        params = [("subscription_group_id", group_id), *((f"{id_field}[]", i) for i in chunk)]
        try:
            answer = self._call("shared", "GET", "/subscription/status/get", params=params)
            body, url = answer.body, answer.url
        except FatalApiError as exc:
            if isinstance(exc, (AuthError, PermissionDenied)) or not br.is_user_not_found(exc.body):
                raise
            body, url = {"message": exc.body}, exc.url
        not_found = not (isinstance(body, Mapping) and "status" in body) and br.is_user_not_found(
            br.body_message(body))
        if not_found and len(chunk) > 1:
            half = len(chunk) // 2
            return {**self._status_chunk(group_id, id_field, chunk[:half]),
                    **self._status_chunk(group_id, id_field, chunk[half:])}
        if id_field == "phone" and isinstance(body, Mapping) and body.get("status") == {}:
            return {ident: "unknown" for ident in chunk}  # numbers no profile holds (yet) are not malformed
        return br.status_map(body, url, chunk, caseless=id_field == "email")

    def subscription_user_status(self, *, external_ids: Iterable[str] | None = None,
                                 emails: Iterable[str] | None = None) -> list[br.GroupRecord]:
        """Every recorded group state of the given users: {identifier, group_id, status}."""
        records: list[br.GroupRecord] = []
        chunks = [(id_field, chunk) for id_field, idents in _id_sets(external_id=external_ids, email=emails)
                  for chunk in chunked(idents, MAX_IDS)]
        for found in self._in_order(lambda c: self._user_status_chunk(*c), chunks):
            records.extend(found)
        return records

    def _user_status_chunk(self, id_field: str, chunk: list[str]) -> list[br.GroupRecord]:
        if self._flat_user_status and len(chunk) > 1:
            return [r for ident in chunk for r in self._user_status_chunk(id_field, [ident])]
        records: list[br.GroupRecord] = []
        attributable = True
        params = [(f"{id_field}[]", i) for i in chunk]
        for answer in self.pages("/subscription/user/status", params, USER_STATUS_LIMIT):
            page, _, ok = br.user_status_page(answer.body, answer.url, id_field, chunk)
            records.extend(page)
            attributable = attributable and ok
        if attributable:
            return records
        self._flat_user_status = True
        return self._user_status_chunk(id_field, chunk)

    # -- subscription groups: write ---------------------------------------------------
    def subscription_status_set(self, group_id: str, state: str, *, external_ids: Iterable[str] | None = None,
                                emails: Iterable[str] | None = None,
                                phones: Iterable[str] | None = None) -> WriteResult:
        """Set one group's state for any number of users (50 per request, one id type each;
        phones in E.164 for SMS groups, never together with emails)."""
        br.check_state(state, br.STATES)
        result = WriteResult("/subscription/status/set")
        for id_field, idents in _id_sets(external_id=external_ids, email=emails, phone=phones):
            def build(chunk: list[str], id_field: str = id_field) -> dict[str, Any]:
                return {"subscription_group_id": group_id, "subscription_state": state, id_field: chunk}
            self._write(result, "subscription_set", idents, MAX_IDS, build)
        return result

    def subscription_status_set_v2(self, groups: list[dict[str, Any]]) -> WriteResult:
        """`/v2/subscription/status/set`; `ok`/`rejected` hold one entry per (group, identifier)."""
        items = [item for group in groups for item in br.v2_items(group)]
        return self._write(WriteResult("/v2/subscription/status/set"), "subscription_set", items, MAX_IDS,
                           lambda chunk: {"subscription_groups": br.v2_entries(chunk)})

    # -- users ------------------------------------------------------------------------
    def users_track(self, attributes: list[dict[str, Any]]) -> TrackResult:
        """Send attribute objects in batches of `track_batch_size` (50 once the contract said so);
        per-object errors come back per item."""
        result = TrackResult("/users/track")
        items, start = list(attributes), 0
        while start < len(items):
            size = self._track_size()
            self._send_batch(result, "users_track", items[start:start + size], lambda chunk: {"attributes": chunk})
            start += size
        return result

    def users_delete(self, *, external_ids: Iterable[str] | None = None, braze_ids: Iterable[str] | None = None,
                     emails: Iterable[str] | None = None, prioritization: Sequence[str] = ()) -> WriteResult:
        """Queue profiles for deletion (irreversible); `deleted` sums Braze's counts."""
        emails_list = unique(emails)
        if emails_list:
            _check_prioritization(prioritization)
        prio = list(prioritization)
        result = WriteResult("/users/delete")
        builders: list[tuple[list[str], Callable[[list[str]], dict[str, Any]]]] = [
            (unique(external_ids), lambda c: {"external_ids": c}),
            (unique(braze_ids), lambda c: {"braze_ids": c}),
            (emails_list, lambda c: {"email_addresses": [{"email": e, "prioritization": prio} for e in c]}),
        ]
        for idents, build in builders:
            self._write(result, "users_identity", idents, MAX_IDS, build)
        return result

    def users_alias_new(self, aliases: list[dict[str, Any]]) -> WriteResult:
        """Create aliases (alias-only profiles when `external_id` is absent), 50 per request."""
        return self._write(WriteResult("/users/alias/new"), "users_identity", list(aliases), MAX_IDS,
                           lambda chunk: {"user_aliases": chunk})

    # -- email ------------------------------------------------------------------------
    def email_unsubscribes(self, start_date: date, end_date: date, *,
                           email: str | None = None) -> Iterator[dict[str, Any]]:
        """Globally unsubscribed emails in the window: {"email", "unsubscribed_at"}."""
        return self._email_rows("/email/unsubscribes", "unsubscribed_at", start_date, end_date, email)

    def email_hard_bounces(self, start_date: date, end_date: date, *,
                           email: str | None = None) -> Iterator[dict[str, Any]]:
        """Hard-bounced emails in the window: {"email", "hard_bounced_at"}."""
        return self._email_rows("/email/hard_bounces", "hard_bounced_at", start_date, end_date, email)

    def _email_rows(self, path: str, time_key: str, start: date, end: date,
                    email: str | None) -> Iterator[dict[str, Any]]:
        if start >= end:
            raise ValueError(f"start_date {start} must be before end_date {end}")
        params: list[tuple[str, Any]] = [("start_date", start.isoformat()), ("end_date", end.isoformat())]
        if email is not None:
            pages: Iterable[br.Answer] = [self._call("shared", "GET", path, params=[*params, ("email", email)])]
        else:
            pages = self.pages(path, [*params, ("sort_direction", "asc")], EMAIL_PAGE_LIMIT)
        return (row for answer in pages for row in br.email_rows(answer.body, answer.url, time_key))

    def email_blocklist(self, emails: Iterable[str]) -> WriteResult:
        """Unsubscribe and mark hard bounced (50 per request)."""
        return self._write(WriteResult("/email/blocklist"), "shared", unique(emails), MAX_IDS,
                           lambda chunk: {"email": chunk})

    def email_status(self, emails: Iterable[str], state: str) -> WriteResult:
        """Set global email state by address (50 per request)."""
        br.check_state(state, ("subscribed", "unsubscribed", "opted_in"))
        return self._write(WriteResult("/email/status"), "shared", unique(emails), MAX_IDS,
                           lambda chunk: {"email": chunk, "subscription_state": state})

    # -- pagination -------------------------------------------------------------------
    def pages(self, path: str, params: list[tuple[str, Any]], limit: int) -> Iterator[br.Answer]:
        """Offset pages until one is short; a repeated page or too many pages is a DataError."""
        previous: Any = None
        for page in range(self.max_pages):
            answer = self._call("shared", "GET", path, params=[*params, ("limit", limit), ("offset", page * limit)])
            size = br.page_size(answer)
            if size and answer.body == previous:
                raise DataError(f"braze {answer.url}: page {page + 1} repeats the previous page; pagination loops")
            yield answer
            if size < limit:
                return
            previous = answer.body
        raise DataError(f"braze {path}: more than {self.max_pages} pages of {limit}; pagination does not end")


# -- helpers: requests -----------------------------------------------------------------------
def _id_sets(**kinds: Iterable[str] | None) -> Iterator[tuple[str, list[str]]]:
    for id_field, values in kinds.items():
        idents = unique(values)
        if idents:
            yield id_field, idents


def _int_header(value: str | None) -> int | None:
    try:
        number = int(float(value)) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


def _check_prioritization(prioritization: Sequence[str]) -> None:
    prio = list(prioritization)
    if not prio or any(p not in PRIORITIES for p in prio) or {"identified", "unidentified"} <= set(prio):
        raise ValueError("deleting by email needs a prioritization: an ordered list of identified|unidentified|"
                         "most_recently_updated with at most one of identified/unidentified")


