"""Address-list paging in the simulator: the same pages as filtering and sorting every row,
found in the table's sorted view (rebuilt only after a change)."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.braze_checks import ListQuery
from reconcile.sandbox.braze_state import AddressTable, norm
from reconcile.sandbox.core import SimRequest

DAY0 = date(2024, 1, 1)
NOW = 1_714_560_000.0
AUTH = {"Authorization": "Bearer sandbox-rest-key"}


def reference(table: dict, stamp: str, query: ListQuery, email_wins: bool) -> list[dict]:
    """Every row filtered and sorted, then sliced: the paging the view must match."""
    rows = [dict(r) for r in table.values() if query.matches(r["email"], r[stamp], email_wins)]
    rows.sort(key=lambda r: (r[stamp], norm(r["email"])), reverse=query.descending)
    return rows[query.offset:query.offset + query.limit]


def request(start: int | None, span: int, limit: int, offset: int, direction: str | None,
            email: str | None) -> SimRequest:
    query: dict[str, list[str]] = {"end_date": [(DAY0 + timedelta(days=(start or 0) + span)).isoformat()],
                                   "limit": [str(limit)], "offset": [str(offset)]}
    if start is not None:
        query["start_date"] = [(DAY0 + timedelta(days=start)).isoformat()]
    if direction:
        query["sort_direction"] = [direction]
    if email is not None:
        query["email"] = [email]
    return SimRequest("GET", "/email/unsubscribes", query=query)


rows_strategy = st.dictionaries(
    st.integers(0, 40), st.tuples(st.integers(0, 30), st.integers(0, 86_399), st.booleans()), max_size=60)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=rows_strategy, start=st.one_of(st.none(), st.integers(0, 30)), span=st.integers(1, 20),
       limit=st.integers(1, 12), offset=st.integers(0, 30), direction=st.sampled_from([None, "asc", "desc"]),
       pick=st.one_of(st.none(), st.integers(0, 45)), bounces=st.booleans())
def test_pages_match_filtering_and_sorting_every_row(rows, start, span, limit, offset, direction, pick, bounces):
    sim = BrazeSim(clock=lambda: NOW)
    for n, (day, second, upper) in rows.items():
        address = f"User{n}@Example.com" if upper else f"user{n}@example.com"
        at = f"{DAY0 + timedelta(days=day)}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.000Z"
        (sim.add_hard_bounce if bounces else sim.add_unsubscribe)(address, at)
    email = None if pick is None else f"USER{pick}@example.com"
    if email is None and start is None:
        start = 0
    req = request(start, span, limit, offset, direction, email)
    if bounces:
        req.path = "/email/hard_bounces"
    req.headers = {"authorization": AUTH["Authorization"]}
    answer = sim.handle(req)
    table, stamp = (sim.db.hard_bounces, "hard_bounced_at") if bounces else (sim.db.unsubscribes, "unsubscribed_at")
    assert answer.status == 200
    assert answer.body["emails"] == reference(dict(table), stamp, ListQuery.parse(req), email_wins=bounces)


def test_the_sorted_view_is_rebuilt_only_after_a_change(monkeypatch: pytest.MonkeyPatch):
    table = AddressTable("unsubscribed_at")
    for n in range(5):
        table[f"u{n}@x.com"] = {"email": f"u{n}@x.com", "unsubscribed_at": f"2024-01-0{n + 1}T00:00:00.000Z"}
    sorts = []
    real_sorted = sorted
    monkeypatch.setattr("builtins.sorted", lambda *a, **k: sorts.append(1) or real_sorted(*a, **k))
    first, _ = table.sorted_rows()
    again, _ = table.sorted_rows()
    assert first is again and len(sorts) == 1
    table.pop("u0@x.com")
    after, _ = table.sorted_rows()
    assert len(sorts) == 2 and [r["email"] for r in after] == [f"u{n}@x.com" for n in range(1, 5)]
    table.setdefault("u1@x.com", {"email": "other", "unsubscribed_at": "x"})  # present: no change
    table.sorted_rows()
    assert len(sorts) == 2


def test_paging_a_list_over_http_visits_every_row_once_in_order():
    sim = BrazeSim(clock=lambda: NOW)
    for n in range(1234):
        sim.add_unsubscribe(f"u{n:04d}@x.com", f"2024-02-{1 + n % 28:02d}T00:00:{n % 60:02d}.000Z")
    seen: list[str] = []
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as client:
        for offset in range(0, 1500, 500):
            page = client.get("/email/unsubscribes", params={"start_date": "2024-01-01", "end_date": "2024-03-01",
                                                             "sort_direction": "asc", "limit": 500,
                                                             "offset": offset}).json()["emails"]
            seen += [(r["unsubscribed_at"], r["email"]) for r in page]
    assert len(seen) == 1234 and seen == sorted(seen) and len(set(seen)) == 1234


def test_unordered_stamps_fall_back_to_filtering():
    table = AddressTable("unsubscribed_at")
    table["a@x.com"] = {"email": "a@x.com", "unsubscribed_at": "2024-01-02T00:00:00.000Z"}
    table["b@x.com"] = {"email": "b@x.com", "unsubscribed_at": "2024-01-01T23:00:00-05:00"}  # later, sorts first
    rows, times = table.sorted_rows()
    assert times is None and [r["email"] for r in rows] == ["b@x.com", "a@x.com"]
