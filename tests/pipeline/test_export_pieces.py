"""External ids are exported a piece at a time (answers turned into frames as they come):
the result does not depend on the piece size."""

from __future__ import annotations

from reconcile.engine import extract
from reconcile.engine.plan import drift_keys
from reconcile.pipeline.run import plan_only


def test_the_profiles_read_in_pieces_equal_the_profiles_read_at_once(world, monkeypatch):
    w = world
    cfg = w.config("external_id")
    w.seed(cfg, subjects=150, drift=0.3)
    with w.runtime(cfg) as rt:
        whole = plan_only(rt)[1]
    monkeypatch.setattr(extract, "EXPORT_PIECE", 7)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt:
        pieces = plan_only(rt)[1]
    sizes = [len(c["body"]["external_ids"]) for c in w.braze.calls
             if c["path"] == "/users/export/ids" and "external_ids" in (c.get("body") or {})]
    assert sizes and max(sizes) <= 7
    assert sorted(drift_keys(pieces.drift)) == sorted(drift_keys(whole.drift))
    assert len(pieces.obs.observed.braze_profiles) == len(whole.obs.observed.braze_profiles)
    assert [a.content_hash() for a in pieces.plan.actions] == [a.content_hash() for a in whole.plan.actions]
