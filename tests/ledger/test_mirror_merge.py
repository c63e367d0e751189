"""The Ketch mirror's merge rule (models/mirror.py) and its translations (ledger/mirror.py)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.clients.ketch_parse import ConsentState, KetchRecord, SubscriptionState
from reconcile.ledger import messages as msgs
from reconcile.ledger import mirror as mm
from reconcile.models.mirror import CONTROL, PURPOSE, TOPIC, Change, Choice, MirrorEntry, Snapshot, merge, values
from tests.ledger.conftest import consent, message

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EMAIL = (PURPOSE, "email_marketing", "")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(minutes: int, status: str, key: tuple[str, str, str] = EMAIL) -> Change:
    return Change({key: Choice(status, at(minutes), at(minutes))})


def test_newer_message_wins_and_older_never_overwrites() -> None:
    entry = merge(None, change(10, "denied"))
    assert values(merge(entry, change(20, "granted"))) == {EMAIL: "granted"}
    assert values(merge(entry, change(5, "granted"))) == {EMAIL: "denied"}


def test_fields_merge_one_by_one() -> None:
    news = (TOPIC, "newsletter", "email")
    entry = merge(merge(None, change(10, "denied")), change(5, "granted", news))
    entry = merge(entry, Change({EMAIL: Choice("granted", at(1), at(1)), news: Choice("denied", at(7), at(7))}))
    assert values(entry) == {EMAIL: "denied", news: "denied"}


def test_a_message_alone_is_not_trusted_a_read_is() -> None:
    entry = merge(None, change(10, "denied"))
    assert not entry.trusted
    filled = merge(entry, Snapshot({EMAIL: Choice("granted", at(0), None)}, at(30)))
    assert filled.trusted and filled.read_at == at(30)


def test_a_read_removes_fields_it_does_not_name_and_keeps_newer_messages() -> None:
    news = (TOPIC, "newsletter", "email")
    entry = merge(merge(None, change(10, "denied")), change(50, "granted", news))
    read = merge(entry, Snapshot({}, at(30)))
    assert values(read) == {news: "granted"}  # email_marketing absent at 30; the topic came at 50
    # a message older than the read for a field the read did not show changes nothing
    assert values(merge(read, change(20, "denied"))) == {news: "granted"}
    assert values(merge(read, change(40, "denied"))) == {news: "granted", EMAIL: "denied"}


def test_missing_collected_at_is_a_default_not_a_choice() -> None:
    rec = KetchRecord("a@example.com", ConsentState({"email_marketing": True}, None), None)
    entry = merge(None, mm.snapshot(rec, at(30)))
    back = mm.record_of("a@example.com", entry)
    assert back.consent is not None and back.consent.collected_at is None and back.consent.purposes == {
        "email_marketing": True}
    # a message gives the purpose Ketch's time; the consent's time is the latest field time
    entry = merge(entry, change(40, "denied"))
    assert mm.record_of("a@example.com", entry).consent == ConsentState({"email_marketing": False}, at(40))


def test_record_round_trips_through_an_entry() -> None:
    rec = KetchRecord("a@example.com", ConsentState({"email_marketing": False, "analytics": True}, at(3)),
                      SubscriptionState({("newsletter", "email"): "granted", ("promo", None): "denied"},
                                        {"global": "denied"}, at(4)))
    assert mm.record_of("a@example.com", merge(None, mm.snapshot(rec, at(30)))) == rec
    assert mm.record_of("a@example.com", merge(None, mm.snapshot(None, at(30)))).has_record is False


def test_messages_become_changes_as_the_api_would_parse_them() -> None:
    doc = consent("a@example.com", email_marketing="denied", analytics="granted")
    msg = msgs.parse(__import__("json").dumps(doc).encode())
    got = mm.message_change(msg)
    assert got is not None and {k: c.status for k, c in got.choices.items()} == {
        (PURPOSE, "email_marketing", ""): "denied", (PURPOSE, "analytics", ""): "granted"}
    topics = message("SubscriptionTopicRequest", {
        "property": "web", "environment": "production", "identities": [], "submittedTimestamp": 1767000000,
        "topics": {"newsletter": {"email": {"status": "denied"}, "sms": {"status": "granted"}}}})
    topics["request"]["identities"] = [{"identitySpace": "email", "identityValue": "a@example.com"}]
    got = mm.message_change(msgs.parse(__import__("json").dumps(topics).encode()))
    assert got is not None and {k: c.status for k, c in got.choices.items()} == {
        (TOPIC, "newsletter", "email"): "denied", (TOPIC, "newsletter", "sms"): "granted"}
    assert all(c.as_of == c.changed_at == datetime.fromtimestamp(1767000000, timezone.utc)
               for c in got.choices.values())


def test_audit_slice_covers_everyone_within_the_period() -> None:
    keys = [f"user{i}@example.com" for i in range(3000)]
    fraction = 1 / 30
    days = [date(2026, 3, 1) + timedelta(days=d) for d in range(30)]
    seen: dict[str, int] = {}
    for day in days:
        today = [k for k in keys if mm.audited(k, day, fraction)]
        assert 0.02 < len(today) / len(keys) < 0.05
        for k in today:
            seen[k] = seen.get(k, 0) + 1
    assert set(seen) == set(keys) and set(seen.values()) == {1}
    assert [k for k in keys if mm.audited(k, days[0], fraction)] == [k for k in keys if mm.audited(k, days[0], fraction)]


def test_disagreement_names_fields_and_ignores_what_came_after_the_read() -> None:
    entry = merge(merge(None, Snapshot({EMAIL: Choice("granted", at(0), at(0))}, at(1))), change(5, "denied"))
    assert mm.disagreement(entry, Snapshot({EMAIL: Choice("granted", at(0), at(0))}, at(10)), "email_marketing") == [
        "purpose email_marketing: denied -> granted"]
    assert mm.disagreement(entry, Snapshot({EMAIL: Choice("granted", at(0), at(0))}, at(3)), "email_marketing") == []
    # purposes a consent read did not name are not compared (a read may answer only those asked)
    other = merge(entry, change(6, "granted", (PURPOSE, "analytics", "")))
    assert mm.disagreement(other, Snapshot({EMAIL: Choice("denied", at(0), at(5))}, at(10)), "email_marketing") == []


FIELDS = [(PURPOSE, "email_marketing", ""), (PURPOSE, "analytics", ""), (TOPIC, "newsletter", "email"),
          (CONTROL, "global", "")]
choice = st.builds(lambda s, m, c: Choice(s, at(m), None if c is None else at(c)), st.sampled_from(["granted", "denied"]),
                   st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20)))
observation = st.one_of(
    st.builds(Change, st.dictionaries(st.sampled_from(FIELDS), choice, min_size=1)),
    st.builds(lambda d, m: Snapshot({k: Choice(c.status, at(m), c.changed_at) for k, c in d.items()}, at(m)),
              st.dictionaries(st.sampled_from(FIELDS), choice), st.integers(0, 20)))


@settings(max_examples=150, deadline=None)
@given(st.lists(observation, min_size=1, max_size=5))
def test_the_result_does_not_depend_on_the_order_observations_arrive_in(obs: list[Change | Snapshot]) -> None:
    results = set()
    for order in itertools.islice(itertools.permutations(obs), 24):
        entry: MirrorEntry | None = None
        for o in order:
            entry = merge(entry, o)
        assert entry is not None
        results.add((tuple(sorted(entry.choices.items())), entry.read_at))
    assert len(results) == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(observation, min_size=1, max_size=5))
def test_every_field_holds_its_newest_observation(obs: list[Change | Snapshot]) -> None:
    entry: MirrorEntry | None = None
    for o in obs:
        entry = merge(entry, o)
    assert entry is not None
    for key in FIELDS:
        seen = [(o.choices[key].as_of if isinstance(o, Change) else o.read_at, o.choices.get(key)) for o in obs
                if isinstance(o, Snapshot) or key in o.choices]
        newest = max(t for t, _ in seen) if seen else None
        got = entry.choices.get(key)
        if newest is None:
            assert got is None
        elif got is None:  # absent: the newest observation of the field is a read that did not name it
            assert any(t == newest and c is None for t, c in seen)
        else:
            assert got.as_of == newest and any(t == newest and c is not None and c.status == got.status
                                               for t, c in seen)
