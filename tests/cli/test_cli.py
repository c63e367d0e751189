"""The `reconcile` command line through click's CliRunner, end to end against loopback simulators."""

from __future__ import annotations

import json
import re
import time

import click
import pytest
from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.errors import ExitCode


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += command_paths(command, (*prefix, name))
    return out


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


# ----------------------------------------------------------------------------- help


def test_the_command_tree_is_what_the_docs_promise():
    paths = {" ".join(p) for p in command_paths()}
    assert {"plan", "apply", "run", "demo", "config check", "config show", "runs list", "runs show",
            "sandbox seed", "sandbox serve"} <= paths


@pytest.mark.parametrize("path", [(), *command_paths()], ids=lambda p: " ".join(p) or "reconcile")
def test_every_command_has_help_with_an_example(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "Usage: " in result.output and " ".join(path) in result.output


# ----------------------------------------------------------------------------- config


BROKEN = """
[nonsense]
a = 1

[braze]
rest_endpoint = "http://rest.iad-01.braze.com"
api_key = "do-not-print-me-123"

[ketch]
organization = "acme"
property = "web"
jurisdiction = "default"
colour = "blue"

[mapping]
email_purpose = "email_marketing"

[guards]
max_deletion_fraction = 2.0
"""


def test_config_check_on_a_broken_file_exits_1_and_prints_every_problem(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN, encoding="utf-8")
    result = invoke("--config", str(path), "config", "check")
    assert result.exit_code == ExitCode.ERROR
    for key in ("nonsense", "braze.rest_endpoint", "braze.api_key", "ketch.colour", "guards.max_deletion_fraction"):
        assert f"- {key}: " in result.stderr, key
    assert "fix:" in result.stderr
    assert "do-not-print-me-123" not in result.output
    assert "Traceback" not in result.output


def test_config_check_on_invalid_toml_exits_1(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[braze\n", encoding="utf-8")
    result = invoke("--config", str(path), "config", "check")
    assert result.exit_code == ExitCode.ERROR
    assert "not valid TOML" in result.stderr


def test_config_check_without_a_config_says_how_to_give_one():
    result = invoke("config", "check")
    assert result.exit_code == ExitCode.ERROR
    assert "--config" in result.stderr and "RECONCILE_CONFIG" in result.stderr


def test_config_check_ok_and_missing_key(job):
    job.seed(subjects=20, drift=0.0)
    ok = job.cli("config", "check")
    assert ok.exit_code == 0, ok.output
    assert "ok (config hash " in ok.stdout
    missing = CliRunner().invoke(cli, ["--config", str(job.path), "config", "check"], catch_exceptions=False)
    assert missing.exit_code == ExitCode.ERROR
    assert "braze.api_key_env" in missing.stderr and "BRAZE_API_KEY" in missing.stderr


def test_config_show_never_prints_a_secret(job):
    job.seed(subjects=20, drift=0.0)
    braze_secret, pg_password, mask_secret = "braze-key-s3cr3t-0x42", "pg-pa55w0rd-xyzzy", "mask-key-s3cr3t-77"
    text = job.path.read_text(encoding="utf-8").replace(
        'url = "sqlite:///state.db"', f'url = "postgresql+psycopg://reconcile:{pg_password}@db.internal:5432/rec"')
    assert pg_password in text
    job.path.write_text(text, encoding="utf-8")
    result = invoke("--config", str(job.path), "config", "show",
                    env={"BRAZE_API_KEY": braze_secret, "RECONCILE_MASK_KEY": mask_secret})
    assert result.exit_code == 0, result.output
    for secret in (braze_secret, pg_password, mask_secret):
        assert secret not in result.output
    shown = json.loads(result.stdout)
    assert shown["braze"]["api_key_env"] == "BRAZE_API_KEY"
    assert shown["state"]["url"].startswith("postgresql+psycopg://reconcile:")
    assert "db.internal" in shown["state"]["url"]
    assert shown["braze"]["rest_endpoint"] == job.world.braze_url


def test_config_show_with_the_state_url_in_a_variable(job):
    job.seed(subjects=20, drift=0.0)
    pg_password = "env-pa55-qwerty"
    job.path.write_text(job.path.read_text(encoding="utf-8").replace(
        'url = "sqlite:///state.db"', 'url_env = "RECONCILE_STATE_URL"'), encoding="utf-8")
    result = job.cli("config", "show", env={"RECONCILE_STATE_URL": f"postgresql+psycopg://u:{pg_password}@h/db"})
    assert result.exit_code == 0, result.output
    assert pg_password not in result.output
    assert json.loads(result.stdout)["state"]["url_env"] == "RECONCILE_STATE_URL"


# ----------------------------------------------------------------------------- runs


def test_runs_show_unknown_run_is_a_clear_error(job):
    job.seed(subjects=20, drift=0.0)
    result = job.cli("runs", "show", "20990101T000000-nope00")
    assert result.exit_code == ExitCode.ERROR
    assert "no run '20990101T000000-nope00'" in result.stderr
    assert "reconcile runs list" in result.stderr
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- plan, apply, run


def write_calls(world) -> list[dict]:
    return world.writes()


RELAXED_GUARDS = """
[guards]
max_deletions = 1000
max_deletion_fraction = 1.0
max_unsubscribe_fraction = 1.0
"""


def test_plan_apply_then_in_sync(job, tmp_path):
    w = job.world
    truth = job.seed(subjects=80, drift=0.3)
    job.append(RELAXED_GUARDS)
    assert truth.counts()["missed_optout_group"] + truth.counts()["missed_optout_global"] > 0
    w.braze.calls.clear()

    plan_file = tmp_path / "plan.json"
    planned = job.cli("plan", "--out", str(plan_file))
    assert planned.exit_code == ExitCode.DRIFT, planned.output
    optouts = int(re.search(r"^\s*missed_optout\s+\S+\s+(\d+)$", planned.stdout, re.MULTILINE).group(1))
    assert optouts >= truth.counts()["missed_optout_group"] + truth.counts()["missed_optout_global"]
    assert write_calls(w) == []  # planning never writes to Braze
    assert w.braze.calls, "the plan must have read Braze"
    body = json.loads(plan_file.read_text(encoding="utf-8"))
    assert body["actions"] and body["plan_id"]
    assert f"plan {body['plan_id']} with {len(body['actions'])} action(s)" in planned.stdout

    applied = job.cli("apply", str(plan_file))
    assert applied.exit_code == ExitCode.OK, applied.output
    assert write_calls(w), "apply must write to Braze"
    assert "report: " in applied.stdout

    again = job.cli("plan")
    assert again.exit_code == ExitCode.OK, again.output
    assert "with 0 action(s)" in again.stdout

    listing = job.cli("runs", "list")
    assert listing.exit_code == 0
    lines = [ln for ln in listing.stdout.splitlines() if ln.strip()]
    assert lines[0].split()[:3] == ["RUN", "STARTED", "DURATION"] and len(lines) == 4  # header; plan, apply, plan
    listed = json.loads(job.cli("runs", "list", "--format", "json").stdout)
    assert [r["exit_code"] for r in listed] == [0, 0, 2] and "None" not in listing.stdout


def test_apply_by_plan_id_from_the_state_store(job):
    job.seed(subjects=60, drift=0.3)
    job.append(RELAXED_GUARDS)
    planned = job.cli("plan")
    assert planned.exit_code == ExitCode.DRIFT
    plan_id = re.search(r"plan (\S+) with", planned.stdout).group(1)
    applied = job.cli("apply", plan_id)
    assert applied.exit_code == ExitCode.OK, applied.output
    assert job.cli("plan").exit_code == ExitCode.OK


def test_apply_is_not_refused_by_a_guard_the_plan_did_not_trip(job, tmp_path):
    job.seed(subjects=150, drift=0.1)
    plan_file = tmp_path / "plan.json"
    planned = job.cli("plan", "--out", str(plan_file))
    assert planned.exit_code == ExitCode.DRIFT, planned.output
    assert "would refuse apply" not in planned.stderr  # default guards are fine with this plan
    applied = job.cli("apply", str(plan_file))
    assert "refused apply" not in applied.stderr
    assert applied.exit_code == ExitCode.OK, applied.output


def test_apply_of_an_unknown_plan_is_a_clear_error(job):
    job.seed(subjects=20, drift=0.0)
    result = job.cli("apply", "no-such-plan")
    assert result.exit_code == ExitCode.ERROR
    assert "no such plan file or plan id" in result.stderr


def test_run_dry_run_reports_drift_and_writes_nothing(job):
    w = job.world
    job.seed(subjects=60, drift=0.3)
    w.braze.calls.clear()
    dry = job.cli("run", "--dry-run")
    assert dry.exit_code == ExitCode.DRIFT, dry.output
    assert write_calls(w) == []
    real = job.cli("run")
    assert real.exit_code == ExitCode.OK, real.output
    assert write_calls(w)
    w.braze.calls.clear()
    clean = job.cli("run", "--dry-run")
    assert clean.exit_code == ExitCode.OK, clean.output
    assert write_calls(w) == []


def test_apply_of_a_stale_plan_exits_5_and_sends_nothing(job, tmp_path):
    w = job.world
    truth = job.seed(subjects=80, drift=0.3)
    plan_file = tmp_path / "plan.json"
    assert job.cli("plan", "--out", str(plan_file)).exit_code == ExitCode.DRIFT
    body = json.loads(plan_file.read_text(encoding="utf-8"))
    # one person the plan unsubscribes from the newsletter group re-grants it in Ketch
    target = next(d for d in body["drift"] if d["drift_class"] == "missed_optout" and d["field"] == "group"
                  and d["group_id"] == "sg-news")
    email = target["subject_key"]
    assert email in truth.injected["missed_optout_group"] + truth.injected["missed_optout_global"]
    regrant_everything(w, email)
    w.braze.calls.clear()

    stale = job.cli("apply", str(plan_file))
    assert stale.exit_code == ExitCode.STALE_PLAN, stale.output
    assert "stale" in stale.stderr and "nothing was sent" in stale.stderr
    assert write_calls(w) == []
    listing = job.cli("runs", "list", "--status", "stale").stdout.splitlines()
    assert len(listing) == 2 and re.search(r"\bstale\s+5\b", listing[1])


def regrant_everything(w, email: str) -> None:
    """The person now consents to everything in Ketch, newer than anything in Braze."""
    stamp = int(time.time())
    w.ketch.set_consent("email", email, {"email_marketing": True}, stamp)
    topics = {"newsletter": {"email": "granted"}, "promotions": {"email": "granted"},
              "product_updates": {None: "granted"}}
    w.ketch.set_subscriptions("email", email, topics, {"global_unsubscribe": "denied"}, stamp)


# ----------------------------------------------------------------------------- run reports


EMAIL = re.compile(r"([A-Za-z0-9._%+*-]+)@example\.com", re.IGNORECASE)


def unmasked_emails(text: str) -> set[str]:
    return {m.group(0) for m in EMAIL.finditer(text) if not re.fullmatch(r"[A-Za-z0-9]\*\*\*", m.group(1))}


def test_runs_show_json_masks_identities_unless_revealed(job):
    truth = job.seed(subjects=80, drift=0.3)
    run = job.cli("run")
    assert run.exit_code == ExitCode.OK, run.output
    run_id = re.search(r"^run (\S+): ", run.stdout, re.MULTILINE).group(1)

    shown = job.cli("runs", "show", run_id, "--format", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["run"]["run_id"] == run_id
    assert set(doc["drift_counts"]) >= {"missed_optout", "missed_deletion", "no_consent_record", "unmatched"}
    assert all(isinstance(v, int) for v in doc["drift_counts"].values())
    assert doc["drift_counts"]["missed_deletion"] == len(truth.injected["missed_deletion"])
    assert doc["actions"] and all("status" in a and "kind" in a for a in doc["actions"])
    assert doc["exceptions"], "malformed identities and no-consent subjects are exceptions"
    assert unmasked_emails(shown.stdout) == set(), sorted(unmasked_emails(shown.stdout))[:5]
    assert "***@example.com#" in shown.stdout

    revealed = job.cli("runs", "show", run_id, "--format", "json", "--reveal")
    assert revealed.exit_code == 0
    assert unmasked_emails(revealed.stdout), "--reveal shows identities in clear"

    text = job.cli("runs", "show", run_id)
    assert text.exit_code == 0 and run_id in text.stdout
    assert unmasked_emails(text.stdout) == set()
    report = job.world.tmp / "reports" / f"{run_id}.md"  # written by the run: the same layout (one renderer)
    head = [line for line in report.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert len(head) > 3 and [line for line in text.stdout.splitlines() if line.startswith("#")] == head


def test_runs_show_masks_identities_in_a_stale_run_error(job, tmp_path):
    w = job.world
    job.seed(subjects=80, drift=0.3)
    plan_file = tmp_path / "plan.json"
    job.cli("plan", "--out", str(plan_file))
    body = json.loads(plan_file.read_text(encoding="utf-8"))
    email = next(d["subject_key"] for d in body["drift"] if d["drift_class"] == "missed_optout")
    regrant_everything(w, email)
    assert job.cli("apply", str(plan_file)).exit_code == ExitCode.STALE_PLAN
    run_id = next(ln.split()[0] for ln in job.cli("runs", "list").stdout.splitlines() if "stale" in ln)
    shown = job.cli("runs", "show", run_id, "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert email not in shown.stdout
    assert unmasked_emails(shown.stdout) == set()


def test_apply_of_a_malformed_plan_file_is_a_clear_error(job, tmp_path):
    import json as _json

    job.seed(subjects=20, drift=0.0)  # the config's universe files exist
    bad = tmp_path / "bad-plan.json"
    bad.write_text(_json.dumps({"plan_id": "p", "actions": []}))
    result = job.cli("apply", str(bad))
    assert result.exit_code == 1
    assert "plan file lacks fingerprint, config_hash, drift" in result.output
    bad.write_text("{not json")
    assert "not a plan file" in job.cli("apply", str(bad)).output
