"""BrazeClient against small `httpx.MockTransport` handlers: shapes, chunking, errors."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qs

import httpx
import pytest

from reconcile.clients.braze import BrazeClient, message_url
from reconcile.clients.pacing import RetryPolicy
from reconcile.config import BrazeConfig, RateLimit
from reconcile.errors import (
    AuthError, DataError, FatalApiError, NotFound, PermissionDenied, RateLimited, UnconfirmedWrite,
)

KEY = "test-key-0123456789"
CFG = BrazeConfig(rest_endpoint="https://rest.example.braze.com", max_retries=2, backoff_cap_seconds=1)


class Api:
    """Records requests and answers with `answer(request) -> (status, body)`."""

    def __init__(self, answer: Callable[[httpx.Request], tuple[int, Any]]):
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answer(request)
        if isinstance(body, (bytes, str)):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]

    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(r.url.query.decode()) for r in self.requests]


def client(api: Api, cfg: BrazeConfig = CFG, **kw: Any) -> BrazeClient:
    now = [1_700_000_000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return BrazeClient(cfg, KEY, transport=httpx.MockTransport(api), sleep=sleep, clock=lambda: now[0],
                       rng=random.Random(0), **kw)


def ok(body: Any = None, status: int = 200) -> Callable[[httpx.Request], tuple[int, Any]]:
    return lambda request: (status, {"message": "success"} if body is None else body)


# -- transport basics ------------------------------------------------------------------------
def test_sends_bearer_key_json_and_base_url():
    api = Api(ok(status=201))
    client(api).email_blocklist(["a@x.com"])
    req = api.requests[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert str(req.url) == "https://rest.example.braze.com/email/blocklist"
    assert api.bodies() == [{"email": ["a@x.com"]}]


def test_repr_hides_the_key():
    c = client(Api(ok()))
    assert KEY not in repr(c) and "rest.example.braze.com" in repr(c)


def test_message_url_drops_identifiers_and_secrets():
    url = "https://u:p@rest.x/subscription/status/get?subscription_group_id=g&email%5B%5D=a%40x.com&api_key=k"
    assert message_url(url) == "https://rest.x/subscription/status/get?subscription_group_id=g&api_key=%2A%2A%2A"


# -- export -----------------------------------------------------------------------------------
def test_export_ids_chunks_at_50_and_merges():
    def answer(request):
        ids = json.loads(request.content)["external_ids"]
        return 200, {"message": "success", "users": [{"external_id": i} for i in ids if not i.endswith("7")],
                     "invalid_user_ids": [i for i in ids if i.endswith("7")]}

    api = Api(answer)
    result = client(api).export_ids((f"u{i}" for i in range(101)), ["external_id", "email_subscribe"])
    sizes = [len(b["external_ids"]) for b in api.bodies()]
    assert sizes == [50, 50, 1] and result.requests_sent == 3
    assert all(b["fields_to_export"] == ["external_id", "email_subscribe"] for b in api.bodies())
    assert len(result.users) + len(result.invalid_user_ids) == 101
    assert "u7" in result.invalid_user_ids


def test_export_fast_mode_uses_fast_budget_unless_slow_fields():
    c = client(Api(ok({"message": "success", "users": []})), replace(CFG, export_fast_mode=True))
    c.export_ids(["a"], ["email"])
    c.export_ids(["a"], ["email", "campaigns_received"])
    assert c._pacer.budget("users_export_ids_fast").sent == 1
    assert c._pacer.budget("users_export_ids").sent == 1


def test_export_without_users_but_with_invalid_ids_is_empty():
    api = Api(ok({"message": "success", "invalid_user_ids": ["a"]}))
    result = client(api).export_ids(["a"], ["email"])
    assert result.users == [] and result.invalid_user_ids == ["a"]


@pytest.mark.parametrize("body", [{"message": "success"}, b"<html>oops</html>", {"users": "nope"}])
def test_export_malformed_answer_names_endpoint_and_field(body):
    with pytest.raises(FatalApiError) as info:
        client(Api(lambda r: (200, body))).export_ids(["a"], ["email"])
    assert "/users/export/ids" in str(info.value) and "'users'" in str(info.value)


def test_export_email_sends_one_email_and_fields():
    api = Api(ok({"message": "success", "users": [{"external_id": "1"}, {"external_id": "2"}]}))
    users = client(api).export_email("A@x.com", ["external_id"])
    assert len(users) == 2 and api.bodies() == [{"email_address": "A@x.com", "fields_to_export": ["external_id"]}]


def test_export_needs_fields():
    with pytest.raises(ValueError):
        client(Api(ok())).export_ids(["a"], [])


# -- subscription status get -----------------------------------------------------------------
def test_status_get_lowercases_and_marks_missing_unknown():
    def answer(request):
        ids = parse_qs(request.url.query.decode())["external_id[]"]
        return 200, {"status": {i: ("Subscribed" if i.endswith("1") else "Unsubscribed") for i in ids[:-1]},
                     "message": "success"}

    api = Api(answer)
    out = client(api).subscription_status_get("g1", external_ids=[f"u{i}" for i in range(60)])
    ids = [f"u{i}" for i in range(60)]
    # the two chunks are read concurrently (read_concurrency), so they may arrive in either order
    assert sorted(q["external_id[]"] for q in api.queries()) == [ids[:50], ids[50:]]
    assert all(q["subscription_group_id"] == ["g1"] for q in api.queries())
    assert out["u1"] == "subscribed" and out["u0"] == "unsubscribed"
    assert out["u49"] == "unknown" and out["u59"] == "unknown" and len(out) == 60


def test_status_get_matches_emails_case_insensitively():
    api = Api(ok({"status": {"a@x.com": "Unsubscribed", "b@x.com": "Unknown"}, "message": "success"}))
    out = client(api).subscription_status_get("g", emails=["A@X.com", "b@x.com"])
    assert out == {"A@X.com": "unsubscribed", "b@x.com": "unknown"}
    assert api.queries()[0]["email[]"] == ["A@X.com", "b@x.com"]


@pytest.mark.parametrize("status", [200, 400, 404])
def test_status_get_user_not_found_is_unknown(status):
    def answer(request):
        ids = parse_qs(request.url.query.decode())["external_id[]"]
        if "ghost" in ids:
            return status, {"message": "User not found"}
        return 200, {"status": {i: "Subscribed" for i in ids}, "message": "success"}

    out = client(Api(answer)).subscription_status_get("g", external_ids=["a", "ghost", "b", "c"])
    assert out == {"a": "subscribed", "ghost": "unknown", "b": "subscribed", "c": "subscribed"}


def test_status_get_plain_404_is_not_found():
    with pytest.raises(NotFound):
        client(Api(lambda r: (404, {"message": "404 Not Found"}))).subscription_status_get("g", external_ids=["a"])


# -- subscription user status ----------------------------------------------------------------
def test_user_status_documented_shape_paginates_per_identifier():
    groups = [{"subscription_group_id": f"g{i}", "subscription_status": "Subscribed"} for i in range(130)]

    def answer(request):
        q = parse_qs(request.url.query.decode())
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        page = groups[offset:offset + limit] if q["external_id[]"] == ["u1"] else groups[:1]
        return 200, {"success": True, "subscription_groups": page}

    api = Api(answer)
    records = client(api).subscription_user_status(external_ids=["u1", "u2"])
    assert len([r for r in records if r["identifier"] == "u1"]) == 130
    assert [r for r in records if r["identifier"] == "u2"] == [{"identifier": "u2", "group_id": "g0",
                                                                "status": "subscribed"}]
    assert all(q["limit"] == ["100"] for q in api.queries())


def test_user_status_community_shape_attributes_users():
    body = {"message": "success", "total_count": 2, "users": [
        {"external_id": None, "email": "a@x.com", "phone": None,
         "subscription_groups": [{"id": "g1", "name": "N", "channel": "email", "status": "Unsubscribed"}]},
        {"external_id": "7", "email": "b@x.com", "phone": None,
         "subscription_groups": [{"id": "g2", "channel": "email", "status": "Subscribed"}]}]}
    api = Api(ok(body))
    records = client(api).subscription_user_status(emails=["A@x.com", "B@X.COM"])
    assert records == [{"identifier": "A@x.com", "group_id": "g1", "status": "unsubscribed"},
                       {"identifier": "B@X.COM", "group_id": "g2", "status": "subscribed"}]
    assert len(api.requests) == 1


# -- subscription status set -----------------------------------------------------------------
def test_status_set_chunks_one_identifier_type_per_request():
    api = Api(ok(status=201))
    result = client(api).subscription_status_set("g", "unsubscribed", external_ids=[f"u{i}" for i in range(51)],
                                                 emails=["a@x.com"])
    bodies = api.bodies()
    assert [sorted(b) for b in bodies] == [["external_id", "subscription_group_id", "subscription_state"]] * 2 + [
        ["email", "subscription_group_id", "subscription_state"]]
    assert [len(b.get("external_id", b.get("email"))) for b in bodies] == [50, 1, 1]
    assert result.requests_sent == 3 and len(result.ok) == 52 and result.rejected == []
    assert result.responses[0].status == 201 and result.responses[0].message == "success"


def test_status_set_rejects_bad_state():
    with pytest.raises(ValueError):
        client(Api(ok())).subscription_status_set("g", "opted_in", external_ids=["a"])


def test_status_set_v2_regroups_items():
    api = Api(ok(status=201))
    groups = [{"subscription_group_id": "g1", "subscription_state": "unsubscribed",
               "external_ids": [f"u{i}" for i in range(30)], "emails": ["a@x.com"]},
              {"subscription_group_id": "g2", "subscription_state": "subscribed", "phones": ["+15550100"],
               "use_double_opt_in_logic": False}]
    result = client(api).subscription_status_set_v2(groups)
    entries = [e for b in api.bodies() for e in b["subscription_groups"]]
    assert sum(len(e.get("external_ids", [])) for e in entries) == 30
    assert {"subscription_group_id": "g2", "subscription_state": "subscribed", "use_double_opt_in_logic": False,
            "phones": ["+15550100"]} in entries
    assert all(not ("emails" in e and "phones" in e) for e in entries)
    assert len(result.ok) == 32 and result.requests_sent == 1


def test_status_set_v2_refuses_emails_with_phones():
    with pytest.raises(ValueError):
        client(Api(ok())).subscription_status_set_v2([{"subscription_group_id": "g", "subscription_state":
                                                       "subscribed", "emails": ["a@x.com"], "phones": ["+1"]}])


# -- users/track -----------------------------------------------------------------------------
def test_track_maps_per_array_index_back_to_the_caller_object():
    def answer(request):
        attrs = json.loads(request.content)["attributes"]
        errors = [{"type": "BAD_EMAIL_SUBSCRIPTION_STATE", "input_array": "attributes", "index": i}
                  for i, a in enumerate(attrs) if a["email_subscribe"] == "maybe"]
        return 201, {"message": "success", "attributes_processed": len(attrs) - len(errors), "errors": errors}

    objs = [{"external_id": f"u{i}", "email_subscribe": "maybe" if i in (3, 80) else "unsubscribed"}
            for i in range(100)]
    api = Api(answer)
    result = client(api, replace(CFG, track_batch_size=75)).users_track(objs)
    assert [len(b["attributes"]) for b in api.bodies()] == [75, 25]
    assert result.rejected == [(objs[3], "BAD_EMAIL_SUBSCRIPTION_STATE"), (objs[80], "BAD_EMAIL_SUBSCRIPTION_STATE")]
    assert len(result.ok) == 98 and objs[3] not in result.ok
    assert result.attributes_processed == 98


def test_track_fatal_400_with_indexes_resends_the_rest():
    def answer(request):
        attrs = json.loads(request.content)["attributes"]
        bad = [i for i, a in enumerate(attrs) if "external_id" not in a]
        if bad:
            return 400, {"message": "Valid data must be provided", "errors": [
                {"type": "'external_id' ... is required", "input_array": "attributes", "index": i} for i in bad]}
        return 201, {"message": "success", "attributes_processed": len(attrs)}

    objs = [{"external_id": "a"}, {"email_subscribe": "unsubscribed"}, {"external_id": "b"}]
    api = Api(answer)
    result = client(api).users_track(objs)
    assert result.ok == [objs[0], objs[2]] and [o for o, _ in result.rejected] == [objs[1]]
    assert result.requests_sent == 2


def test_track_unattributed_errors_split_to_isolate():
    def answer(request):
        attrs = json.loads(request.content)["attributes"]
        if any(a.get("bad") for a in attrs):
            return 201, {"message": "success", "errors": ["something was wrong"]}
        return 201, {"message": "success"}

    objs = [{"external_id": f"u{i}", "bad": i == 5} for i in range(8)]
    result = client(Api(answer)).users_track(objs)
    assert result.rejected == [(objs[5], "something was wrong")] and len(result.ok) == 7


def test_track_limit_error_is_fatal_not_split():
    api = Api(lambda r: (400, {"message": "Max Input Length Exceeded"}))
    with pytest.raises(FatalApiError) as info:
        client(api).users_track([{"external_id": str(i)} for i in range(10)])
    assert len(api.requests) == 1 and "Max Input Length Exceeded" in str(info.value)


# -- users/delete and alias ------------------------------------------------------------------
def test_delete_one_type_per_request_and_counts():
    def answer(request):
        body = json.loads(request.content)
        return 200, {"deleted": len(next(iter(body.values())))}

    api = Api(answer)
    result = client(api).users_delete(external_ids=[f"u{i}" for i in range(55)], emails=["a@x.com"],
                                      prioritization=["identified", "most_recently_updated"])
    bodies = api.bodies()
    assert [list(b) for b in bodies] == [["external_ids"], ["external_ids"], ["email_addresses"]]
    assert bodies[2]["email_addresses"] == [{"email": "a@x.com",
                                             "prioritization": ["identified", "most_recently_updated"]}]
    assert result.deleted == 56 and len(result.ok) == 56


@pytest.mark.parametrize("prio", [(), ("identified", "unidentified"), ("newest",)])
def test_delete_by_email_needs_valid_prioritization(prio):
    with pytest.raises(ValueError):
        client(Api(ok())).users_delete(emails=["a@x.com"], prioritization=prio)


def test_alias_new_chunks_at_50():
    api = Api(ok({"aliases_processed": 1, "message": "success"}, 201))
    aliases = [{"alias_name": f"a{i}", "alias_label": "ketch"} for i in range(120)]
    result = client(api).users_alias_new(aliases)
    assert [len(b["user_aliases"]) for b in api.bodies()] == [50, 50, 20] and len(result.ok) == 120


# -- email -----------------------------------------------------------------------------------
def emails_api(rows: list[dict], key: str = "unsubscribed_at") -> Api:
    def answer(request):
        q = parse_qs(request.url.query.decode())
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        return 200, {"emails": [{"email": r["email"], key: r["at"]} for r in rows[offset:offset + limit]],
                     "message": "success"}
    return Api(answer)


def test_unsubscribes_paginate_at_500_with_tz_aware_times():
    rows = [{"email": f"e{i}@x.com", "at": "2024-03-01T10:00:00Z"} for i in range(1000)]
    api = emails_api(rows)
    out = list(client(api).email_unsubscribes(date(2024, 1, 1), date(2024, 4, 1)))
    assert len(out) == 1000 and len(api.requests) == 3
    assert out[0]["unsubscribed_at"] == datetime(2024, 3, 1, 10, tzinfo=timezone.utc)
    q = api.queries()[2]
    assert q["offset"] == ["1000"] and q["limit"] == ["500"] and q["start_date"] == ["2024-01-01"]
    assert q["end_date"] == ["2024-04-01"]


def test_hard_bounces_parse_other_time_formats():
    rows = [{"email": "a@x.com", "at": "2020-07-10 15:00:00.000 UTC"}, {"email": "b@x.com", "at": "2020-07-10"}]
    out = list(client(emails_api(rows, "hard_bounced_at")).email_hard_bounces(date(2020, 1, 1), date(2021, 1, 1)))
    assert [r["hard_bounced_at"] for r in out] == [datetime(2020, 7, 10, 15, tzinfo=timezone.utc),
                                                   datetime(2020, 7, 10, tzinfo=timezone.utc)]


def test_unsubscribes_loop_guard_on_repeated_page():
    page = {"emails": [{"email": f"e{i}@x.com", "unsubscribed_at": "2024-03-01T10:00:00Z"} for i in range(500)],
            "message": "success"}
    api = Api(ok(page))
    with pytest.raises(DataError, match="repeats"):
        list(client(api).email_unsubscribes(date(2024, 1, 1), date(2024, 4, 1)))
    assert len(api.requests) == 2


def test_unsubscribes_loop_guard_on_page_count():
    rows = [{"email": f"e{i}@x.com", "at": "2024-03-01T10:00:00Z"} for i in range(5000)]
    with pytest.raises(DataError, match="more than 3 pages"):
        list(client(emails_api(rows), max_pages=3).email_unsubscribes(date(2024, 1, 1), date(2024, 4, 1)))


def test_unsubscribes_for_one_email_is_one_request():
    api = Api(ok({"emails": [{"email": "a@x.com", "unsubscribed_at": "2024-03-01T10:00:00+00:00"}]}))
    out = list(client(api).email_unsubscribes(date(2024, 1, 1), date(2024, 4, 1), email="a@x.com"))
    assert len(out) == 1 and api.queries()[0]["email"] == ["a@x.com"] and "offset" not in api.queries()[0]


def test_unsubscribes_bad_window_fails_before_any_request():
    api = Api(ok())
    with pytest.raises(ValueError):
        client(api).email_unsubscribes(date(2024, 2, 1), date(2024, 1, 1))
    assert api.requests == []


def test_unsubscribe_row_without_time_is_malformed():
    api = Api(ok({"emails": [{"email": "a@x.com"}], "message": "success"}))
    with pytest.raises(FatalApiError, match="unsubscribed_at"):
        list(client(api).email_unsubscribes(date(2024, 1, 1), date(2024, 4, 1)))


def test_blocklist_split_isolates_one_bad_email_among_50():
    def answer(request):
        emails = json.loads(request.content)["email"]
        if "bad@@x" in emails:
            return 400, {"message": "Bad Request", "errors": ["invalid email address"]}
        return 201, {"message": "success"}

    emails = [f"e{i}@x.com" for i in range(49)] + ["bad@@x"]
    api = Api(answer)
    result = client(api).email_blocklist(emails)
    assert result.rejected == [("bad@@x", "Bad Request - invalid email address")]
    assert sorted(result.ok) == sorted(emails[:49])
    assert len(api.requests) <= 2 * 6 + 1 and result.requests_sent == len(api.requests)


def test_email_status_body_dedupes_and_checks_state():
    api = Api(ok(status=201))
    result = client(api).email_status(["a@x.com", "a@x.com", "b@x.com"], "opted_in")
    assert api.bodies() == [{"email": ["a@x.com", "b@x.com"], "subscription_state": "opted_in"}]
    assert result.ok == ["a@x.com", "b@x.com"]
    with pytest.raises(ValueError):
        client(api).email_status(["a@x.com"], "maybe")


def test_empty_2xx_body_does_not_confirm_a_write():
    with pytest.raises(UnconfirmedWrite):
        client(Api(lambda r: (201, None))).email_status(["a@x.com"], "opted_in")


# -- error mapping ---------------------------------------------------------------------------
@pytest.mark.parametrize("status, error", [(401, AuthError), (403, PermissionDenied), (404, NotFound),
                                           (409, FatalApiError), (413, FatalApiError)])
def test_error_mapping(status, error):
    api = Api(lambda r: (status, {"message": f"nope {status}"}))
    with pytest.raises(error) as info:
        client(api).users_alias_new([{"alias_name": "a", "alias_label": "b"}])
    assert info.value.status_code == status and "/users/alias/new" in str(info.value)
    assert KEY not in str(info.value) and len(api.requests) == 1


def test_429_then_success_waits_for_reset():
    clock = [1_700_000_000.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    answers = iter([(429, {"X-RateLimit-Reset": str(int(clock[0]) + 9)}), (201, {})])

    def handler(request):
        status, headers = next(answers)
        return httpx.Response(status, headers=headers, json={"message": "success"})

    c = BrazeClient(CFG, KEY, transport=httpx.MockTransport(handler), sleep=sleep, clock=lambda: clock[0])
    assert c.email_blocklist(["a@x.com"]).ok == ["a@x.com"]
    assert sleeps == [9]


def test_config_rate_limits_pace_requests():
    clock = [1000.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    cfg = replace(CFG, rate_limits={**CFG.rate_limits, "users_identity": RateLimit(2, 60)})
    c = BrazeClient(cfg, KEY, transport=httpx.MockTransport(Api(ok())), sleep=sleep, clock=lambda: clock[0])
    c.users_alias_new([{"alias_name": str(i), "alias_label": "l"} for i in range(150)])
    assert sleeps == [20]


def test_threads_share_one_budget_without_exceeding_it():
    lock = threading.Lock()
    clock = [1000.0]
    sent_at: list[float] = []

    def sleep(s: float) -> None:
        with lock:
            clock[0] = max(clock[0], clock[0] + min(s, 1.0))

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            sent_at.append(clock[0])
        return httpx.Response(201, json={"message": "success"})

    cfg = replace(CFG, rate_limits={**CFG.rate_limits, "shared": RateLimit(5, 10)})
    c = BrazeClient(cfg, KEY, transport=httpx.MockTransport(handler), sleep=sleep, clock=lambda: clock[0])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: c.email_blocklist([f"e{i}@x.com"]), range(40)))
    assert all(r.ok for r in results) and len(sent_at) == 40
    per_window = Counter(int(t // 10) for t in sent_at)
    assert max(per_window.values()) <= 5


def test_rate_wait_bound_comes_from_the_retry_policy():
    answer = lambda r: (429, {"message": "429 Rate Limited"})  # noqa: E731
    api = Api(answer)
    policy = RetryPolicy(max_rate_limited=2)
    with pytest.raises(RateLimited):
        client(api, retry_policy=policy).email_blocklist(["a@x.com"])
    assert len(api.requests) == 3


@pytest.mark.parametrize("answer", [{"status": {}, "message": "success"},
                                    {"status": {"a@x.com": "Pending"}, "message": "success"}])
def test_a_status_answer_naming_nobody_or_an_unknown_state_is_malformed(answer):
    from reconcile.errors import DataError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    with BrazeClient(BrazeConfig(rest_endpoint="https://rest.iad-01.braze.com"), "k",
                     transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DataError) as err:
            client.subscription_status_get("g", emails=["a@x.com", "b@x.com"])
    assert "a@x.com" not in str(err.value)
