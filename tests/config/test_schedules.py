"""schedules.toml: jobs, triggers and their fire times (computed from fixed datetimes, across
DST changes), every problem reported at once with the job and key, and `schedule show`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.errors import ConfigError
from reconcile.config.schedules import crontab_weekdays, load_schedules, parse_schedules

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc


def job(**keys) -> dict:
    return {"name": "j", "config": "schedules.toml", "cron": "0 2 * * *", **keys}


def one(tz: str = "UTC", **keys):
    (parsed,) = parse_schedules({"timezone": tz, "job": [job(**keys)]}, ROOT)
    return parsed


def iso(times) -> list[str]:
    return [t.isoformat() for t in times]


def test_the_shipped_schedules_file_is_valid_and_fires_when_it_says():
    jobs = {j.name: j for j in load_schedules(ROOT / "schedules.toml")}
    nightly = jobs["sandbox-full-nightly"]
    assert (nightly.mode, nightly.scope, nightly.misfire_grace_time) == ("apply", "full", 3600)
    assert nightly.config == (ROOT / "jobs" / "sandbox.toml").resolve()
    after = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
    assert iso(nightly.next_runs(after, 2)) == ["2026-11-29T02:00:00+00:00", "2026-11-30T02:00:00+00:00"]
    assert jobs["sandbox-incremental-hourly"].next_runs(after, 1) == [datetime(2026, 11, 28, 11, 0, tzinfo=UTC)]
    report = jobs["sandbox-drift-report"]
    assert (report.dry_run, report.run_mode, report.slices) == (True, "full", 4)
    # 1-5 is Monday to Friday as in crontab (APScheduler 3 alone would read Tuesday to Saturday)
    assert iso(report.next_runs(datetime(2026, 11, 27, 12, 0, tzinfo=UTC), 2)) == [
        "2026-11-30T07:30:00+01:00", "2026-12-01T07:30:00+01:00"]


def test_a_daily_job_fires_once_across_both_dst_changes():
    daily = one("Europe/Berlin", cron="30 2 * * *")
    # 2026-03-29: 02:00 -> 03:00, so 02:30 does not exist: it fires once, at 03:30 CEST
    assert iso(daily.next_runs(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 3)) == [
        "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    # 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice: it fires at the first one only
    assert iso(daily.next_runs(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 3)) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]


def test_an_hourly_job_fires_every_real_hour_across_dst():
    hourly = one("Europe/Berlin", cron="@hourly")
    assert iso(hourly.next_runs(datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4)) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00"]
    gaps = hourly.next_runs(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 3)
    assert iso(gaps) == ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00", "2026-03-29T05:00:00+02:00"]
    assert (gaps[1] - gaps[0]).total_seconds() == 3600


def test_intervals_are_anchored_so_every_replica_computes_the_same_fires():
    every = one(cron=None, interval="15m")
    a = every.next_runs(datetime(2026, 5, 1, 10, 7, 12, tzinfo=UTC), 2)
    b = one(cron=None, interval=900).next_runs(datetime(2026, 5, 1, 10, 1, 0, tzinfo=UTC), 2)
    assert iso(a) == ["2026-05-01T10:15:00+00:00", "2026-05-01T10:30:00+00:00"]
    assert iso(b) == ["2026-05-01T10:15:00+00:00", "2026-05-01T10:30:00+00:00"]


@pytest.mark.parametrize("alias, expected", [
    ("@daily", "2026-05-02T00:00:00+00:00"), ("@midnight", "2026-05-02T00:00:00+00:00"),
    ("@weekly", "2026-05-03T00:00:00+00:00"), ("@monthly", "2026-06-01T00:00:00+00:00"),
    ("@yearly", "2027-01-01T00:00:00+00:00"), ("@annually", "2027-01-01T00:00:00+00:00"),
])
def test_cron_aliases(alias, expected):
    assert iso(one(cron=alias).next_runs(datetime(2026, 5, 1, 10, 0, tzinfo=UTC), 1)) == [expected]


@pytest.mark.parametrize("field, names", [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("6,0", "sat,sun"), ("5-7", "fri,sat,sun"),
    ("*/2", "tue,thu,sat,sun"), ("mon-fri", "mon,tue,wed,thu,fri"), ("*", "*")])
def test_crontab_weekdays_are_read_as_crontab_does(field, names):
    assert crontab_weekdays(field) == names


def test_job_options_are_parsed():
    j = one(scope="sliced", slices=8, mode="report", allow=["extract_shrink"], guards={"max_deletions": 500},
            misfire_grace_time=120, notify=[{"kind": "slack", "url_env": "SLACK_URL"},
                                            {"kind": "webhook", "url_env": "HOOK_URL"}])
    assert (j.scope, j.slices, j.mode, j.allow, j.guards, j.misfire_grace_time) == (
        "sliced", 8, "report", ("extract_shrink",), (("max_deletions", 500),), 120)
    assert [(n.kind, n.url_env) for n in j.notify] == [("slack", "SLACK_URL"), ("webhook", "HOOK_URL")]

    from reconcile.config.model import Config

    cfg = j.job_config(Config())
    assert (cfg.universe.slices, cfg.guards.max_deletions) == (8, 500)


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_schedules(data, ROOT)
    return {p.key: p.problem for p in err.value.problems}


def test_every_problem_is_reported_with_the_job_and_key():
    found = problems_of({"timezone": "UTC", "colour": 1, "job": [
        {"name": "a", "config": "missing.toml", "cron": "61 * * * *", "mode": "sometimes", "scope": "partial",
         "misfire_grace_time": 0, "colour": "red", "misfire_grace_seconds": 5, "allow": ["nope"],
         "guards": {"max_deletions": 1.5, "max_unsubscribe_fraction": 3, "speed": 1},
         "notify": [{"kind": "email", "url_env": "https://hooks.example/x"}, {"kind": "slack", "url_env": "S", "x": 1}]},
        {"name": "b", "config": "schedules.toml", "cron": "@reboot"},
        {"name": "b", "config": "schedules.toml", "cron": "0 1 * * *", "interval": "5m"},
        {"name": "c", "config": "schedules.toml", "cron": "0 0 1 * 1"},
        {"name": "d", "config": "schedules.toml", "interval": "soon", "timezone": "Mars/Olympus"},
        {"name": "e", "config": "schedules.toml", "mode": "full"},
    ]})
    assert set(found) == {
        "colour", "job[0] (a).config", "job[0] (a).cron", "job[0] (a).mode", "job[0] (a).scope",
        "job[0] (a).misfire_grace_time", "job[0] (a).colour", "job[0] (a).misfire_grace_seconds",
        "job[0] (a).allow", "job[0] (a).guards.max_deletions", "job[0] (a).guards.max_unsubscribe_fraction",
        "job[0] (a).guards.speed", "job[0] (a).notify[0].kind", "job[0] (a).notify[0].url_env",
        "job[0] (a).notify[1].x", "job[1] (b).cron", "job[2] (b).interval", "job (b)", "job[3] (c).cron",
        "job[4] (d).timezone", "job[5] (e).mode", "job[5] (e).cron"}
    assert "is used by job[1], job[2]" in found["job (b)"]
    assert "'@reboot' is not supported" in found["job[1] (b).cron"]
    assert "either" in found["job[3] (c).cron"]
    assert 'scope = "full"' in found["job[5] (e).mode"]


def test_renamed_and_old_layout_keys_say_what_to_write():
    with pytest.raises(ConfigError) as err:
        parse_schedules({"schedule": [{"name": "x"}]}, ROOT)
    assert "write jobs as [[job]] tables" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_schedules({"job": [job(misfire_grace_seconds=5)]}, ROOT)
    assert "rename it to misfire_grace_time" in str(err.value)


def test_schedule_show_works_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["schedule", "show", "--schedules", str(ROOT / "schedules.toml"), "--next", "2"])
    assert result.exit_code == 0, result.output
    assert "sandbox-full-nightly: apply, full, on '0 2 * * *' UTC" in result.output
    assert str((ROOT / "jobs" / "sandbox.toml").resolve()) in result.output
    monkeypatch.setenv("RECONCILE_SCHEDULES", str(ROOT / "schedules.toml"))
    assert "sandbox-drift-report" in CliRunner().invoke(cli, ["schedule", "show"]).output
    monkeypatch.delenv("RECONCILE_SCHEDULES")
    missing = CliRunner().invoke(cli, ["schedule", "show"])
    assert missing.exit_code == 1 and "pass --schedules PATH or set RECONCILE_SCHEDULES" in missing.output
    bad = tmp_path / "s.toml"
    bad.write_text("[[job]]\nname = 1\n")
    result = CliRunner().invoke(cli, ["schedule", "show", "--schedules", str(bad)])
    assert result.exit_code == 1 and "job[0].name" in result.output
