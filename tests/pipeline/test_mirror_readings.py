"""The Ketch mirror serves what a Ketch read would, under every reading of Ketch's answers:
204 or `{}` for an identity with no choice, legal-basis defaults without `collectedAt`, a
subscriptions answer that leaves a topic out, bare purposes and flat topics. A first pass
fills the mirror from the Ketch API over loopback; a second pass is served from it with no
Ketch request, and its frames equal a direct Ketch read's, read whole or in batches."""

from __future__ import annotations

import pandas as pd
import pytest

from reconcile.engine import extract as ex
from reconcile.engine.identity import normalize
from reconcile.pipeline.ketch_mirror import MirrorPlan, read_ketch

READINGS = {
    "204": {"empty_style": "204"},
    "empty object": {"empty_style": "empty_object"},
    "legal-basis defaults": {"unknown_identity": "defaults",
                             "default_topics": {"newsletter": {"email": "denied"}, "promotions": {"email": "denied"}},
                             "default_controls": {"global_unsubscribe": "denied", "do_not_contact": "denied"}},
    "a topic left out": {"hide_topics": ("promotions",)},
    "bare purposes, flat topics": {"purpose_shape": "bare", "topic_shape": "flat"},
}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.parametrize("batch", [ex.KETCH_BATCH, 7])
@pytest.mark.parametrize("reading", list(READINGS))
def test_the_mirror_serves_what_a_ketch_read_gives(world, reading, batch, monkeypatch):
    w = world
    monkeypatch.setattr(ex, "KETCH_BATCH", batch)  # 7: the subjects read and served in many batches
    cfg = w.config()
    w.seed(cfg, subjects=120, drift=0.3)
    for name, value in READINGS[reading].items():
        setattr(w.ketch, name, value)
    raw = pd.read_csv(w.tmp / "universe.csv", dtype="string")["identity"]
    universe, _ = normalize(raw, "email")
    plan = MirrorPlan(frozenset(), audit=False, fraction=1 / 30)
    with w.runtime(cfg) as rt:
        direct, direct_topics, failed = ex.extract_ketch(rt.ketch, universe, cfg, None)
        assert failed.empty
        read_ketch(rt, universe, plan)  # fills the mirror: every subject read once
        asked = len(w.ketch.calls)
        served, served_topics, failed = read_ketch(rt, universe, plan)
    assert len(w.ketch.calls) == asked, "the second pass is served from the mirror"
    assert failed.empty and plan.tally.from_mirror == len(universe) and plan.tally.corrected == 0
    pd.testing.assert_frame_equal(_sorted(served), _sorted(direct), check_dtype=False)
    pd.testing.assert_frame_equal(_sorted(served_topics), _sorted(direct_topics), check_dtype=False)
