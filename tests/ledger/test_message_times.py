"""A webhook message's times follow the source-time rules (engine/times.py): a UNIX time in
seconds (milliseconds by their size) between 2000 and 2100; anything else is answered 400
naming the field, and no request is kept to be carried out on a guessed date."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.ledger import messages as m
from tests.ledger.conftest import consent, delete

EMAIL = "kim.lee@example.com"
not_epoch = st.one_of(  # null is a time not given, which a DeleteRequest may leave out
    st.text(max_size=25), st.booleans(), st.integers(-2**70, 946_684_799),
    st.integers(4_102_444_800, 100_000_000_000), st.integers(4_102_444_800_000, 2**70),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not 946_684_800 <= f < 4_102_444_800),
    st.lists(st.integers(), max_size=2))


@settings(max_examples=examples(100), deadline=None)
@given(st.sampled_from(["submittedTimestamp", "dueTimestamp"]), not_epoch)
@example("submittedTimestamp", 0)
@example("submittedTimestamp", "1772366400")
@example("submittedTimestamp", "2026-03-01T12:00:00Z")
@example("dueTimestamp", 12)
def test_a_delete_request_with_a_time_that_is_not_one_is_refused_naming_the_field(field: str, value) -> None:
    doc = delete(EMAIL)
    doc["request"][field] = value
    try:
        m.parse(json.dumps(doc).encode())
    except m.Invalid as exc:
        # the field may be left out (a request without it is accepted), but a value given must be a time
        assert exc.status == 400 and str(exc).startswith(f"request.{field}: ")
        assert "a UNIX timestamp in seconds" in str(exc)
    else:
        raise AssertionError(f"{field}={value!r} was accepted")


def test_seconds_and_milliseconds_are_read_alike() -> None:
    for value in (1772366400, 1772366400000, 1772366400.0):
        doc = consent(EMAIL)
        doc["request"]["collectedAt"] = value
        assert m.parse(json.dumps(doc).encode()).changed_at().isoformat() == "2026-03-01T12:00:00+00:00"


def test_over_http_the_request_is_answered_400_and_nothing_is_kept(lw) -> None:
    doc = delete(EMAIL)
    doc["request"]["submittedTimestamp"] = 0
    r = lw.post(doc)
    assert r.status_code == 400 and "request.submittedTimestamp" in r.json()["error"]["message"]
    assert lw.ledger.requests("in_progress") == []
    assert lw.post(delete(EMAIL)).status_code == 200 and len(lw.ledger.requests("in_progress")) == 1
