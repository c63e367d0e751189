"""Three sweep workers (real processes, one PostgreSQL) share one Braze segment export: the
first to need it starts it, the others wait for its rows in the state store; the sweep's
slices together read the same drift as one unsliced plan, and nothing is left to correct."""

from __future__ import annotations

import pytest

from reconcile.store.store import Store
from tests.scheduling.test_sweep_workers import KEY, finish, nothing_left, setup, worker

SEGMENT = 'segment_id = "all-users"\nsegment_export_poll_seconds = 0.2\n'


def exports(world) -> list[dict]:
    return [c for c in world.braze.calls if c["method"] == "POST" and c["path"] == "/users/export/segment"]


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_of_a_sweep_start_exactly_one_segment_export(world, tmp_path, pg_database):
    schedules = setup(world, tmp_path, pg_database, subjects=300, drift=0.3, braze=SEGMENT)
    world.braze.segment_export_delay_seconds = 1.5  # the others arrive while the file is being prepared
    results = finish([worker(schedules, tmp_path, "job-uid-seg") for _ in range(3)], timeout=180)
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-3000:] for _, _, err in results]
    assert sum(1 for _, out, _ in results if out["slices"]) >= 2, "the slices were shared between workers"
    posts = exports(world)
    assert len(posts) == 1 and posts[0]["status"] == 201, [c["status"] for c in posts]
    downloads = [c for c in world.braze.calls if c["path"].startswith("/_downloads/") and c["status"] == 200]
    assert len(downloads) == 1, "the file was fetched once; the other workers read its rows from the state store"
    with Store.open(pg_database) as store:
        assert store.get_sweep("job-uid-seg")["status"] == "done"
        assert store.segment_export("sweep:job-uid-seg") is None, "the sweep's export is dropped once it is done"
    assert nothing_left(world, tmp_path) == []


@pytest.mark.slow
def test_a_busy_export_makes_every_slice_read_per_profile_without_retrying(world, tmp_path):
    from click.testing import CliRunner

    from reconcile.cli.main import cli

    state = f"sqlite:///{tmp_path / 'state.db'}"
    schedules = setup(world, tmp_path, state, subjects=120, drift=0.3, braze=SEGMENT)
    world.braze.segment_export = "busy"
    result = CliRunner().invoke(cli, ["run", "--job", "sweep", "--worker", "--schedules", str(schedules),
                                      "--format", "json"], env={"BRAZE_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert [c["status"] for c in exports(world)] == [429], "one start for the sweep, answered 429, not retried"
    assert nothing_left(world, tmp_path) == []
