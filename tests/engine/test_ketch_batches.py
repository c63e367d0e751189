"""Ketch is read in batches, each turned into frame rows before the next is read: the
frames, the failures, the progress and the refusal of a mostly failed read are those of
one read of every identity, whatever the batch size."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.clients.ketch_parse import ConsentState, KetchRecord, SubscriptionState
from reconcile.config import parse_config
from reconcile.engine import extract as ex
from reconcile.errors import TransientApiError

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _config(tmp: Path):
    return parse_config({
        "ketch": {"organization": "acme", "property": "web", "environment": "production", "jurisdiction": "default"},
        "mapping": {"email_purpose": "email_marketing", "global_control": "global_unsubscribe",
                    "global_control_engaged": "granted",
                    "topics": [{"topic": "news", "channel": "email", "subscription_group_id": "sg-news"}]},
    }, tmp)


def _record(identity: str, rng: random.Random) -> KetchRecord | None:
    kind = rng.randrange(4)
    if kind == 0:
        return None  # no record: Ketch answered 204 or {}
    consent = ConsentState({"email_marketing": rng.random() < 0.5}, AT) if kind != 2 else None
    subs = SubscriptionState({("news", "email"): rng.choice(["granted", "denied"])},
                             {"global_unsubscribe": rng.choice(["granted", "denied"])}, AT) if kind != 3 else None
    return KetchRecord(identity, consent, subs)


class FakeKetch:
    """Answers every identity from `answers`; an identity in `failing` fails its lookup."""

    def __init__(self, answers: dict[str, KetchRecord | None], failing: set[str]):
        self.answers, self.failing = answers, failing
        self.calls: list[list[str]] = []

    def fetch_many(self, space: str, values: list[str], purposes: Any = None, *, progress: Any = None,
                   on_error: Any = None) -> dict[str, KetchRecord]:
        self.calls.append(list(values))
        out = {}
        for done, value in enumerate(values, 1):
            if value in self.failing:
                on_error(value, TransientApiError("unavailable", status_code=503, service="ketch"))
            elif self.answers[value] is not None:
                out[value] = self.answers[value]
            if progress:
                progress(done, len(values))
        return out


def _universe(n: int) -> pd.DataFrame:
    ids = [f"u{i}@x.com" for i in range(n)]
    return pd.DataFrame({"subject_key": pd.array(ids, dtype="string"), "identity": pd.array(ids, dtype="string")})


def _read(universe: pd.DataFrame, ketch: FakeKetch, cfg: Any, batch: int, monkeypatch: pytest.MonkeyPatch):
    seen: list[tuple[int, int]] = []
    with monkeypatch.context() as m:
        m.setattr(ex, "KETCH_BATCH", batch)
        out = ex.extract_ketch(ketch, universe, cfg, lambda stage, done, total: seen.append((done, total)))
    return out, seen


@given(n=st.integers(0, 60), batch=st.integers(1, 25), seed=st.integers(0, 10**6))
@settings(max_examples=60, deadline=None)
def test_batched_reads_equal_one_read(tmp_path_factory, n: int, batch: int, seed: int) -> None:
    monkeypatch = pytest.MonkeyPatch()
    cfg = _config(tmp_path_factory.mktemp("cfg"))
    rng = random.Random(seed)
    universe = _universe(n)
    answers = {i: _record(i, rng) for i in universe["identity"]}
    failing = {i for i in universe["identity"] if rng.random() < 0.2}
    failing = set(sorted(failing)[: max(0, (n // 2))])  # never more than half: no refusal here
    whole, _ = _read(universe, FakeKetch(answers, failing), cfg, 10**6, monkeypatch)
    ketch = FakeKetch(answers, failing)
    parts, seen = _read(universe, ketch, cfg, batch, monkeypatch)
    for a, b in zip(whole, parts):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert [len(c) for c in ketch.calls] == ([min(batch, n - s) for s in range(0, n, batch)] or [0])
    assert sorted(sum(ketch.calls, [])) == sorted(universe["identity"])
    done = [d for d, _ in seen]
    assert done == sorted(done) and all(total == n for _, total in seen) and (n == 0 or done[-1] == n)


def test_failures_in_one_batch_are_judged_over_the_whole_read(tmp_path: Path, monkeypatch) -> None:
    cfg = _config(tmp_path)
    universe = _universe(40)
    rng = random.Random(1)
    answers = {i: _record(i, rng) for i in universe["identity"]}
    first_batch = set(universe["identity"][:10])  # every lookup of batch one fails: 10 of 40
    (ketch_df, _topics, failed), _ = _read(universe, FakeKetch(answers, first_batch), cfg, 10, monkeypatch)
    assert set(failed["identity"]) == first_batch
    assert not set(ketch_df["subject_key"]) & first_batch
    most = set(universe["identity"][:21])  # 21 of 40 fail: more than half of the whole read
    with pytest.raises(TransientApiError, match="21 of 40"):
        _read(universe, FakeKetch(answers, most), cfg, 10, monkeypatch)
