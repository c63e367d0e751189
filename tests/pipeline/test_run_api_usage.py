"""Each run records the API clients' use in its summary: Braze requests per rate class and
endpoint, 429 answers and waits, the export class, and the Ketch pace reached."""

from __future__ import annotations

from reconcile.pipeline.job import run_job


def test_a_run_records_its_api_use_beside_what_the_summary_already_holds(world):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=60, drift=0.1)
    with w.runtime(cfg) as rt:
        result = run_job(rt)
        run = rt.store.get_run(result.run_id)
        braze_calls = len(w.braze.calls)
    usage = run["summary"]["api_usage"]
    classes = usage["braze"]["classes"]
    assert classes["shared"]["share"] == 0.5 and classes["shared"]["rate_limited"] == 0
    assert sum(c["requests"] for c in classes.values()) == braze_calls
    assert all(sum(c["endpoints"].values()) == c["requests"] for c in classes.values())
    assert "/subscription/user/status" in classes["shared"]["endpoints"]
    ketch = usage["ketch"]
    assert ketch["requests"] > 0 and ketch["rate_start"] <= ketch["rate_max"] <= ketch["rate_ceiling"]
    assert run["summary"].get("tool_version")  # the report's own fields are kept
