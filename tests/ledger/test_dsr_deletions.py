"""Deletion files and queries in Ketch's DSR record shape: only erasure rights are deleted,
the other rights are reported as ignored with their count."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from reconcile.config import UniverseConfig, parse_config
from reconcile.config.model import SqlSource
from reconcile.pipeline.sources import load_deletions
from reconcile.errors import ConfigError, DataError
from reconcile.pipeline.job import run_job

HEADER = "request_id,subject,identity_space,email,right_code,canonical_right_code,submitted_at\n"


def test_a_dsr_file_with_access_and_erasure_rows_deletes_only_the_erasures(world):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=50, drift=0.0)
    emails = [line for line in (w.tmp / "universe.csv").read_text().splitlines()[1:]][:6]
    rows = [("r1", emails[0], "erasure", "delete"), ("r2", emails[1], "access", "get"),
            ("r3", emails[2], "portability", "get"), ("r4", emails[3], "rtbf", "DELETE"),
            ("r5", emails[4], "correct", "update")]
    (w.tmp / "deletions.csv").write_text(HEADER + "".join(
        f"{rid},{e},email,{e},{right},{canon},2026-01-0{i + 1}T10:00:00Z\n"
        for i, (rid, e, right, canon) in enumerate(rows)))
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        exceptions = rt.store.exceptions(result.run_id)
    assert result.status == "applied", result.messages
    assert result.counts["missed_deletion"] == 2
    assert w.braze.profiles_by_email(emails[0]) == [] and w.braze.profiles_by_email(emails[3]) == []
    for kept in emails[1:3] + emails[4:5]:
        assert len(w.braze.profiles_by_email(kept)) == 1
    reasons = {e["reason"] for e in exceptions if e["source"] == "deletions"}
    assert "2 request(s) with right 'get' ignored: not an erasure right (universe.deletions_rights)" in reasons
    assert "1 request(s) with right 'update' ignored: not an erasure right (universe.deletions_rights)" in reasons


def test_the_submission_time_is_the_request_time_and_external_id_keys_use_subject(tmp_path):
    path = tmp_path / "dsr.csv"
    path.write_text(HEADER + "r1,u000001,account_id,a@example.com,erasure,delete,2026-02-01T00:00:00Z\n"
                    "r2,u000002,account_id,b@example.com,access,get,2026-02-02T00:00:00Z\n")
    got = load_deletions(UniverseConfig(deletions_csv=path), "external_id")
    assert got.to_dict("records") == [{"identity": "u000001", "requested_at": pd.Timestamp("2026-02-01T00:00:00Z"),
                                       "email": "a@example.com"}]
    assert got.attrs["ignored_rights"] == {"get": 1}
    by_email = load_deletions(UniverseConfig(deletions_csv=path), "email")
    assert list(by_email["identity"]) == ["a@example.com"]


def test_a_dsr_query_with_mapped_columns_and_rights(tmp_path):
    db = tmp_path / "dsr.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dsr (who TEXT, what TEXT, at TEXT)")
        conn.executemany("INSERT INTO dsr VALUES (?, ?, ?)", [("a@example.com", "erase", "2026-01-01"),
                                                             ("b@example.com", "get", "2026-01-02"),
                                                             ("c@example.com", None, "2026-01-03")])
    cfg = UniverseConfig(deletions_sql=SqlSource(url=f"sqlite:///{db}", query="SELECT * FROM dsr"),
                         deletions_format="ketch_dsr", deletions_right_column="what", deletions_rights=("erase",),
                         deletions_identity_column="who", deletions_requested_at_column="at")
    got = load_deletions(cfg)
    assert got[["identity", "requested_at"]].to_dict("records") == [{"identity": "a@example.com",
                                                                    "requested_at": pd.Timestamp("2026-01-01", tz="UTC")}]
    assert got.attrs["ignored_rights"] == {"get": 1, "(none)": 1}


def test_shape_problems_are_clear(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("request_id,subject,canonical_right_code\nr1,x,delete\n")
    with pytest.raises(DataError, match="need the column\\(s\\) email"):
        load_deletions(UniverseConfig(deletions_csv=path))
    path.write_text("who,requested_at\nx@example.com,2026-01-01\n")
    with pytest.raises(DataError, match="no column 'identity'.*deletions_format"):
        load_deletions(UniverseConfig(deletions_csv=path))
    with pytest.raises(ConfigError, match="universe.deletions_format"):
        parse_config({"universe": {"deletions_format": "csv"}, "sandbox": {"enabled": True}}, tmp_path)


def test_the_identity_shape_is_unchanged(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("identity,requested_at,canonical_right_code\nx@example.com,2026-01-01,get\n")
    got = load_deletions(UniverseConfig(deletions_csv=path))
    assert list(got["identity"]) == ["x@example.com"] and got.attrs["ignored_rights"] == {}
    assert isinstance(got, pd.DataFrame)
