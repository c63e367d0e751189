"""Named leases so a scheduled run and a manual run never apply at once.

`acquire_lock` is one atomic statement on both databases:
`INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE expires_at <= now OR holder = me
RETURNING holder`. A row comes back only if the lock was free, expired, or already ours
(re-acquiring renews the lease). Time is the caller's `now`; the store never reads a clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from reconcile.store.base import Row, StoreBase
from reconcile.store.schema import locks


class LocksMixin(StoreBase):
    """Acquire, inspect and release named leases."""

    def acquire_lock(self, name: str, holder: str, now: datetime, ttl_seconds: float) -> bool:
        """Take the lock if it is free, expired or already held by `holder`."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        row = {
            "name": name,
            "holder": holder,
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
        }
        ins = self._insert(locks).values(**row)
        stmt = ins.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={
                "holder": ins.excluded.holder,
                "acquired_at": ins.excluded.acquired_at,
                "expires_at": ins.excluded.expires_at,
            },
            where=(locks.c.expires_at <= now) | (locks.c.holder == holder),
        ).returning(locks.c.holder)
        with self._write("acquire_lock") as conn:
            return conn.execute(stmt).first() is not None

    def release_lock(self, name: str, holder: str) -> bool:
        """Release the lock if `holder` has it; returns whether it did."""
        stmt = delete(locks).where((locks.c.name == name) & (locks.c.holder == holder))
        with self._write("release_lock") as conn:
            return bool(conn.execute(stmt).rowcount)

    def lock_holder(self, name: str) -> Row | None:
        """The lock's row (name, holder, acquired_at, expires_at), expired or not; None if free."""
        with self._read("lock_holder") as conn:
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
        return dict(row._mapping) if row else None
