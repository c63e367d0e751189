"""The shared segment export's record on both backends: one holder per scope, rows read by
address, finished once, given up, dropped and pruned."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_one_holder_per_scope_and_rows_by_address(store_url: str) -> None:
    with Store.open(store_url) as store:
        first, row = store.claim_segment_export("run:r1", "all", "h1", T0)
        second, seen = store.claim_segment_export("run:r1", "all", "h2", T0 + timedelta(seconds=1))
        assert first and not second and seen["holder"] == "h1" and seen["status"] == "running"
        other, _ = store.claim_segment_export("run:r2", "all", "h2", T0)
        assert other, "another scope has its own export"
        frame = pd.DataFrame({"braze_id": ["b1", "b2", "b3", "b1"], "email_key": ["a@x.com", "a@x.com", "c@x.com", "a@x.com"],
                              "email": ["A@x.com", "a@x.com", "c@x.com", "A@x.com"], "external_id": ["u1", None, "u3", "u1"],
                              "email_subscribe": ["subscribed", "unsubscribed", None, "subscribed"]})
        assert store.add_segment_export_rows("run:r1", frame) == 3
        assert not store.finish_segment_export("run:r1", "h2", "ready", T0, profiles=3), "only the holder finishes"
        assert store.finish_segment_export("run:r1", "h1", "ready", T0, profiles=3)
        assert store.segment_export("run:r1")["status"] == "ready"
        rows = store.segment_export_rows("run:r1", ["a@x.com", "nobody@x.com"])
        assert sorted(rows["braze_id"]) == ["b1", "b2"] and rows["external_id"].isna().sum() == 1
        assert store.segment_export_rows("run:r2", ["a@x.com"]).empty
        again, _ = store.claim_segment_export("run:r1", "all", "h1", T0)
        assert not again, "a finished export is never started again"
        store.give_up_segment_export("run:r2", T0, "holder gone")
        assert store.segment_export("run:r2")["status"] == "unavailable"
        store.drop_segment_export("run:r1")
        assert store.segment_export("run:r1") is None and store.segment_export_rows("run:r1", ["a@x.com"]).empty
        assert store.prune_segment_exports(T0 + timedelta(days=1)) == 1 and store.segment_export("run:r2") is None
