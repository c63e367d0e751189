"""Bring a state database to the newest schema with Alembic, programmatically.

`upgrade(conn, url)` runs `alembic upgrade head` on an open connection inside the caller's
transaction (PostgreSQL: under an advisory lock, so two processes opening a fresh database
at once do not race). On SQLite a migration may rebuild a table to change its constraints,
which foreign keys would forbid (dropping the old table orphans the rows pointing at it), so
`sqlite_foreign_keys_off(conn)` wraps the transaction and `upgrade` checks every foreign key
before it returns: a violation is a `StoreError` and the upgrade is rolled back. A database
stamped with a revision this code does not know (written by a newer `reconcile`) is refused
with a `StoreError` naming both revisions.

Developers can use the Alembic CLI too:
`alembic -c reconcile/store/alembic.ini -x url=sqlite:///state.db current`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from reconcile.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_MIGRATION_LOCK = 0x7265636F6E  # arbitrary, constant advisory-lock key


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations, without an ini file."""
    cfg = Config(attributes={"connection": connection})
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    """The packaged migration scripts, read once per process (they do not change under it)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return ",".join(sorted(_scripts().get_heads()))


def current_revisions(conn: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


def upgrade(conn: Connection, where: str) -> None:
    """Check the database's revision and upgrade it to head, on `conn`."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
    scripts = _scripts()
    current = current_revisions(conn)
    _refuse_unknown(scripts, current, where)
    if set(current) == set(scripts.get_heads()):
        return  # already at head: nothing to run (most opens)
    command.upgrade(alembic_config(conn), "head")
    check_foreign_keys(conn, where)


@contextmanager
def sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Turn SQLite's foreign keys off around a transaction not yet begun on `conn`."""
    if conn.dialect.name != "sqlite":
        yield
        return
    if conn.in_transaction():
        raise RuntimeError("sqlite_foreign_keys_off must wrap the transaction, not run inside it")
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def check_foreign_keys(conn: Connection, where: str) -> None:
    """SQLite: refuse a schema whose rows break a foreign key (tables named, never values)."""
    if conn.dialect.name != "sqlite":
        return
    broken = sorted({row[0] for row in conn.exec_driver_sql("PRAGMA foreign_key_check")})
    if broken:
        raise StoreError(
            f"state store {where}: schema upgrade left rows breaking foreign keys in "
            f"{', '.join(broken)}; nothing was changed"
        )


def _refuse_unknown(script: ScriptDirectory, current: tuple[str, ...], where: str) -> None:
    known = {s.revision for s in script.walk_revisions()}
    unknown = sorted(rev for rev in current if rev not in known)
    if unknown:
        heads = ",".join(sorted(script.get_heads()))
        raise StoreError(
            f"state store {where} is at schema revision {','.join(unknown)}, which this version "
            f"of reconcile does not know (its newest is {heads}); upgrade reconcile or use "
            "another database"
        )
