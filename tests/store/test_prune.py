"""Retention: `reconcile prune` counts first, deletes old history only, never live drift."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.reports.build import write_report
from reconcile.pipeline.prune import cutoff_for, recorded_prune
from reconcile.store.store import Store
from tests.reports.seed import EXT, report_config, seed_history

UTC = timezone.utc
LATER = datetime(2028, 4, 1, tzinfo=UTC)  # 24 months after the seeded March 2026


def test_prune_dry_run_counts_then_apply_deletes_history_but_keeps_live_drift(store: Store, store_url: str,
                                                                              tmp_path: Path) -> None:
    ids = seed_history(store)
    cfg = report_config(tmp_path, store_url)
    write_report(store, ids["applied"], cfg)
    write_report(store, ids["failed"], cfg)
    assert cutoff_for(LATER, 24) == datetime(2026, 4, 1, tzinfo=UTC)
    before = len(store.drift_items())
    run_id, dry = recorded_prune(store, cfg, lambda: LATER, apply=False)
    assert len(store.drift_items()) == before and store.get_run(ids["applied"]) is not None
    counts = dry.counts()
    # Ann's verified opt-out and Carl's resolved opt-in go; the deletion (corrected) and Bob's opt-out stay live
    assert counts["drift_items"] == 2
    # run 1 is still first-seen run of the live deletion; run 3 of Bob's opt-out; the refused and failed runs go
    assert sorted(dry.run_ids) == sorted([ids["refused"], ids["failed"]])
    assert counts["report_files"] == 3 and store.get_run(run_id)["status"] == "dry_run"
    assert store.get_run(run_id)["summary"]["drift_items"] == 2

    run_id, done = recorded_prune(store, cfg, lambda: LATER + timedelta(seconds=1), apply=True)
    assert done.counts() == counts
    left = store.drift_items()
    assert {(i["subject_key"], i["status"]) for i in left} >= {(EXT, "corrected")}
    assert all(i["status"] in ("open", "corrected", "reported") for i in left)
    assert store.get_run(ids["refused"]) is None and store.get_run(ids["failed"]) is None
    assert store.get_run(ids["applied"]) is not None and store.actions(plan_id="plan-3")
    assert not (cfg.report.dir / f"{ids['failed']}.html").exists()
    assert (cfg.report.dir / f"{ids['applied']}.html").exists()
    assert store.get_run(run_id)["status"] == "applied" and store.get_run(run_id)["mode"] == "prune"


def test_nothing_younger_than_the_retention_goes(store: Store, store_url: str, tmp_path: Path) -> None:
    seed_history(store)
    _, dry = recorded_prune(store, report_config(tmp_path, store_url), lambda: datetime(2027, 1, 1, tzinfo=UTC),
                            apply=True)
    assert dry.counts()["runs"] == 0 and dry.counts()["drift_items"] == 0


def test_the_prune_command_is_a_dry_run_unless_told(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    config = tmp_path / "job.toml"
    config.write_text(f'[state]\nurl = "sqlite:///{db}"\n[report]\ndir = "{tmp_path / "reports"}"\n'
                      '[sandbox]\nenabled = true\n[mapping]\nemail_purpose = "email"\n'
                      '[ketch]\norganization = "o"\nproperty = "p"\njurisdiction = "j"\n')
    with Store.open(f"sqlite:///{db}") as store:
        seed_history(store)
    runner = CliRunner()
    out = runner.invoke(cli, ["--config", str(config), "prune"])
    assert out.exit_code == 0, out.output
    assert "would remove" in out.output and "dry run: nothing was deleted" in out.output
    report = runner.invoke(cli, ["--config", str(config), "report", "--job", "nightly", "--format", "md",
                                 "--as-of", "2026-03-13T12:00:00+00:00"])
    assert report.exit_code == 0, report.output
    path = Path(report.output.strip().removeprefix("report: "))
    text = path.read_text()
    assert "Reconciliation run 20260312T090000-dddddd" in text and "breached 1" in text
    csv_out = runner.invoke(cli, ["--config", str(config), "report", "20260311T090000-cccccc", "--format", "csv",
                                  "--out", str(tmp_path / "csv")])
    assert csv_out.exit_code == 0 and len(csv_out.output.splitlines()) == 7
    requests = (tmp_path / "csv" / "report-20260311T090000-cccccc.requests.csv").read_text()
    assert requests.startswith("subject_key,request_date,request_date_source,nature,manner")
    missing = runner.invoke(cli, ["--config", str(config), "report", "no-such-run"])
    assert missing.exit_code == 1 and "no run 'no-such-run'" in missing.output
