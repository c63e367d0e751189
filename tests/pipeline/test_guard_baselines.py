"""The shrink guard compares like with like, over loopback HTTP with a real state store.

From a fresh state database an hourly incremental job, a nightly full job and a sliced job
all apply in any order; an identity list that collapsed is still refused in each scope;
`plan` shows every guard's verdict, "no changes" included, and exits with the refusing
guard's code.
"""

from __future__ import annotations

import re
from datetime import timedelta

from reconcile.errors import ExitCode
from reconcile.pipeline import plan_only, run_job
from reconcile.pipeline.session import open_session

LOOSE = {"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0, "max_deletions": 100000,
         "max_subscribe_fraction": 1.0}
DONE = {"applied", "in_sync"}


def runtime(w, cfg, at):
    return open_session(cfg, {"BRAZE_API_KEY": w.key}, clock=lambda: at)


def empty_identity_list(cfg) -> None:
    cfg.universe.csv.write_text("identity\n", encoding="utf-8")


def test_fresh_database_incremental_incremental_full_incremental_and_slices_all_apply(pg_world):
    w = pg_world
    cfg = w.config(guards=LOOSE)
    w.seed(cfg, subjects=150, drift=0.1)
    sliced = w.config(guards=LOOSE, universe={"slices": 3})
    order = [("hourly", "incremental", cfg), ("hourly", "incremental", cfg), ("nightly", "full", cfg),
             ("hourly", "incremental", cfg), ("sweep", "full", sliced), ("sweep", "full", sliced),
             ("sweep", "full", sliced), ("hourly", "incremental", cfg)]
    results = []
    for i, (job, mode, c) in enumerate(order):
        with runtime(w, c, w.now + timedelta(hours=i)) as rt:
            results.append((job, mode, run_job(rt, mode=mode, job=job)))
    for job, mode, r in results:
        assert r.exit_code == ExitCode.OK and r.status in DONE, (job, mode, r.status, r.messages)
    with runtime(w, cfg, w.now + timedelta(hours=20)) as rt:
        runs = {r["run_id"]: r for r in rt.store.list_runs(50)}
    scopes = [runs[r.run_id]["summary"]["guard_scope"] for _, _, r in results]
    assert [s["slice"] for s in scopes[4:7]] == [0, 1, 2], "each sliced fire is its own slice"
    first = runs[results[0][2].run_id]["summary"]["guard_verdicts"]
    assert {v["guard"] for v in first} == {"empty_extract", "extract_shrink", "max_deletions",
                                           "max_deletion_fraction", "max_unsubscribe_fraction",
                                           "max_subscribe_fraction"}
    shrink = next(v for v in first if v["guard"] == "extract_shrink")
    assert "no comparable earlier run (incremental runs of job hourly)" in shrink["message"]
    second = next(v for v in runs[results[1][2].run_id]["summary"]["guard_verdicts"]
                  if v["guard"] == "extract_shrink")
    assert "compared with the last incremental run" in second["message"]
    assert re.search(r"identity list (\d{3}) -> \1;", second["message"]), second["message"]
    # a slice is compared with the same slice of the job, never the whole: the second sweep's slices
    for i in range(3):
        with runtime(w, sliced, w.now + timedelta(hours=30 + i)) as rt:
            again = run_job(rt, mode="full", job="sweep")
            assert again.exit_code == ExitCode.OK, again.messages
            verdict = next(v for v in rt.store.get_run(again.run_id)["summary"]["guard_verdicts"]
                           if v["guard"] == "extract_shrink")
            assert f"compared with the last full run {results[4 + i][2].run_id}" in verdict["message"]


def test_a_collapsed_identity_list_is_refused_in_every_scope(pg_world):
    w = pg_world
    cfg = w.config(guards=LOOSE)
    w.seed(cfg, subjects=120, drift=0.1)
    with runtime(w, cfg, w.now) as rt:
        assert run_job(rt, mode="full", job="nightly").exit_code == ExitCode.OK
    with runtime(w, cfg, w.now + timedelta(hours=1)) as rt:
        assert run_job(rt, mode="incremental", job="hourly").exit_code == ExitCode.OK
    empty_identity_list(cfg)
    w.braze.calls.clear()
    for i, (job, mode) in enumerate([("nightly", "full"), ("hourly", "incremental"), ("nightly", "full")]):
        with runtime(w, cfg, w.now + timedelta(hours=2 + i)) as rt:
            r = run_job(rt, mode=mode, job=job)
        assert r.status == "refused" and r.exit_code == ExitCode.GUARDS["extract_shrink"], (job, r.messages)
        assert re.search(r"identity list shrank from 1\d\d to 0", r.messages[0]), r.messages
    assert w.writes() == [], "a refused run writes nothing"


def test_incremental_windows_are_not_compared_with_each_other(pg_world):
    """A busy window (many open drift items) then a quiet one: the quiet one applies."""
    w = pg_world
    cfg = w.config(guards=LOOSE)
    w.seed(cfg, subjects=200, drift=0.3)
    with runtime(w, cfg, w.now) as rt:
        busy = run_job(rt, mode="incremental", job="hourly")  # no watermark: the whole list
    with runtime(w, cfg, w.now + timedelta(hours=1)) as rt:
        quiet = run_job(rt, mode="incremental", job="hourly")
        universes = [rt.store.get_run(r.run_id)["universe_count"] for r in (busy, quiet)]
    assert universes[1] < universes[0] / 2, universes  # it shrank by more than max_shrink_fraction
    assert quiet.exit_code == ExitCode.OK and quiet.status in DONE, quiet.messages


def test_no_baseline_and_a_near_empty_universe_is_refused_and_says_so(world):
    w = world
    cfg = w.config(guards={**LOOSE, "min_universe": 50})
    w.seed(cfg, subjects=20, drift=0.0)
    with runtime(w, cfg, w.now) as rt:
        r = run_job(rt, mode="full", job="nightly")
    assert r.exit_code == ExitCode.GUARDS["empty_extract"]
    assert "below guards.min_universe = 50, and there is no comparable earlier run (full runs of job nightly)" \
        in r.messages[0]
    with runtime(w, cfg, w.now + timedelta(hours=1)) as rt:  # a refused run is never a baseline
        assert run_job(rt, mode="full", job="nightly").exit_code == ExitCode.GUARDS["empty_extract"]
        allowed = run_job(rt, mode="full", job="nightly", overrides={"empty_extract"})
    assert allowed.exit_code == ExitCode.OK
    with runtime(w, cfg, w.now + timedelta(hours=2)) as rt:  # now there is one
        assert run_job(rt, mode="full", job="nightly").exit_code == ExitCode.OK


def test_plan_shows_every_verdict_on_a_collapsed_universe_with_no_changes(world):
    from click.testing import CliRunner

    from reconcile.cli.main import cli

    w = world
    (w.tmp / "job.toml").write_text(w.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\n"
                                           "max_deletion_fraction = 1.0\nmax_deletions = 100000\n"))
    from reconcile.config import load_config

    for name in ("universe.csv", "deletions.csv"):
        (w.tmp / name).write_text("identity\n")
    cfg = load_config(w.tmp / "job.toml")
    w.seed(cfg, subjects=100, drift=0.0)
    env = {"BRAZE_API_KEY": w.key}
    runner = CliRunner()
    first = runner.invoke(cli, ["--config", str(w.tmp / "job.toml"), "-q", "run"], env=env)
    assert first.exit_code == 0, first.output
    healthy = runner.invoke(cli, ["--config", str(w.tmp / "job.toml"), "-q", "plan"], env=env)
    assert healthy.exit_code == 0, healthy.output
    assert "No changes. Braze matches Ketch" in healthy.output
    for guard in ("empty_extract", "extract_shrink", "max_deletions", "max_deletion_fraction",
                  "max_unsubscribe_fraction", "max_subscribe_fraction"):
        assert f"ok      {guard}" in healthy.output, healthy.output
    empty_identity_list(cfg)
    collapsed = runner.invoke(cli, ["--config", str(w.tmp / "job.toml"), "-q", "plan"], env=env)
    assert collapsed.exit_code == ExitCode.GUARDS["extract_shrink"], collapsed.output
    assert "No changes. Braze matches Ketch" not in collapsed.output
    assert "but apply would be refused" in collapsed.output
    assert "REFUSE  extract_shrink" in collapsed.output
    assert re.search(r"identity list shrank from \d+ to 0", collapsed.output), collapsed.output
    as_json = runner.invoke(cli, ["--config", str(w.tmp / "job.toml"), "-q", "plan", "--format", "json"], env=env)
    import json

    doc = json.loads(as_json.stdout)
    assert {v["guard"] for v in doc["guard_verdicts"] if v["tripped"]} >= {"extract_shrink"}
    assert len({v["guard"] for v in doc["guard_verdicts"]}) == 6


def test_plan_only_runs_of_a_report_job_are_a_baseline_unless_refused(world):
    w = world
    cfg = w.config(guards=LOOSE)
    w.seed(cfg, subjects=100, drift=0.1)
    with runtime(w, cfg, w.now) as rt:
        first, _ = plan_only(rt, "full", dry_run=True, job="report")
    with runtime(w, cfg, w.now + timedelta(hours=1)) as rt:
        second, planned = plan_only(rt, "full", dry_run=True, job="report")
    shrink = next(v for v in planned.verdicts if v.guard == "extract_shrink")
    assert f"the last full run {first.run_id}" in shrink.message
