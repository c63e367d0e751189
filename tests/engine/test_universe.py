"""Universe sources (semantics §2): SQL, CSV, Parquet, deletions, Braze lists, open drift, tombstones."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from reconcile.config import SqlSource, UniverseConfig
from reconcile.engine.identity import normalize
from reconcile.engine.universe import Sources, build_universe, pick_slice
from reconcile.pipeline.sources import load_deletions, load_listed
from reconcile.errors import DataError

SINCE = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _empty(*cols: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in cols})


def sources(**kw) -> Sources:
    base = dict(listed=_empty("identity"), deletions=_empty("identity", "requested_at"),
                unsubscribed=_empty("email", "unsubscribed_at"), bounced=_empty("email", "hard_bounced_at"),
                open_drift=_empty("subject_key", "identity"), tombstones=_empty("subject_key", "identity"))
    return Sources(**{**base, **kw})


def test_emails_are_trimmed_and_case_folded_and_bad_ones_reported():
    valid, invalid = normalize(pd.Series([" Jane@Example.COM ", "jane@example.com", "not-an-email", "", None,
                                          "a@b", "x" * 250 + "@example.com"]), "email")
    assert valid["subject_key"].tolist() == ["jane@example.com", "jane@example.com"]
    assert valid["identity"].tolist() == ["Jane@Example.COM", "jane@example.com"]
    assert sorted(invalid["reason"]) == sorted(["malformed email address", "empty identity", "empty identity",
                                                "malformed email address", "email longer than 254 characters"])


def test_union_of_every_source_one_row_per_subject():
    u, exc = build_universe(sources(
        listed=pd.DataFrame({"identity": ["A@x.io", "b@x.io", "bad"]}),
        deletions=pd.DataFrame({"identity": [" a@X.io"], "requested_at": ["2026-11-20T00:00:00Z"]}),
        unsubscribed=pd.DataFrame({"email": ["c@x.io"], "unsubscribed_at": ["2026-11-21T00:00:00Z"]}),
        open_drift=pd.DataFrame({"subject_key": ["d@x.io"], "identity": ["d@x.io"]}),
        tombstones=pd.DataFrame({"subject_key": ["e@x.io"], "identity": ["E@x.io"]})), "email")
    rows = u.set_index("subject_key")
    assert list(rows.index) == ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"]
    assert rows.loc["a@x.io", "deletion_requested"] and rows.loc["a@x.io", "sources"] == "deletions+list"
    assert rows.loc["a@x.io", "deletion_requested_at"] == pd.Timestamp("2026-11-20", tz="UTC")
    assert rows.loc["e@x.io", "tombstoned"] and not rows.loc["b@x.io", "tombstoned"]
    assert exc.to_dict("records") == [{"identity": "bad", "source": "list", "reason": "malformed email address"}]


def test_sql_source_any_url_and_since_binding(tmp_path):
    db = tmp_path / "users.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (email TEXT, updated_at TEXT)"))
        conn.execute(sa.text("INSERT INTO users VALUES ('old@x.io', '2026-10-01'), ('new@x.io', '2026-11-15')"))
    engine.dispose()
    query = "SELECT email AS identity, updated_at FROM users"
    cfg = UniverseConfig(sql=SqlSource(url=f"sqlite:///{db}", query=query))
    assert sorted(load_listed(cfg)["identity"]) == ["new@x.io", "old@x.io"]
    assert load_listed(cfg, SINCE)["identity"].tolist() == ["new@x.io"]  # filtered on updated_at
    bound = UniverseConfig(sql=SqlSource(url=f"sqlite:///{db}", query=query + " WHERE updated_at > :since"))
    assert load_listed(bound, SINCE)["identity"].tolist() == ["new@x.io"]
    with pytest.raises(DataError, match="no column 'identity'"):
        load_listed(UniverseConfig(sql=SqlSource(url=f"sqlite:///{db}", query="SELECT email FROM users")))
    with pytest.raises(DataError, match="query failed"):
        load_listed(UniverseConfig(sql=SqlSource(url=f"sqlite:///{db}", query="SELECT nope FROM missing")))


def test_csv_and_parquet_files(tmp_path):
    csv = tmp_path / "u.csv"
    csv.write_text("email,name\nA@x.io,A\n")
    pq = tmp_path / "u.parquet"
    pd.DataFrame({"email": ["b@x.io"]}).to_parquet(pq)
    cfg = UniverseConfig(csv=csv, parquet=pq, identity_column="email")
    assert load_listed(cfg)["identity"].tolist() == ["A@x.io", "b@x.io"]
    assert load_listed(cfg, SINCE).empty  # no updated_at: left to full sweeps
    with pytest.raises(DataError, match="no column 'identity'.*identity_column"):
        load_listed(UniverseConfig(csv=csv))
    dels = tmp_path / "d.csv"
    dels.write_text("identity,requested_at\nz@x.io,2026-11-01\n")
    assert load_deletions(UniverseConfig(deletions_csv=dels))["identity"].tolist() == ["z@x.io"]


def test_slices_partition_listed_subjects_and_keep_everything_else():
    listed = pd.DataFrame({"identity": [f"u{i}@x.io" for i in range(300)]})
    u, _ = build_universe(sources(listed=listed, deletions=pd.DataFrame({"identity": ["u1@x.io"],
                                                                          "requested_at": [""]})), "email")
    parts = [set(pick_slice(u, 3, i)["subject_key"]) for i in range(3)]
    assert set().union(*parts) == set(u["subject_key"])
    assert all("u1@x.io" in p for p in parts), "deletion subjects are in every slice"
    assert all(60 < len(p) < 140 for p in parts)
