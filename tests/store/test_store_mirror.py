"""The Ketch mirror's table (store/mirror.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from reconcile.models.mirror import PURPOSE, TOPIC, Change, Choice, Snapshot
from reconcile.store.mirror import MirrorStore
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=timezone.utc)
EMAIL = (PURPOSE, "email_marketing", "")
NEWS = (TOPIC, "newsletter", "email")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_entries_round_trip_and_merge_by_time(store: Store) -> None:
    mirror = MirrorStore.of(store)
    assert mirror.entries(["a", "b"]) == {}
    mirror.observe([("a", Snapshot({EMAIL: Choice("granted", at(0), at(-60))}, at(0))),
                    ("b", Change({NEWS: Choice("denied", at(1), at(1))}))], at(2))
    got = mirror.entries(["a", "b", "c"])
    assert set(got) == {"a", "b"}
    assert got["a"].trusted and got["a"].read_at == at(0) and got["a"].choices[EMAIL] == Choice("granted", at(0), at(-60))
    assert not got["b"].trusted
    mirror.observe([("a", Change({EMAIL: Choice("denied", at(5), at(5))})),
                    ("a", Change({EMAIL: Choice("granted", at(3), at(3))}))], at(6))
    assert mirror.entries(["a"])["a"].choices[EMAIL].status == "denied"
    assert mirror.counts() == (2, 1)


def test_many_subjects_in_one_call(store: Store) -> None:
    mirror = MirrorStore.of(store)
    keys = [f"user{i}@example.com" for i in range(2500)]
    mirror.observe([(k, Snapshot({EMAIL: Choice("granted", at(0), at(0))}, at(0))) for k in keys], at(1))
    mirror.observe([(k, Change({EMAIL: Choice("denied", at(2), at(2))})) for k in keys[::2]], at(3))
    got = mirror.entries(keys)
    assert len(got) == 2500
    assert sum(e.choices[EMAIL].status == "denied" for e in got.values()) == 1250


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    mirror = MirrorStore.of(store)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(10):
                field = (PURPOSE, f"p{n}_{i}", "")
                mirror.observe([("shared", Change({field: Choice("granted", at(i), at(i))}))], at(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(mirror.entries(["shared"])["shared"].choices) == 40
