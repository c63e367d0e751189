"""`reconcile plan` and `reconcile run` on a deletions file holding a time that is not a time:
the request is quarantined (named by file, row and column), the others go ahead."""

from __future__ import annotations

import json

import pandas as pd

from reconcile.errors import ExitCode


def test_plan_and_run_quarantine_a_deletion_whose_time_is_not_a_time(job, tmp_path) -> None:
    w = job.world
    truth = job.seed(subjects=80, drift=0.2)
    dels = pd.read_csv(w.tmp / "deletions.csv", dtype=str, keep_default_na=False)
    listed = pd.read_csv(w.tmp / "universe.csv", dtype=str)["identity"]
    victim = next(e for e in listed if w.braze.profiles_by_email(e) and e not in set(dels["identity"]))
    pd.concat([dels, pd.DataFrame({"identity": [victim], "requested_at": ["1/2"]})]).to_csv(
        w.tmp / "deletions.csv", index=False)
    named = f"universe.deletions_csv {w.tmp / 'deletions.csv'}: row {len(dels) + 1}, column 'requested_at': '1/2'"

    plan_file = tmp_path / "plan.json"
    plan = job.cli("plan", "--out", str(plan_file))
    assert plan.exit_code == ExitCode.DRIFT, plan.output
    body = json.loads(plan_file.read_text(encoding="utf-8"))
    assert victim not in {d["subject_key"] for d in body["drift"] if d["drift_class"] == "missed_deletion"}
    assert {d["subject_key"] for d in body["drift"] if d["drift_class"] == "missed_deletion"} == \
        set(truth.injected["missed_deletion"])

    w.braze.calls.clear()
    run = job.cli("run")
    assert run.exit_code == ExitCode.PARTIAL, run.output
    assert "1 deletion request(s) rejected" in run.output and named in run.output
    run_id = next(line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.startswith("run "))
    shown = json.loads(job.cli("runs", "show", run_id, "--format", "json", "--reveal").stdout)
    reasons = [e["reason"] for e in shown["exceptions"] if e["source"] == "deletions"]
    assert any(r.startswith(named) and "not carried out" in r for r in reasons), reasons
    deleted = repr([c["body"] for c in w.braze.calls if c["path"] == "/users/delete"])
    assert deleted != "[]" and victim not in deleted
    assert w.braze.profiles_by_email(victim)
