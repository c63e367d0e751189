"""The address -> Braze profiles mapping: which profiles (braze_id, external_id) held an email
address when a run last read it, so later runs can read those profiles by external_id in
batches instead of looking each address up.

Addresses are stored as `email_key`: the mailbox key of models/mailbox.py (the store
normalizes what it is given). A profile holds one address; a profile seen under a new address moves to it.

Writes are set-based whatever the volume: rows are loaded into a temporary staging table,
then one UPDATE ... FROM refreshes known profiles and one INSERT ... SELECT adds new ones
(and, for `replace_braze_profiles_for`, one DELETE drops profiles no longer at the address),
`WRITE_BATCH` addresses a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Column, Connection, Text, delete, exists, insert, literal, select, update

from reconcile.models.mailbox import key_or_none
from reconcile.store.base import Row, StoreBase, chunked
from reconcile.store.bulk import temp_table, where_in
from reconcile.store.schema import braze_profiles as profiles

PROFILE_COLUMNS = ("email_key", "braze_id", "external_id")
READ_COLUMNS = ("email_key", "braze_id", "external_id", "last_seen_at")
ProfileRows = list[Mapping[str, Any]] | pd.DataFrame
# Addresses (or profiles) written a transaction. SQLite has one writer at a time: a million
# addresses in one transaction held the write lock for over a minute, longer than the busy
# timeout of the run lock's heartbeat, and the run lost its lease.
WRITE_BATCH = 20_000


def email_key(value: Any) -> str:
    """An address as the mapping keys it: its mailbox key (models/mailbox.py; look-alike
    addresses stay apart), or the trimmed value when it has none."""
    return key_or_none(str(value)) or str(value).strip()


class ProfilesMixin(StoreBase):
    def upsert_braze_profiles(self, rows: ProfileRows, at: datetime, run_id: str) -> int:
        """Record profiles as seen now (columns email_key, braze_id, external_id); returns how many.

        A known braze_id takes the given address and external_id and keeps its first_seen_at.
        """
        staged = _staged(rows)
        self._upsert_staged(staged, at, run_id)
        return len(staged)

    def _upsert_staged(self, staged: list[Row], at: datetime, run_id: str) -> None:
        for batch in chunked(staged, WRITE_BATCH):
            with self._write("upsert_braze_profiles") as conn:
                with temp_table(conn, "profile_staging", _staging_columns(), batch) as staging:
                    _upsert(conn, staging, at, run_id)

    def replace_braze_profiles_for(
        self, email_keys: Iterable[str], rows: ProfileRows, at: datetime, run_id: str
    ) -> int:
        """A fresh read of these addresses: `rows` become what is known about them.

        Profiles recorded under one of `email_keys` and absent from `rows` are dropped; every
        row must belong to one of `email_keys` (ValueError otherwise). Returns rows written.

        Written in transactions of `WRITE_BATCH` rows or addresses: first every row is
        upserted (a profile that moved keeps its first_seen_at), then each batch of addresses
        drops what is no longer there. A process stopped in between leaves profiles that
        are gone listed at their old address, which every read checks anyway.
        """
        keys = sorted({email_key(k) for k in email_keys if k is not None and email_key(k)})
        staged = _staged(rows)
        wanted = set(keys)
        outside = sum(1 for row in staged if row["email_key"] not in wanted)
        if outside:
            raise ValueError(f"replace_braze_profiles_for: {outside} row(s) hold an address not in email_keys")
        if not keys:
            return 0
        self._upsert_staged(staged, at, run_id)
        at_key: dict[str, list[Row]] = {}
        for row in staged:
            at_key.setdefault(row["email_key"], []).append(row)
        for batch in chunked(keys, WRITE_BATCH):
            key_rows = [{"email_key": k} for k in batch]
            batch_rows = [row for k in batch for row in at_key.get(k, ())]
            with self._write("replace_braze_profiles_for") as conn:
                with (
                    temp_table(conn, "profile_staging", _staging_columns(), batch_rows) as staging,
                    temp_table(conn, "profile_keys", [Column("email_key", Text, primary_key=True)], key_rows) as read,
                ):
                    conn.execute(_drop_missing(staging, read))
        return len(staged)

    def forget_braze_profiles(self, braze_ids: Iterable[str]) -> int:
        """Drop these profiles (deleted from Braze); returns how many were known."""
        ids = sorted({str(b) for b in braze_ids if b is not None})
        removed = 0
        with self._write("forget_braze_profiles") as conn:
            for predicate in where_in(conn, profiles.c.braze_id, ids):
                removed += conn.execute(delete(profiles).where(predicate)).rowcount
        return removed

    def braze_profiles(self, email_keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Known profiles (email_key, braze_id, external_id, last_seen_at), all or for these addresses."""
        query = select(*(profiles.c[name] for name in READ_COLUMNS))
        with self._read("braze_profiles") as conn:
            if email_keys is None:
                found = list(conn.execute(query))
            else:
                found = _by_address(conn, query, email_keys)
        return _frame(found)


def _staged(rows: ProfileRows) -> list[Row]:
    """Normalized rows, one per braze_id (the last given wins)."""
    records = _records(rows)
    bad = sum(1 for r in records if _blank(r.get("braze_id")) or _blank(r.get("email_key")))
    if bad:
        raise ValueError(f"braze profiles: {bad} row(s) without a braze_id or email_key")
    out: dict[str, Row] = {}
    for r in records:
        external = r.get("external_id")
        out[str(r["braze_id"])] = {
            "email_key": email_key(r["email_key"]),
            "braze_id": str(r["braze_id"]),
            "external_id": None if _blank(external) else str(external),
        }
    return list(out.values())


def _records(rows: ProfileRows) -> Sequence[Mapping[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        missing = [c for c in PROFILE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"braze profiles: frame lacks column(s) {', '.join(missing)}")
        frame = rows[list(PROFILE_COLUMNS)].astype(object)
        return frame.where(frame.notna(), None).to_dict("records", into=dict[str, Any]())
    return list(rows)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA or str(value).strip() == ""


def _staging_columns() -> list[Column[Any]]:
    return [Column(name, Text, primary_key=name == "braze_id") for name in PROFILE_COLUMNS]


def _upsert(conn: Connection, staging: Any, at: datetime, run_id: str) -> None:
    s = staging.c
    conn.execute(
        update(profiles)
        .where(profiles.c.braze_id == s.braze_id)
        .values(email_key=s.email_key, external_id=s.external_id, last_seen_at=at, run_id=run_id)
    )
    seen = literal(at, profiles.c.first_seen_at.type)
    run = literal(run_id, profiles.c.run_id.type)
    known = exists().where(profiles.c.braze_id == s.braze_id)
    source = select(s.email_key, s.braze_id, s.external_id, seen, seen, run).where(~known)
    names = [*PROFILE_COLUMNS, "first_seen_at", "last_seen_at", "run_id"]
    conn.execute(insert(profiles).from_select(names, source))


def _drop_missing(staging: Any, read: Any) -> Any:
    at_read_address = profiles.c.email_key.in_(select(read.c.email_key))
    still_there = exists().where(staging.c.braze_id == profiles.c.braze_id)
    return delete(profiles).where(at_read_address, ~still_there)


def _by_address(conn: Connection, query: Any, email_keys: Iterable[str]) -> list[Any]:
    keys = sorted({email_key(k) for k in email_keys if k is not None})
    found: list[Any] = []
    for predicate in where_in(conn, profiles.c.email_key, keys):
        found.extend(conn.execute(query.where(predicate)))
    return found


def _frame(found: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "email_key": pd.Series([r.email_key for r in found], dtype="string"),
            "braze_id": pd.Series([r.braze_id for r in found], dtype="string"),
            "external_id": pd.Series([r.external_id for r in found], dtype="string"),
            "last_seen_at": pd.to_datetime(pd.Series([r.last_seen_at for r in found], dtype=object), utc=True),
        }
    )
    return frame.sort_values(["email_key", "braze_id"], ignore_index=True)
