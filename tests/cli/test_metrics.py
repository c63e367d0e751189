"""Per-run metrics: a textfile prometheus_client's parser reads, with the run's numbers."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from reconcile.observability.metrics import business_days, oldest_critical_days


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list], name: str, **labels: str) -> float:
    matches = [s.value for s in found[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


def test_business_days_count_weekdays_only():
    assert business_days(date(2026, 11, 27), date(2026, 11, 30)) == 1  # Friday to Monday
    assert business_days(date(2026, 11, 30), date(2026, 12, 14)) == 10
    assert business_days(date(2026, 12, 14), date(2026, 12, 1)) == 0
    now = datetime(2026, 12, 14, 12, tzinfo=timezone.utc)
    rows = [{"drift_class": "missed_optout", "severity": "critical", "first_seen_at": datetime(2026, 11, 30, tzinfo=timezone.utc)},
            {"drift_class": "missed_optin", "severity": "low", "first_seen_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}]
    assert oldest_critical_days(rows, now) == (1, 10)


def test_metrics_file_parses_and_holds_the_run(job, tmp_path):
    job.seed()
    path = tmp_path / "metrics" / "reconcile.prom"
    result = job.cli("-q", "run", "--format", "json", "--metrics-file", str(path))
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    text = path.read_text(encoding="utf-8")
    found = samples(text)
    assert value(found, "reconcile_run_info", run_id=run["run_id"], status="applied", reconcile_job="job") == 1
    for cls, n in run["counts"].items():
        assert value(found, "reconcile_drift_items", drift_class=cls) == n
    assert value(found, "reconcile_actions", state="sent") == run["actions_sent"] > 0
    assert value(found, "reconcile_actions", state="failed") == 0
    assert value(found, "reconcile_corrections", result="verified") == run["verified"]
    assert value(found, "reconcile_corrections", result="unverified") == run["unverified"]
    assert "reconcile_exceptions" in found
    stages = {s.labels["stage"] for s in found["reconcile_stage_duration_seconds"]}
    assert {"extract", "diff", "plan", "guards", "apply", "verify", "report"} <= stages
    braze = {s.labels["endpoint"] for s in found["reconcile_http_requests"] if s.labels["service"] == "braze"}
    assert "/users/delete" in braze and "/email/unsubscribes" in braze
    ketch = {s.labels["endpoint"] for s in found["reconcile_http_requests"] if s.labels["service"] == "ketch"}
    assert ketch >= {"consent/get", "subscriptions/get"}
    assert all(s.value == 0 for s in found["reconcile_http_rate_limited"])
    assert "reconcile_oldest_open_critical_drift_business_days" in found
    assert "@" not in text


def test_metrics_count_429s_and_rate_limit_waits(job):
    job.seed(subjects=40)
    job.world.ketch.faults.fail_next(r"consent/.*/get", 429, times=2)
    job.append('[braze.rate_limits]\nshared = { requests = 4, per_seconds = 1 }\n\n'
               '[metrics]\ntextfile = "out/reconcile.prom"\njob = "nightly"\n')
    result = job.cli("-q", "run")
    assert result.exit_code == 0, result.output
    found = samples((job.world.tmp / "out" / "reconcile.prom").read_text(encoding="utf-8"))
    assert all(s.labels["reconcile_job"] == "nightly" for s in found["reconcile_run_info"])
    assert value(found, "reconcile_http_rate_limited", service="ketch", endpoint="consent/get") == 2
    assert value(found, "reconcile_http_requests", service="ketch", endpoint="consent/get", status="429") == 2
    braze_waits = [s.value for s in found["reconcile_rate_limit_wait_seconds"] if s.labels["service"] == "braze"]
    assert braze_waits and sum(braze_waits) > 0
