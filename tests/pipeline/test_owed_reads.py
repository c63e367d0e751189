"""A subject whose Ketch read failed stays owed: the run is partial (exit 4) with the count,
the incremental watermark stays, and the next run, incremental or not, reads it."""

from __future__ import annotations

import json

from reconcile.pipeline.owed import OWED
from reconcile.pipeline.read import WATERMARK
from reconcile.store.store import Store
from tests.cli.conftest import Job


def _store_value(w, name: str):
    with Store.open(w.state_url) as store:
        return store.get_watermark(name)


def _changed(w, emails: list[str], target: str, when: str) -> None:
    (w.tmp / "universe.csv").write_text("identity,updated_at\n" + "".join(
        f"{e},{when if e == target else '2020-01-01T00:00:00Z'}\n" for e in emails))


def test_a_failed_read_is_retried_by_the_next_incremental_run_and_its_opt_out_applied(world) -> None:
    w = world
    path = w.tmp / "job.toml"
    path.write_text(w.toml(), encoding="utf-8")
    job = Job(w, path)
    job.seed(subjects=40, drift=0.0)
    first = job.cli("run", "--format", "json")
    assert first.exit_code == 0, first.output
    mark = _store_value(w, WATERMARK)
    emails = (w.tmp / "universe.csv").read_text().splitlines()[1:]
    target = next(e for e in emails
                  if [p.email_subscribe for p in w.braze.profiles_by_email(e)] in (["subscribed"], ["opted_in"]))
    w.ketch.set_consent("email", target, {"email_marketing": False}, int(w.now.timestamp()))
    w.ketch.error_identities = (target,)
    w.ketch._error_values = {target.lower()}
    _changed(w, emails, target, "2099-01-01T00:00:00Z")  # the target changed after the watermark

    failed = job.cli("run", "--mode", "incremental", "--format", "json")
    assert failed.exit_code == 4, failed.output
    out = json.loads(failed.stdout)
    assert any("0 subject(s) not checked" not in m and "1 subject(s) not checked" in m for m in out["messages"])
    assert _store_value(w, WATERMARK) == mark  # the watermark did not move past the unread subject
    assert list(json.loads(_store_value(w, OWED))) == [target]
    assert [p.email_subscribe for p in w.braze.profiles_by_email(target)] != ["unsubscribed"]

    # an incremental run whose universe source no longer brings it in still reads it
    w.ketch.error_identities, w.ketch._error_values = (), set()
    _changed(w, emails, target, "2020-01-01T00:00:00Z")
    retried = job.cli("run", "--mode", "incremental", "--format", "json")
    assert retried.exit_code == 0, retried.output
    assert json.loads(retried.stdout)["counts"]["missed_optout"] >= 1
    assert [p.email_subscribe for p in w.braze.profiles_by_email(target)] == ["unsubscribed"]
    assert json.loads(_store_value(w, OWED)) == {}
    assert _store_value(w, WATERMARK) != mark
