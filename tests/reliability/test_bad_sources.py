"""A mostly-malformed source stops the run before any write, naming the source; rejected
deletion requests make the run partial (exit 4) and are reported."""

from __future__ import annotations

import pandas as pd
import pytest

from reconcile.errors import DataError, ExitCode
from reconcile.pipeline.job import run_job


def _rows(path, column: str, values: list[str], extra: dict | None = None) -> None:
    pd.DataFrame({column: values, **(extra or {})}).to_csv(path, index=False)


def test_a_parquet_universe_of_garbage_stops_the_run_before_any_write(world, tmp_path) -> None:
    w = world
    cfg = w.config(universe={"parquet": "more.parquet"})
    w.seed(cfg, subjects=80, drift=0.2)
    pd.DataFrame({"identity": [f"not-an-email-{i}" for i in range(40)]}).to_parquet(tmp_path / "more.parquet")
    with w.runtime(cfg) as rt:
        with pytest.raises(DataError) as err:
            run_job(rt)
        run = rt.store.list_runs(1)[0]
    assert "universe.parquet" in str(err.value) and "40 of 40 rows" in str(err.value)
    assert "before any write" in str(err.value)
    assert w.writes() == [] and run["status"] == "failed" and run["exit_code"] == ExitCode.ERROR


def test_a_deletions_file_with_swapped_columns_stops_the_run(world, tmp_path) -> None:
    w = world
    cfg = w.config()
    truth = w.seed(cfg, subjects=80, drift=0.2)
    dels = pd.read_csv(tmp_path / "deletions.csv", dtype=str)
    assert len(dels) >= 1
    emails = [f"person{i}@example.com" for i in range(8)]
    pd.DataFrame({"identity": ["2026-01-0%d" % (i % 9 + 1) for i in range(8)], "requested_at": emails}).to_csv(
        tmp_path / "deletions.csv", index=False)
    with w.runtime(cfg) as rt, pytest.raises(DataError) as err:
        run_job(rt)
    assert "universe.deletions_csv" in str(err.value) and "8 of 8 rows" in str(err.value)
    assert w.writes() == [] and truth is not None


def test_a_few_bad_rows_are_exceptions_and_the_run_goes_on(world, tmp_path) -> None:
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=80, drift=0.2)
    uni = pd.read_csv(tmp_path / "universe.csv", dtype=str)
    bad = pd.DataFrame({"identity": ["+1@evil.com", "a\x00b@example.com", "x" * 300 + "@example.com"]})
    pd.concat([uni, bad]).to_csv(tmp_path / "universe.csv", index=False)
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        reasons = {e["reason"] for e in rt.store.exceptions(result.run_id) if e["source"] == "list"}
    assert result.exit_code == ExitCode.OK, result.messages
    assert any("'+'" in r for r in reasons) and any("control" in r for r in reasons)
    assert any("longer than 254" in r for r in reasons)


def test_a_ten_megabyte_field_is_refused_naming_row_and_column_not_the_value(world, tmp_path) -> None:
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=40, drift=0.2)
    uni = pd.read_csv(tmp_path / "universe.csv", dtype=str)
    uni["notes"] = ""
    uni.loc[3, "notes"] = "Z" * 10_000_000
    uni.to_csv(tmp_path / "universe.csv", index=False)
    with w.runtime(cfg) as rt, pytest.raises(DataError) as err:
        run_job(rt)
    assert "row 4, column 'notes'" in str(err.value) and "10000000 characters" in str(err.value)
    assert "ZZZZ" not in str(err.value) and w.writes() == []


def test_rejected_deletion_requests_make_the_run_partial_and_are_reported(world, tmp_path) -> None:
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=80, drift=0.2)
    dels = pd.read_csv(tmp_path / "deletions.csv", dtype=str)
    extra = pd.DataFrame({"identity": ["not-an-address", "+1@evil.com"], "requested_at": [dels["requested_at"][0]] * 2})
    pd.concat([dels, extra]).to_csv(tmp_path / "deletions.csv", index=False)
    with w.runtime(cfg) as rt:
        first = run_job(rt)
        rejected = [e for e in rt.store.exceptions(first.run_id) if e["source"] == "deletions"]
        second = run_job(rt)
    assert first.exit_code == ExitCode.PARTIAL and first.status == "partial"
    assert any("2 deletion request(s) rejected" in m for m in first.messages)
    assert {e["identity"] for e in rejected} == {"not-an-address", "+1@evil.com"}
    assert first.actions_sent > 0  # the valid corrections still went out
    assert second.exit_code == ExitCode.PARTIAL and second.actions_planned == 0  # in sync, still not clean
