"""Engine setup and the transaction/error plumbing every store method goes through.

- SQLite: WAL journal, foreign keys on, a generous busy timeout, and write transactions
  opened with `BEGIN IMMEDIATE` so a read-then-write never fails half way on contention.
- PostgreSQL: `postgresql+psycopg://` (bare `postgresql://` and `postgres://` are mapped to it).
- Every `sqlalchemy` error leaves the store as a `StoreError` whose message names the
  database with its password hidden; bound parameters (emails, payloads) are never echoed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from reconcile.errors import StoreError
from reconcile.store.coltypes import dumps
from reconcile.store.file_modes import prepare

SUPPORTED = ("sqlite", "postgresql")
CHUNK = 900  # below SQLite's historical 999-variable limit
BUSY_TIMEOUT_SECONDS = 60
SLOW_WRITE_SECONDS = 10.0  # a SQLite write transaction held longer is logged
log = logging.getLogger(__name__)
CACHE_KIB = 64 * 1024  # SQLite page cache per connection
T = TypeVar("T")
Row = dict[str, Any]  # one database row, or one row to write


def parse_url(url: str | URL) -> URL:
    """Parse a database URL, mapping bare PostgreSQL schemes to psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"state store: invalid database URL ({exc.__class__.__name__})") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED:
        raise StoreError(f"state store: unsupported database {safe_url(parsed)} (use sqlite or postgresql)")
    return parsed


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def ensure_sqlite_folder(url: URL) -> None:
    if url.get_backend_name() != "sqlite" or is_memory_sqlite(url) or url.query.get("uri"):
        return
    prepare(Path(str(url.database)).expanduser())


def make_engine(url: URL) -> Engine:
    """Create an engine configured for the state store on SQLite or PostgreSQL."""
    common: dict[str, Any] = {"hide_parameters": True, "json_serializer": dumps}
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, **common)
    extra: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}}
    if is_memory_sqlite(url):
        extra["poolclass"] = StaticPool
    engine = create_engine(url, **common, **extra)
    _install_sqlite_hooks(engine, wal=not is_memory_sqlite(url))
    return engine


def _install_sqlite_hooks(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_conn.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def chunked(values: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Yield lists of at most `size` values (for IN clauses)."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Accept one status or several."""
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


S = TypeVar("S", bound="StoreBase")


class StoreBase:
    """Connection handling shared by the store's parts."""

    def __init__(self, engine: Engine, url: URL):
        self._engine = engine
        self._url = url
        self._dialect = url.get_backend_name()

    @classmethod
    def on(cls: type[S], other: StoreBase) -> S:
        """A store of this kind on `other`'s engine (one pool, one database)."""
        return cls(other._engine, other._url)

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return safe_url(self._url)

    @contextmanager
    def _write(self, op: str) -> Iterator[Connection]:
        """A transaction that commits on success (SQLite: `BEGIN IMMEDIATE`)."""
        with self._guard(op), self._engine.connect() as conn:
            with conn.execution_options(sqlite_begin="IMMEDIATE").begin():
                started = time.monotonic()  # the write lock is held from here
                yield conn
            held = time.monotonic() - started
            if held > SLOW_WRITE_SECONDS and self._dialect == "sqlite":
                log.warning("state store: %s held the database's write lock for %.0fs; every other writer, the "
                            "run lock's heartbeat included, waits meanwhile (for at most %ds)", op, held,
                            BUSY_TIMEOUT_SECONDS)

    @contextmanager
    def _read(self, op: str) -> Iterator[Connection]:
        with self._guard(op), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _guard(self, op: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(self._describe(op, exc)) from exc

    def _describe(self, op: str, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
        text = (lines[0] if lines else "")[:400]  # DETAIL lines would echo row values
        if self._url.password:
            text = text.replace(str(self._url.password), "***")
        return f"state store {self.url}: {op} failed: {type(orig).__name__}: {text}"

    def _insert(self, table: Table) -> Any:
        """A dialect insert construct (supports on_conflict_*)."""
        return pg_insert(table) if self._dialect == "postgresql" else sqlite_insert(table)
