"""The Ketch mirror's table (schema.py: ketch_mirror): one entry per subject key.

`observe` merges observations (models/mirror.py) into the entries in one transaction:
the rows are locked (PostgreSQL: FOR UPDATE; SQLite: the write transaction), merged in
Python and written back, so two writers never lose each other's fields. `observe_in` does
the same inside a caller's transaction (the ledger records a message and its mirror
change together).
"""

from __future__ import annotations

import json
from functools import lru_cache
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from reconcile.models.mirror import Change, Choice, MirrorEntry, Snapshot, merge
from reconcile.store.base import StoreBase
from reconcile.store.bulk import where_in
from reconcile.store.schema import ketch_mirror

Observation = tuple[str, Change | Snapshot]  # (subject key, what was seen)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


@lru_cache(maxsize=1 << 16)  # the choices of a run's reads share few distinct times
def _micros(value: datetime) -> int:
    """Microseconds since the epoch (exact, so an entry reads back equal)."""
    return (value - _EPOCH) // _MICRO


@lru_cache(maxsize=1 << 16)
def _from_micros(value: int) -> datetime:
    return _EPOCH + value * _MICRO


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else _micros(value)


def _time(value: int | None) -> datetime | None:
    return None if value is None else _from_micros(value)


def encode(entry: MirrorEntry) -> str:
    rows = [[kind, code, channel, c.status, _epoch(c.as_of), _epoch(c.changed_at)]
            for (kind, code, channel), c in sorted(entry.choices.items())]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def decode(text: str, read_at: datetime | None) -> MirrorEntry:
    choices = {}
    for kind, code, channel, status, as_of, changed_at in json.loads(text):
        choices[(kind, code, channel)] = Choice(status, _from_micros(as_of), _time(changed_at))
    return MirrorEntry(choices, read_at)


def _load(conn: Connection, keys: Sequence[str], *, lock: bool) -> dict[str, MirrorEntry]:
    m = ketch_mirror.c
    out: dict[str, MirrorEntry] = {}
    for where in where_in(conn, m.subject_key, sorted(set(keys))):
        query = select(m.subject_key, m.choices, m.read_at).where(where)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for key, text, read_at in conn.execute(query):
            out[key] = decode(text, read_at)
    return out


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows whose key no other writer inserted first; returns the keys inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(ketch_mirror).on_conflict_do_nothing(index_elements=["subject_key"])
            .returning(ketch_mirror.c.subject_key))
    return set(conn.execute(stmt, rows).scalars())


def observe_in(conn: Connection, observations: Iterable[Observation], at: datetime) -> dict[str, MirrorEntry]:
    """Merge `observations` inside the caller's transaction; returns the new entries."""
    obs = list(observations)
    if not obs:
        return {}
    keys = list(dict.fromkeys(k for k, _ in obs))
    before = _load(conn, keys, lock=True)
    after = _merged(before, obs)
    new = [k for k in keys if k not in before]
    if new:
        inserted = _insert_new(conn, [_row(k, after[k], at) for k in new])
        lost = [k for k in new if k not in inserted]
        if lost:  # another writer inserted these first (PostgreSQL): merge into what it holds
            stored = _load(conn, lost, lock=True)
            again = _merged(stored, [(k, o) for k, o in obs if k in stored])
            after.update(again)
            _update(conn, [_row(k, again[k], at) for k in again])
    changed = [k for k in keys if k in before and after[k] != before[k]]
    if changed:
        _update(conn, [_row(k, after[k], at) for k in changed])
    return after


def _merged(entries: dict[str, MirrorEntry], obs: list[Observation]) -> dict[str, MirrorEntry]:
    out = dict(entries)
    for key, o in obs:
        out[key] = merge(out.get(key), o)
    return out


def _row(key: str, entry: MirrorEntry, at: datetime) -> dict[str, Any]:
    return {"subject_key": key, "choices": encode(entry), "read_at": entry.read_at, "updated_at": at}


def _update(conn: Connection, rows: list[dict[str, Any]]) -> None:
    m = ketch_mirror.c
    stmt = (update(ketch_mirror).where(m.subject_key == bindparam("k"))
            .values(choices=bindparam("c"), read_at=bindparam("r", type_=ketch_mirror.c.read_at.type),
                    updated_at=bindparam("u", type_=ketch_mirror.c.updated_at.type)))
    conn.execute(stmt, [{"k": r["subject_key"], "c": r["choices"], "r": r["read_at"], "u": r["updated_at"]}
                        for r in rows])


class MirrorStore(StoreBase):
    @classmethod
    def of(cls, store: Any) -> MirrorStore:
        return cls.on(store)

    def entries(self, keys: Iterable[str]) -> dict[str, MirrorEntry]:
        """The entries of these subject keys (those with none are left out)."""
        with self._read("ketch mirror") as conn:
            return _load(conn, list(keys), lock=False)

    def observe(self, observations: Iterable[Observation], at: datetime) -> dict[str, MirrorEntry]:
        with self._write("ketch mirror") as conn:
            return observe_in(conn, observations, at)

    def counts(self) -> tuple[int, int]:
        """(entries, trusted entries)."""
        m = ketch_mirror.c
        with self._read("ketch mirror") as conn:
            total = conn.execute(select(func.count()).select_from(ketch_mirror)).scalar_one()
            trusted = conn.execute(select(func.count()).where(m.read_at.is_not(None))).scalar_one()
        return int(total), int(trusted)
