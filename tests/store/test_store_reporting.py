"""The store's queries for reports on each backend (SQLite and PostgreSQL, see tests/conftest.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
KEYS = ["john_doe@example.com", "ann%50@example.com", "zoë@example.com", 'q"uo\\te@example.com']


@pytest.mark.parametrize("key", KEYS)
def test_subject_records_find_the_batches_naming_a_key_with_like_wildcards(store: Store, key: str) -> None:
    store.start_run("run-s", mode="full", config_hash="h", started_at=T0)
    store.save_plan("plan-s", "run-s", "fp", {"plan_id": "plan-s"}, T0)
    store.journal_plan("plan-s", "run-s", [
        {"action_id": "plan-s:0", "seq": 0, "endpoint": "/subscription/status/set", "kind": "group_unsubscribe",
         "payload": {}, "subject_keys": [key, "other@example.com"], "drift_ids": []},
        {"action_id": "plan-s:1", "seq": 1, "endpoint": "/subscription/status/set", "kind": "group_unsubscribe",
         "payload": {}, "subject_keys": [key.replace("_", "x").replace("%", "y") + ".not"], "drift_ids": []},
    ], T0)

    journaled = store.subject_records([key])["journaled"]

    assert [a["action_id"] for a in journaled] == ["plan-s:0"]

