"""`reconcile doctor` over real loopback HTTP against the Braze and Ketch simulators."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.clients.braze_probe import PERMISSIONS
from reconcile.sandbox.core import SimResponse
from reconcile.sandbox.server import free_port

ROOT = Path(__file__).resolve().parents[2]
EIGHT = {"users.track", "subscription.status.get", "subscription.status.set", "users.delete", "users.alias.new",
         "users.export.ids", "email.unsubscribe", "email.blacklist"}
OPTIONAL = {"email.status", "email.hard_bounces", "subscription.groups.get", "users.export.segment"}
WRITES = {"/users/track", "/subscription/status/set", "/users/delete", "/users/alias/new", "/email/status",
          "/email/blocklist", "/users/export/segment"}


def add_segment_export(sim) -> None:
    """Serve `/users/export/segment` as Braze does (400 without a segment_id, 201 for a started
    export) when the simulator does not serve it itself; its own route, if any, comes first."""

    def handler(req):
        if not (req.json() or {}).get("segment_id"):
            return SimResponse(400, {"message": "Bad Request: 'segment_id' is required"})
        return SimResponse(201, {"message": "success", "object_prefix": "export"})

    sim.route("POST", "/users/export/segment", handler, "shared")


def snapshot(world) -> tuple[dict, dict]:
    world.braze.tick()
    return copy.deepcopy(world.braze.state()), copy.deepcopy(world.ketch.state())


def doctor_json(job, env=None) -> tuple[int, list[dict]]:
    result = job.cli("doctor", "--format", "json", env=env)
    return result.exit_code, json.loads(result.stdout)


def by_permission(checks: list[dict]) -> dict[str, dict]:
    return {c["permission"]: c for c in checks if c["check"] == "braze.permission"}


@pytest.fixture
def seeded(job):
    job.seed(subjects=40, drift=0.2)
    return job


def test_the_table_lists_the_eight_required_and_four_optional_permissions():
    assert {p.permission for p in PERMISSIONS if p.required} == EIGHT
    assert {p.permission for p in PERMISSIONS if not p.required} == OPTIONAL
    assert all(p.lost_without for p in PERMISSIONS)


def test_full_key_is_ready_and_no_probe_changes_anything(seeded):
    w = seeded.world
    add_segment_export(w.braze)
    before = snapshot(w)
    text = seeded.cli("doctor")
    code, checks = doctor_json(seeded)
    assert text.exit_code == 0 and code == 0, text.output
    assert "doctor: ready to run" in text.stdout and "warning" not in text.output
    assert "key accepted" in text.stdout and "Ketch: reachable" in text.stdout and "State database: ok: sqlite" in text.stdout
    perms = by_permission(checks)
    assert set(perms) == EIGHT | OPTIONAL
    assert all(c["status"] == "granted" for c in perms.values()), perms
    assert snapshot(w) == before
    writes = [c for c in w.braze.calls if c["path"] in WRITES]
    assert len(writes) == 2 * len(WRITES) and all(c["status"] == 400 for c in writes)
    assert all(c["path"].endswith("/get") for c in w.ketch.calls)
    assert w.key not in text.output + json.dumps(checks)


def test_the_partner_page_key_is_ready_with_one_warning_per_optional_permission(seeded):
    w = seeded.world
    add_segment_export(w.braze)
    w.braze.permissions = set(EIGHT)
    before = snapshot(w)
    result = seeded.cli("doctor")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(OPTIONAL)
    for permission in OPTIONAL:
        assert any(f"optional permission {permission} " in line and "not granted" in line for line in warnings)
    code, checks = doctor_json(seeded)
    perms = by_permission(checks)
    assert code == 0
    assert {p for p, c in perms.items() if c["status"] == "granted"} == EIGHT
    assert {p for p, c in perms.items() if c["status"] == "not granted"} == OPTIONAL
    assert all(perms[p]["http_status"] == 403 and perms[p]["ok"] for p in OPTIONAL)
    assert snapshot(w) == before


def test_an_endpoint_the_server_does_not_serve_is_unknown_not_granted(seeded):
    seeded.world.braze.faults.fail_next("^/users/export/segment$", 404)
    code, checks = doctor_json(seeded)
    segment = by_permission(checks)["users.export.segment"]
    assert code == 0
    assert segment["status"] == "unknown" and segment["http_status"] == 404 and "not served" in segment["detail"]


def test_an_unknown_answer_for_a_required_endpoint_fails(seeded):
    seeded.world.braze.faults.fail_next("^/users/delete$", 409)
    result = seeded.cli("doctor")
    assert result.exit_code == 1
    assert "required permission users.delete (/users/delete) is unknown" in result.stderr
    assert "HTTP 409" in result.stdout


def test_a_missing_required_permission_fails_and_is_named(seeded):
    seeded.world.braze.permissions = (EIGHT | OPTIONAL) - {"users.delete"}
    result = seeded.cli("doctor")
    assert result.exit_code == 1
    assert "required permission users.delete (/users/delete) is not granted" in result.stderr
    assert "create a new REST API key" in result.stderr
    assert "doctor: 1 problem(s)" in result.stdout
    assert by_permission(doctor_json(seeded)[1])["users.delete"]["ok"] is False


def test_a_wrong_key_is_said_once_and_never_printed(seeded):
    wrong = "not-the-braze-key-0000"
    before = len(seeded.world.braze.calls)
    result = seeded.cli("doctor", env={"BRAZE_API_KEY": wrong})
    assert result.exit_code == 1
    assert result.output.lower().count("unauthorized") == 1
    assert "BRAZE_API_KEY" in result.output and wrong not in result.output
    assert len(seeded.world.braze.calls) == before + 1  # nothing else is probed with a refused key
    code, checks = doctor_json(seeded, env={"BRAZE_API_KEY": wrong})
    assert code == 1 and checks[0] == {**checks[0], "check": "braze.key", "status": "unauthorized", "ok": False}
    first, *rest = [c for c in checks if c["check"] == "braze.permission"]
    assert first["status"] == "unknown" and first["http_status"] == 401
    assert rest and all(c["status"] == "unknown" and c["detail"].startswith("not probed") for c in rest)
    assert wrong not in json.dumps(checks)


def test_an_unset_key_variable_is_a_clear_problem(seeded):
    result = seeded.cli("doctor", env={"BRAZE_API_KEY": None})
    assert result.exit_code == 1
    assert "Braze key missing" in result.stderr and "export BRAZE_API_KEY=" in result.stderr


def test_a_wrong_ketch_organization_fails(seeded):
    seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace(
        'organization = "acme"', 'organization = "acme-typo"'), encoding="utf-8")
    result = seeded.cli("doctor")
    assert result.exit_code == 1
    assert "Ketch: wrong organization" in result.stdout and "fix ketch.organization" in result.stderr
    checks = doctor_json(seeded)[1]
    assert checks[-2]["check"] == "ketch" and checks[-2]["status"] == "wrong organization"


def test_an_unreachable_ketch_fails(seeded):
    seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace(
        seeded.world.ketch_url, f"http://127.0.0.1:{free_port()}"), encoding="utf-8")
    result = seeded.cli("doctor")
    assert result.exit_code == 1
    assert "Ketch: unreachable" in result.stdout and "check ketch.base_url" in result.stdout


def test_a_failing_state_database_fails_without_showing_its_password(seeded):
    seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace(
        'url = "sqlite:///state.db"', 'url_env = "RECONCILE_STATE_URL"'), encoding="utf-8")
    password = "pg-secret-9931"
    url = f"postgresql+psycopg://doctor:{password}@127.0.0.1:{free_port()}/reconcile"
    result = seeded.cli("doctor", env={"RECONCILE_STATE_URL": url})
    assert result.exit_code == 1
    assert "State database: failed" in result.stdout and password not in result.output
    unset = seeded.cli("doctor", env={"RECONCILE_STATE_URL": None})
    assert unset.exit_code == 1 and "RECONCILE_STATE_URL is not set" in unset.output


def test_json_is_a_list_of_checks(seeded):
    code, checks = doctor_json(seeded)
    assert code == 0 and isinstance(checks, list)
    # the sandbox key has subscription.groups.get: the mapped groups' channels are checked too
    assert [c["check"] for c in checks] == ["braze.key", *["braze.permission"] * len(PERMISSIONS), "braze.groups",
                                            "braze.group_channels", "braze.sweep_cost", "ketch", "state"]
    assert all({"status", "ok", "detail"} <= set(c) for c in checks)
    assert [c["endpoint"] for c in checks[1:-5]] == [p.endpoint for p in PERMISSIONS]
    assert checks[-5]["ok"] and checks[-5]["detail"] == "Braze accepts 3 of 3 mapped group(s)"
    assert checks[-4]["ok"] and "match Braze's channel" in checks[-4]["detail"]


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_the_cost_of_a_full_sweep_is_printed_with_and_without_the_optional_permissions(job, key_type):
    """Per subject before any run; in total for the last full run's universe after one. Email
    keys: 2/50 with subscription.groups.get; with the eight, every address alone in the first
    sweep, then 1/50 + 3 groups/50 + a seventh of the addresses a day."""
    seeded = job
    if key_type == "external_id":
        seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace(
            'ketch_space = "email"\nbraze_key = "email"', 'ketch_space = "account_id"\nbraze_key = "external_id"'),
            encoding="utf-8")
    seeded.world.seed(seeded.world.config(key_type), subjects=40, drift=0.1)
    _, checks = doctor_json(seeded)
    cost = next(c for c in checks if c["check"] == "braze.sweep_cost")
    assert cost["ok"] and cost["subjects"] is None and cost["all"]["requests"] is None
    assert cost["all"]["requests_per_subject"] == 0.04
    later = 1 / 50 + 3 / 50 + (1 / 7 if key_type == "email" else 0)
    first = 1 + 3 / 50 if key_type == "email" else later
    assert cost["partner"]["requests_per_subject"] == round(later, 4)
    assert cost["partner"]["first_sweep_requests_per_subject"] == round(first, 4)
    assert seeded.cli("plan").exit_code != 1  # a full run planned (guards may hold it): its universe sizes a sweep
    text = seeded.cli("doctor")
    _, checks = doctor_json(seeded)
    cost = next(c for c in checks if c["check"] == "braze.sweep_cost")
    n = cost["subjects"]
    assert n and cost["all"]["requests"] == round(0.04 * n) and cost["partner"]["requests"] == round(later * n)
    assert f"Braze read requests of one full sweep ({n:,} subjects, the last full run):" in text.stdout
    assert "with subscription.groups.get (this key has it): 0.040 a subject" in text.stdout
    assert "with the partner page's eight permissions:" in text.stdout


@pytest.mark.parametrize("permissions", ["full", "partner page"])
def test_a_mapped_group_braze_does_not_know_fails_and_is_named(seeded, permissions):
    """A typo in a group id: Braze refuses it (400) on `/subscription/status/get`, which the
    eight-permission key may call; the doctor names the group and its topic and exits 1."""
    if permissions == "partner page":
        seeded.world.braze.permissions = set(EIGHT)
    seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace('"sg-promo"', '"sg-promo-typo"'),
                           encoding="utf-8")
    result = seeded.cli("doctor")
    assert result.exit_code == 1, result.output
    assert "Subscription groups: unknown group: Braze refused 'sg-promo-typo' (mapping.topics: promotions/email)" \
        in result.stdout
    assert "error: subscription groups unknown group" in result.stderr and "doctor: 1 problem(s)" in result.stdout
    code, checks = doctor_json(seeded)
    groups = next(c for c in checks if c["check"] == "braze.groups")
    assert code == 1 and groups["ok"] is False and "sg-news" not in groups["detail"]


def test_a_braze_that_cannot_tell_leaves_the_groups_unrefused(seeded):
    """A Braze answering for any group id (no 400 for an unknown one) cannot tell: the doctor
    passes rather than guess, and a group it could not ask is said to be unchecked."""
    seeded.world.braze.unknown_group_read = "unknown"
    seeded.path.write_text(seeded.path.read_text(encoding="utf-8").replace('"sg-promo"', '"sg-promo-typo"'),
                           encoding="utf-8")
    code, checks = doctor_json(seeded)
    groups = next(c for c in checks if c["check"] == "braze.groups")
    assert groups["ok"] and groups["detail"] == "Braze accepts 3 of 3 mapped group(s)", groups


def test_sandbox_mode_runs_in_process_and_leaves_the_saved_sandbox_alone(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "sandbox.toml"
    shutil.copy(ROOT / "jobs" / "sandbox.toml", job)
    runner = CliRunner()
    seeded = runner.invoke(cli, ["--config", str(job), "sandbox", "seed", "--subjects", "40"])
    assert seeded.exit_code == 0, seeded.output
    files = sorted((tmp_path / ".reconcile" / "sandbox").glob("*.json"))
    before = {p: p.read_bytes() for p in files}
    result = runner.invoke(cli, ["--config", str(job), "doctor"], env={"BRAZE_API_KEY": None})
    assert result.exit_code == 0, result.output
    assert "Braze (in-process sandbox): key accepted" in result.stdout
    assert {p: p.read_bytes() for p in files} == before
