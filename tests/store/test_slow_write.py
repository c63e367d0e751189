"""A SQLite write transaction held longer than SLOW_WRITE_SECONDS is logged with its
operation's name: other writers, the run lock's heartbeat among them, wait for it."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from reconcile.store import base
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_a_long_write_is_logged_by_name(tmp_path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    store.start_run("r1", mode="full", config_hash="h", started_at=T0)
    rows = [{"email_key": "a@x.io", "braze_id": "b1", "external_id": None}]
    with caplog.at_level(logging.WARNING, logger="reconcile.store.base"):
        store.upsert_braze_profiles(rows, T0, "r1")
        assert not caplog.records
        monkeypatch.setattr(base, "SLOW_WRITE_SECONDS", 0.0)
        store.upsert_braze_profiles(rows, T0, "r1")
    [record] = caplog.records
    assert "upsert_braze_profiles held the database's write lock" in record.getMessage()
    assert "a@x.io" not in record.getMessage()
