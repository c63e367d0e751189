"""A time in a source that is not a time (engine/times.py) never reaches the plan as a guessed
date: in a deletions source (CSV, Parquet, SQL, Ketch DSR records) the row is quarantined to
the run's exceptions, named by source, row and column, and nothing is deleted for it; in an
identity list's `updated_at` the row is checked and reported."""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.config import SqlSource
from reconcile.config.model import UniverseConfig
from reconcile.engine.times import parse_time
from reconcile.engine.universe import Sources, build_universe
from reconcile.pipeline.sources import load_deletions, load_listed
from reconcile.errors import ExitCode
from reconcile.pipeline import run_job

KNOWN_BAD = ["0", "12", "1/2", "1/2/2026", "now", "today", "2026-02-30", "2026", "-1", "1e9", "March 1"]
printable = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
bad_times = st.one_of(st.sampled_from(KNOWN_BAD),
                      st.text(printable, min_size=1, max_size=20).filter(lambda t: t.strip() and parse_time(t) is None))
EMAILS = [f"person{i}@example.com" for i in range(4)]
TIMES = [f"2026-03-0{i + 1}T12:00:00Z" for i in range(4)]


def _empty(*cols: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in cols})


def _universe(listed: pd.DataFrame, deletions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = _empty("subject_key", "identity")
    return build_universe(Sources(listed, deletions, _empty("email"), _empty("email"), keys, keys), "email")


def _deletion_source(kind: str, tmp: Path, times: list) -> tuple[UniverseConfig, str, str]:
    """A deletions source of `kind` holding EMAILS with `times`: (config, its name, its time column)."""
    frame = pd.DataFrame({"identity": EMAILS, "requested_at": times})
    if kind == "csv":
        path = tmp / "deletions.csv"
        frame.to_csv(path, index=False)
        return UniverseConfig(deletions_csv=path), f"universe.deletions_csv {path}", "requested_at"
    if kind == "parquet":
        path = tmp / "deletions.parquet"
        frame.to_parquet(path)
        return UniverseConfig(deletions_csv=path), f"universe.deletions_csv {path}", "requested_at"
    if kind == "sql":
        path = tmp / "source.db"
        with sqlite3.connect(path) as conn:
            frame.astype(object).to_sql("dsr", conn, index=False)
        src = SqlSource(url=f"sqlite:///{path}", query="SELECT identity, requested_at FROM dsr ORDER BY identity")
        return UniverseConfig(deletions_sql=src), "universe.deletions_sql", "requested_at"
    path = tmp / "dsr.csv"  # Ketch's DSR records
    frame.rename(columns={"identity": "email", "requested_at": "submitted_at"}).assign(
        canonical_right_code="delete").to_csv(path, index=False)
    return UniverseConfig(deletions_csv=path), f"universe.deletions_csv {path}", "submitted_at"


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(["csv", "parquet", "sql", "ketch_dsr"]), bad_times, st.integers(0, 3))
@example("csv", "0", 0)  # the value dateutil read as a date
@example("sql", "1/2", 3)
@example("ketch_dsr", "12", 1)
@example("parquet", "now", 2)
def test_an_unparseable_time_in_any_deletion_source_is_quarantined_naming_source_row_and_column(
        kind: str, bad: str, pos: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        times = list(TIMES)
        times[pos] = bad
        cfg, what, column = _deletion_source(kind, Path(tmp), times)
        universe, exceptions = _universe(_empty("identity"), load_deletions(cfg, "email"))
    asked = dict(zip(universe["identity"], universe["deletion_requested_at"]))
    assert EMAILS[pos] not in asked  # quarantined: nothing is deleted for it
    assert asked == {e: pd.Timestamp(t) for i, (e, t) in enumerate(zip(EMAILS, TIMES)) if i != pos}
    row = exceptions[exceptions["identity"] == EMAILS[pos]]
    assert len(row) == 1 and row["source"].iloc[0] == "deletions"
    reason = row["reason"].iloc[0]
    assert reason.startswith(f"{what}: row {pos + 1}, column '{column}': ") and "is not a time" in reason
    assert "not carried out" in reason and "ISO 8601" in reason


def test_typed_parquet_times_outside_the_range_are_quarantined_too(tmp_path) -> None:
    path = tmp_path / "deletions.parquet"
    pd.DataFrame({"identity": EMAILS[:3], "requested_at": pd.to_datetime(["2026-03-01", "1970-01-01", None])}
                 ).to_parquet(path)
    universe, exceptions = _universe(_empty("identity"), load_deletions(UniverseConfig(deletions_csv=path), "email"))
    assert set(universe["identity"]) == {EMAILS[0], EMAILS[2]}  # an empty time is no time: the request stands
    assert universe["deletion_requested_at"].iloc[0] == pd.Timestamp("2026-03-01", tz="UTC")
    assert exceptions["reason"].str.contains("row 2, column 'requested_at': '1970-01-01 00:00:00'").any()


def test_epoch_numbers_in_parquet_read_as_seconds_and_zero_is_refused(tmp_path) -> None:
    path = tmp_path / "deletions.parquet"
    pd.DataFrame({"identity": EMAILS[:2], "requested_at": [1772366400, 0]}).to_parquet(path)
    universe, exceptions = _universe(_empty("identity"), load_deletions(UniverseConfig(deletions_csv=path), "email"))
    assert universe["deletion_requested_at"].tolist() == [pd.Timestamp("2026-03-01T12:00:00Z")]
    assert exceptions["reason"].str.contains("row 2, column 'requested_at': '0' is not a time").all()


def test_an_unparseable_updated_at_keeps_the_row_in_an_incremental_run_and_reports_it(tmp_path) -> None:
    since = datetime(2026, 3, 1, tzinfo=timezone.utc)
    frame = pd.DataFrame({"identity": EMAILS, "updated_at": ["2026-03-02T00:00:00Z", "1/2", "2026-01-01", ""]})
    csv, parquet, db = tmp_path / "u.csv", tmp_path / "u.parquet", tmp_path / "u.db"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    with sqlite3.connect(db) as conn:
        frame.to_sql("people", conn, index=False)
    sql = SqlSource(url=f"sqlite:///{db}", query="SELECT identity, updated_at FROM people")
    for cfg, what in ((UniverseConfig(csv=csv), f"universe.csv {csv}"),
                      (UniverseConfig(parquet=parquet), f"universe.parquet {parquet}"),
                      (UniverseConfig(sql=sql), "universe.sql")):
        universe, exceptions = _universe(load_listed(cfg, since, "email"), _empty("identity", "requested_at"))
        # changed after `since`, or with no readable time: checked (reading is safe); older: left to full runs
        assert set(universe["identity"]) == {EMAILS[0], EMAILS[1], EMAILS[3]}, what
        assert exceptions["reason"].tolist() == [f"{what}: row 2, column 'updated_at': '1/2' is not a time (accepted: "
                                                 f"{exceptions['reason'].iloc[0].split('(accepted: ')[1]}"]
        assert exceptions["reason"].iloc[0].endswith("; the subject is checked in this run")


def test_a_run_quarantines_the_request_deletes_the_others_and_ends_partial(world, tmp_path) -> None:
    w = world
    cfg = w.config()
    truth = w.seed(cfg, subjects=80, drift=0.2)
    dels = pd.read_csv(tmp_path / "deletions.csv", dtype=str, keep_default_na=False)
    listed = pd.read_csv(tmp_path / "universe.csv", dtype=str)["identity"]
    victim = next(e for e in listed if w.braze.profiles_by_email(e) and e not in set(dels["identity"]))
    ids = {p.braze_id for p in w.braze.profiles_by_email(victim)} | {
        p.external_id for p in w.braze.profiles_by_email(victim) if p.external_id}
    pd.concat([dels, pd.DataFrame({"identity": [victim], "requested_at": ["0"]})]).to_csv(
        tmp_path / "deletions.csv", index=False)
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        quarantined = [e for e in rt.store.exceptions(result.run_id) if e["source"] == "deletions"]
    assert result.exit_code == ExitCode.PARTIAL and result.status == "partial", result.messages
    assert any("1 deletion request(s) rejected" in m for m in result.messages)
    assert [e["identity"] for e in quarantined] == [victim]
    assert f"row {len(dels) + 1}, column 'requested_at': '0' is not a time" in quarantined[0]["reason"]
    deleted = [c for c in w.writes() if c["path"] == "/users/delete"]
    assert deleted and truth.injected["missed_deletion"]  # the valid requests were carried out
    sent = repr([c["body"] for c in deleted])
    assert victim not in sent and not any(i in sent for i in ids)
    assert w.braze.profiles_by_email(victim)  # nothing deleted on a guessed date
