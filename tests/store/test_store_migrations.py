"""Migrations: a fresh database gets the whole schema, re-opening is a no-op, a newer
(unknown) schema is refused, and the migration matches the schema module exactly."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from reconcile.errors import StoreError
from reconcile.store import migrate
from reconcile.store.base import make_engine, parse_url
from reconcile.store.schema import metadata
from reconcile.store.store import Store

TABLES = {
    "runs",
    "run_exceptions",
    "drift_items",
    "plans",
    "actions",
    "tombstones",
    "watermarks",
    "locks",
    "lock_events",
    "braze_profiles",
    "ledger_events",
    "ledger_changes",
    "ledger_requests",
    "ledger_request_history",
    "ledger_callbacks",
    "sweeps",
    "sweep_slices",
    "rate_budget_windows",
    "absence_checks",
    "run_parts",
    "segment_exports",
    "segment_export_rows",
    "ketch_mirror",
}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
INI = Path(migrate.__file__).with_name("alembic.ini")


def revision_of(url: str) -> tuple[str, ...]:
    engine = make_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            return migrate.current_revisions(conn)
    finally:
        engine.dispose()


def test_fresh_database_gets_every_table(store_url: str) -> None:
    with Store.open(store_url):
        pass
    engine = make_engine(parse_url(store_url))
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
        live = [ix for ix in inspector.get_indexes("drift_items") if ix["name"] == "uq_drift_items_live"]
        assert live and live[0]["unique"]
        checks = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints("runs")}
        assert "ck_runs_status" in checks and "'interrupted'" in checks["ck_runs_status"]
    finally:
        engine.dispose()
    assert revision_of(store_url) == (migrate.head_revision(),)


def test_migration_matches_schema_module(store: Store, store_url: str) -> None:
    engine = make_engine(parse_url(store_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_reopen_is_a_no_op(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.start_run("run-1", mode="full", config_hash="h", started_at=T0)
    with Store.open(store_url) as store:
        assert store.get_run("run-1")["started_at"] == T0
    assert revision_of(store_url) == (migrate.head_revision(),)


def test_unknown_newer_revision_is_refused(store_url: str) -> None:
    with Store.open(store_url):
        pass
    engine = create_engine(parse_url(store_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0042_from_the_future'"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError) as info:
        Store.open(store_url)
    message = str(info.value)
    assert "0042_from_the_future" in message and migrate.head_revision() in message
    assert "upgrade reconcile" in message
    assert revision_of(store_url) == ("0042_from_the_future",)


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store.open(url).close()
    engine = make_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_in_memory_sqlite_works() -> None:
    with Store.open("sqlite://") as store:
        store.start_run("r", mode="full", config_hash="h", started_at=T0)
        assert store.get_run("r")["mode"] == "full"


def test_alembic_cli_uses_the_packaged_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cmd = [sys.executable, "-m", "alembic", "-c", str(INI), "-x", f"url={url}", "upgrade", "head"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert revision_of(url) == (migrate.head_revision(),)
