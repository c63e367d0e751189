"""`reconcile prune --apply` also removes what the ledger and the profile cache keep past the
retention: raw webhook bodies (identities), the changed-subject rows, old cache entries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from click.testing import CliRunner
from sqlalchemy import select, update

from reconcile.cli.main import cli
from reconcile.store.schema import ledger_changes, ledger_events
from tests.ledger.conftest import ENV, consent, delete

OLD = datetime.now(timezone.utc) - timedelta(days=3 * 365)


def test_prune_empties_old_ledger_bodies_and_old_profile_cache_entries(lw) -> None:
    old_email, new_email = "old-person@example.com", "new-person@example.com"
    assert lw.post(consent(old_email)).status_code == 204
    assert lw.post(delete(old_email)).status_code == 200
    with lw.store._engine.begin() as conn:  # those two arrived three years ago
        conn.execute(update(ledger_events).values(received_at=OLD))
        conn.execute(update(ledger_changes).values(received_at=OLD))
    assert lw.post(consent(new_email)).status_code == 204
    lw.store.start_run("old-run", mode="full", config_hash="x", started_at=OLD)
    lw.store.update_run("old-run", status="in_sync", exit_code=0, finished_at=OLD)
    lw.store.upsert_braze_profiles([{"email_key": old_email, "braze_id": "b-old", "external_id": "x-old"}], OLD,
                                   "old-run")
    lw.store.upsert_braze_profiles([{"email_key": new_email, "braze_id": "b-new", "external_id": "x-new"}],
                                   datetime.now(timezone.utc), "old-run")
    for name in ("universe.csv", "deletions.csv"):
        (lw.w.tmp / name).write_text("identity\n")
    path = lw.w.tmp / "job.toml"
    path.write_text(lw.w.toml(), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "prune", "--apply"], env=ENV, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with lw.store._engine.connect() as conn:
        bodies = conn.execute(select(ledger_events.c.received_at, ledger_events.c.body)).all()
        changes = conn.execute(select(ledger_changes.c.identity)).scalars().all()
    assert all(old_email not in body for _, body in bodies)
    assert any(new_email in body for _, body in bodies)  # younger than the retention: kept
    assert changes == [new_email]
    assert lw.store.braze_profiles([old_email, new_email])["braze_id"].tolist() == ["b-new"]
    assert len(lw.ledger.requests()) == 1  # the DeleteRequest's own record (its status history) stays
