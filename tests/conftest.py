"""Shared fixtures: a hermetic environment, and a state store on SQLite and PostgreSQL.

`store_url` runs each test once per backend. PostgreSQL tests get a fresh database on
the server named by RECONCILE_TEST_PG_URL (start one with
`eval "$(bash scripts/pg-test-server.sh start)"`). Without it they are skipped, except
under CI=true, where a missing server is a failure: CI must exercise PostgreSQL for real.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from reconcile.store.store import Store

import hypothesis_profiles  # noqa: F401  # loads the Hypothesis profile before any test module is imported

# Read before `clean_environ` strips RECONCILE_* for each test.
PG_SERVER_URL = os.environ.get("RECONCILE_TEST_PG_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
STRIPPED_PREFIXES = ("RECONCILE_", "BRAZE_", "KETCH_")


def _expected_length(item: pytest.Item) -> int:
    """0 for a test that declares a timeout above pytest's default (the longest), 1 for one
    marked slow, 2 for the rest."""
    timeout = item.get_closest_marker("timeout")
    if timeout is not None and timeout.args and timeout.args[0] > 300:
        return 0
    return 1 if item.get_closest_marker("slow") is not None else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest tests first (stable within each class): xdist hands tests to its workers in
    this order, so the longest start at once and the short ones fill in around them, instead
    of one long test starting last and running alone."""
    items.sort(key=_expected_length)


@pytest.fixture(autouse=True)
def logging_levels_restored() -> Iterator[None]:
    """A CLI invocation sets logger levels and handlers for its verbosity; no later test
    inherits them (caplog must see what the code logs)."""
    import logging

    names = ("reconcile", "httpx", "httpcore", "aiohttp", "urllib3", "alembic", "uvicorn", "uvicorn.access")
    before = {n: logging.getLogger(n).level for n in names}
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)
    root.setLevel(root_level)
    for handler in [h for h in root.handlers if h not in root_handlers]:
        root.removeHandler(handler)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's RECONCILE_*, BRAZE_* or KETCH_* variables."""
    for name in list(os.environ):
        if name.startswith(STRIPPED_PREFIXES):
            monkeypatch.delenv(name)


def pg_server_url() -> URL:
    """The test PostgreSQL server, or skip (fail under CI) when there is none."""
    if not PG_SERVER_URL:
        message = (
            "RECONCILE_TEST_PG_URL is not set; start a server with "
            '`eval "$(bash scripts/pg-test-server.sh start)"`'
        )
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL tests to run: {message}", pytrace=False)
        pytest.skip(message)
    url = make_url(PG_SERVER_URL)
    return url.set(drivername="postgresql+psycopg") if url.drivername in ("postgresql", "postgres") else url


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (URL with password), dropped afterwards."""
    server = pg_server_url()
    name = f"reconcile_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty state database: a fresh SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'reconcile.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened
