"""Alembic environment for the state store.

Programmatic use (`reconcile.store.migrate.upgrade`) passes an open connection in
`config.attributes["connection"]` and owns the transaction. CLI use takes the database
from `-x url=...` (or `sqlalchemy.url`) and builds the same engine the store uses.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from reconcile.store.base import make_engine, parse_url, safe_url
from reconcile.store.migrate import check_foreign_keys, sqlite_foreign_keys_off
from reconcile.store.schema import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("reconcile store migrations: pass the database as -x url=<sqlalchemy url>")
    return url


def run_offline() -> None:
    context.configure(url=parse_url(_cli_url()), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = make_engine(parse_url(_cli_url()))
    try:
        with engine.connect() as conn, sqlite_foreign_keys_off(conn):
            _configure(conn)
            check_foreign_keys(conn, safe_url(conn.engine.url))
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
