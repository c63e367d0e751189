"""Run leases, so two processes never apply one job at once (on one host or many).

A lease is one row of `locks`: a name, its holder, when it was taken, renewed and when it
expires, and the holder's identity (host, pid, machine/boot id, PID namespace, process start
time). Every change is one atomic statement:

    acquire_lock   INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE expired OR mine
    renew_lock     UPDATE ... WHERE name AND holder            (the heartbeat)
    take_over_lock UPDATE ... WHERE name AND holder = the dead one (compare-and-set)
    release_lock   DELETE ... WHERE name AND holder

`force_release_lock` deletes whatever holds the lease and records who removed whom in
`lock_events`; takeovers of a dead holder are recorded there too.

On PostgreSQL `session_lock(name)` also takes a session-level advisory lock on a dedicated
connection: the server drops it the moment the holder's connection dies (SIGKILL, a lost
pod), so a successor that gets it knows the lease's holder is gone without waiting for the
lease to expire. Time is always the caller's `now`; the store never reads a clock.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, text, update

from reconcile.store.base import Row, StoreBase
from reconcile.store.schema import lock_events, locks


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock`, from the lock's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SessionLock:
    """A PostgreSQL session-level advisory lock held on its own connection."""

    def __init__(self, conn: Connection, name: str):
        self._conn = conn
        self._mutex = threading.Lock()
        self.name = name
        self.key = advisory_key(name)
        self.held = False

    def try_acquire(self) -> bool:
        with self._mutex:
            self.held = bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        return self.held

    def alive(self) -> bool:
        """Whether the connection (and so the lock) is still there."""
        with self._mutex:
            if not self.held:
                return False
            try:
                self._conn.execute(text("SELECT 1")).scalar()
            except Exception:  # noqa: BLE001 - any failure means the session, and the lock, may be gone
                self.held = False
        return self.held

    def close(self) -> None:
        with self._mutex:
            try:
                if self.held:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                pass
            finally:
                self.held = False
                self._conn.close()


class LocksMixin(StoreBase):
    """Acquire, renew, inspect and release run leases."""

    lock_owner: str | None = None  # the holder `journal_sending` records; set by reconcile.pipeline.lock

    def acquire_lock(self, name: str, holder: str, now: datetime, ttl_seconds: float,
                     identity: Row | None = None) -> bool:
        """Take the lock if it is free, expired or already held by `holder` (which renews it)."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        row = {"name": name, "holder": holder, "acquired_at": now, "renewed_at": now,
               "expires_at": now + timedelta(seconds=ttl_seconds), "identity": identity}
        ins = self._insert(locks).values(**row)
        stmt = ins.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={k: getattr(ins.excluded, k) for k in row if k != "name"},
            where=(locks.c.expires_at <= now) | (locks.c.holder == holder),
        ).returning(locks.c.holder)
        with self._write("acquire_lock") as conn:
            return conn.execute(stmt).first() is not None

    def renew_lock(self, name: str, holder: str, now: datetime, ttl_seconds: float) -> bool:
        """Extend `holder`'s lease; False when it no longer holds the lock."""
        stmt = (update(locks).where((locks.c.name == name) & (locks.c.holder == holder))
                .values(renewed_at=now, expires_at=now + timedelta(seconds=ttl_seconds)))
        with self._write("renew_lock") as conn:
            return bool(conn.execute(stmt).rowcount)

    def take_over_lock(self, name: str, holder: str, previous: str, now: datetime, ttl_seconds: float,
                       identity: Row | None = None, reason: str = "") -> bool:
        """Replace `previous` (known to be dead) as the holder, only if it still is; recorded."""
        stmt = (update(locks).where((locks.c.name == name) & (locks.c.holder == previous))
                .values(holder=holder, acquired_at=now, renewed_at=now,
                        expires_at=now + timedelta(seconds=ttl_seconds), identity=identity))
        with self._write("take_over_lock") as conn:
            if not conn.execute(stmt).rowcount:
                return False
            conn.execute(lock_events.insert().values(name=name, event="taken_over", holder=previous, by=holder,
                                                     at=now, detail={"reason": reason}))
        return True

    def holds_lock(self, name: str, holder: str, now: datetime) -> bool:
        """Whether `holder` has the lock with a lease that has not expired at `now`."""
        query = select(locks.c.holder).where((locks.c.name == name) & (locks.c.holder == holder)
                                             & (locks.c.expires_at > now))
        with self._read("holds_lock") as conn:
            return conn.execute(query).first() is not None

    def release_lock(self, name: str, holder: str) -> bool:
        """Release the lock if `holder` has it; returns whether it did."""
        stmt = delete(locks).where((locks.c.name == name) & (locks.c.holder == holder))
        with self._write("release_lock") as conn:
            return bool(conn.execute(stmt).rowcount)

    def force_release_lock(self, name: str, by: str, now: datetime, reason: str = "") -> Row | None:
        """Remove the lock whoever holds it; the removed row is returned and recorded."""
        with self._write("force_release_lock") as conn:
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
            if row is None:
                return None
            removed = dict(row._mapping)
            conn.execute(delete(locks).where((locks.c.name == name) & (locks.c.holder == removed["holder"])))
            detail = {"reason": reason, "acquired_at": removed["acquired_at"], "expires_at": removed["expires_at"],
                      "identity": removed.get("identity")}
            conn.execute(lock_events.insert().values(name=name, event="forced_release", holder=removed["holder"],
                                                     by=by, at=now, detail=detail))
        return removed

    def lock_holder(self, name: str) -> Row | None:
        """The lock's row, expired or not; None if free."""
        with self._read("lock_holder") as conn:
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
        return dict(row._mapping) if row else None

    def list_locks(self) -> list[Row]:
        with self._read("list_locks") as conn:
            return [dict(r._mapping) for r in conn.execute(select(locks).order_by(locks.c.name))]

    def lock_events(self, name: str | None = None, limit: int = 20) -> list[Row]:
        """Forced releases and takeovers, newest first."""
        query = select(lock_events).order_by(lock_events.c.at.desc(), lock_events.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(lock_events.c.name == name)
        with self._read("lock_events") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # PostgreSQL session locks -------------------------------------------------------------

    @property
    def has_session_locks(self) -> bool:
        return self._dialect == "postgresql"

    def session_lock(self, name: str) -> SessionLock | None:
        """A dedicated connection for the lock's advisory lock (PostgreSQL), else None."""
        if not self.has_session_locks:
            return None
        with self._guard("session_lock"):
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return SessionLock(conn, name)

    def session_lock_held(self, name: str) -> bool | None:
        """Whether some live session holds `name`'s advisory lock (PostgreSQL), else None."""
        if not self.has_session_locks:
            return None
        key = advisory_key(name) & 0xFFFFFFFFFFFFFFFF
        query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid) AND objsubid = 1 "
                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        with self._read("session_lock_held") as conn:
            return bool(conn.execute(query, {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar())
