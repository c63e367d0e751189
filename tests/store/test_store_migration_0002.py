"""Upgrading a 0001 database that holds runs: rows and their children survive the rebuild of
`runs`, statuses the code does not know become `failed` (saying what they were), and the
new CHECK constraint, columns and braze_profiles table are in place."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import Engine, text

from reconcile.errors import StoreError
from reconcile.store import migrate
from reconcile.store.base import ensure_sqlite_folder, make_engine, parse_url
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def engine_for(url: str) -> Engine:
    parsed = parse_url(url)
    ensure_sqlite_folder(parsed)
    return make_engine(parsed)


def at_0001_with_rows(url: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0001")
            for run_id, status in (("r-ok", "applied"), ("r-odd", "ok"), ("r-live", "running")):
                conn.execute(
                    text(
                        "INSERT INTO runs (run_id, mode, config_hash, started_at, status, error) "
                        "VALUES (:r, 'full', 'h', :t, :s, :e)"
                    ),
                    {"r": run_id, "t": T0, "s": status, "e": "boom" if run_id == "r-odd" else None},
                )
            conn.execute(
                text("INSERT INTO run_exceptions (run_id, identity, source, reason) VALUES ('r-ok', 'a@x.io', 'csv', 'bad')")
            )
            conn.execute(
                text(
                    "INSERT INTO plans (plan_id, run_id, fingerprint, body, status, created_at) "
                    "VALUES ('p1', 'r-ok', 'fp', '{}', 'applied', :t)"
                ),
                {"t": T0},
            )
            assert migrate.current_revisions(conn) == ("0001",)
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_rows_and_fails_unknown_statuses(store_url: str) -> None:
    at_0001_with_rows(store_url)
    with Store.open(store_url) as store:
        runs = {r["run_id"]: r for r in store.list_runs()}
        assert set(runs) == {"r-ok", "r-odd", "r-live"}
        assert runs["r-ok"]["status"] == "applied" and runs["r-ok"]["error"] is None
        assert runs["r-live"]["status"] == "running"
        odd = runs["r-odd"]
        assert odd["status"] == "failed" and odd["exit_code"] == 1
        assert odd["error"].startswith("recorded status ok is not a run status") and odd["error"].endswith("; boom")
        assert runs["r-ok"]["capabilities"] is None and runs["r-ok"]["job"] is None
        assert [e["reason"] for e in store.exceptions("r-ok")] == ["bad"]
        assert store.get_plan("p1")["run_id"] == "r-ok"
        with pytest.raises(StoreError):  # foreign keys are enforced again after the rebuild
            store.add_exceptions("no-such-run", [{"identity": "b@x.io", "reason": "r"}])
    engine = engine_for(store_url)
    try:
        with engine.connect() as conn:
            assert migrate.current_revisions(conn) == (migrate.head_revision(),)
    finally:
        engine.dispose()


def test_check_constraint_refuses_a_bogus_status_in_sql(store: Store, store_url: str) -> None:
    store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    engine = engine_for(store_url)
    try:
        with pytest.raises(Exception, match="(?i)check constraint"):
            with engine.begin() as conn:
                conn.execute(text("UPDATE runs SET status = 'ok' WHERE run_id = 'r1'"))
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'interrupted' WHERE run_id = 'r1'"))
    finally:
        engine.dispose()
    assert store.get_run("r1")["status"] == "interrupted"


def test_downgrade_to_0001_and_back(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    engine = engine_for(store_url)
    try:
        with engine.connect() as conn, migrate.sqlite_foreign_keys_off(conn):
            with conn.begin():
                command.downgrade(migrate.alembic_config(conn), "0001")
                migrate.check_foreign_keys(conn, store_url)
                assert migrate.current_revisions(conn) == ("0001",)
                conn.execute(text("UPDATE runs SET status = 'whatever'"))
    finally:
        engine.dispose()
    with Store.open(store_url) as store:
        assert store.get_run("r1")["status"] == "failed"
