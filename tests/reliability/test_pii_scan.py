"""Secrets and PII scan: one job runs plan, run and report through the CLI with every log
level on, in both log formats, with the masked plan view, every report format and the
metrics file; the API key and every identity of the universe are then searched for in
everything it printed and wrote. Only the unmasked plan file may hold identities, and it
is written 0600."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner

from reconcile.cli.main import cli
from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig
from reconcile.engine.plan import plan_from_document
from reconcile.errors import DataError
from reconcile.pipeline.saved import check_stale

KEY_SUFFIX = "-Zq9sekret"


def _identities(tmp: Path) -> set[str]:
    found: set[str] = set()
    for name in ("universe.csv", "deletions.csv"):
        frame = pd.read_csv(tmp / name, dtype=str, keep_default_na=False)
        for column in ("identity", "email"):
            if column in frame:
                found |= {v.strip() for v in frame[column] if "@" in v and len(v.strip()) > 5}
    return found


def _leaks(text: str, needles: set[str]) -> list[str]:
    lowered = text.casefold()
    return sorted(n for n in needles if n.casefold() in lowered)


@pytest.mark.slow
def test_key_and_identities_appear_nowhere_but_the_private_plan_file(world, tmp_path: Path) -> None:
    w = world
    key = w.key
    (tmp_path / "job.toml").write_text(w.toml(extra="[guards]\nmax_unsubscribe_fraction = 1.0\n"
                                                    "max_deletion_fraction = 1.0\n"))
    w.seed(w.config(), subjects=80, drift=0.3)
    identities = _identities(tmp_path)
    assert len(identities) > 50
    w.braze.faults.fail_next("/users/track", 500, times=2)  # retries logged at debug
    runner = CliRunner()
    env = {"BRAZE_API_KEY": key, "RECONCILE_MASK_KEY": "mask-key-for-the-scan"}
    base = ["--config", str(tmp_path / "job.toml")]
    printed = []
    for args in (["-vv", "plan", "--out", str(tmp_path / "plan.json")],
                 ["-vv", "plan", "--out", str(tmp_path / "plan.masked.json"), "--masked"],
                 ["-vv", "--log-format", "json", "run", "--metrics-file", str(tmp_path / "metrics.prom")],
                 ["-vv", "runs", "list"], ["-vv", "runs", "show"],
                 *[["-vv", "report", "--format", f, "--out", str(tmp_path / "out" / f"report.{f}")]
                   for f in ("html", "json", "md")],
                 ["-vv", "report", "--format", "csv", "--out", str(tmp_path / "out" / "csv")]):
        (tmp_path / "out").mkdir(exist_ok=True)
        result = runner.invoke(cli, base + args, env=env, catch_exceptions=False)
        printed.append(result.output + (result.stderr if result.stderr_bytes is not None else ""))
        assert "Traceback" not in printed[-1]
    logs = "\n".join(printed)
    assert re.search(r"DEBUG|\"level\": ?\"debug\"", logs, re.IGNORECASE), "debug logging was on"

    written = {p: p.read_text(errors="replace") for p in tmp_path.rglob("*")
               if p.is_file() and p.suffix in (".json", ".md", ".html", ".csv", ".prom", ".txt", ".textfile")
               and p.name not in ("plan.json", "universe.csv", "deletions.csv")}  # the plan for apply, the inputs
    assert any(p.parent.name == "reports" for p in written) and (tmp_path / "metrics.prom").exists()
    assert (tmp_path / "plan.masked.json") in written
    for where, text in {"printed output and logs": logs, **{str(p): t for p, t in written.items()}}.items():
        assert key not in text, where
        assert not _leaks(text, identities), (where, _leaks(text, identities)[:3])

    plan_file = tmp_path / "plan.json"
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600
    assert _leaks(plan_file.read_text(), identities), "the unmasked plan holds identities (for apply)"
    masked_view = json.loads((tmp_path / "plan.masked.json").read_text())
    assert masked_view["masked"] is True and masked_view["actions"]
    applied = runner.invoke(cli, base + ["apply", str(tmp_path / "plan.masked.json")], env=env)
    assert applied.exit_code != 0 and "Traceback" not in applied.output


def test_a_400_echoing_addresses_leaves_none_in_the_response_summary() -> None:
    echoed = [f"person{i}@example.com" for i in range(11)]
    answer = {"message": "Bad Request", "errors": [f"invalid email {e}" for e in echoed]}
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json=answer))
    with BrazeClient(BrazeConfig(rest_endpoint="https://rest.iad-01.braze.com", max_retries=0), "k-123456",
                     transport=transport) as braze:
        result = braze.email_blocklist(echoed)
    reasons = [why for _item, why in result.rejected]
    text = json.dumps([[r.__dict__ for r in result.responses], reasons], default=str)
    assert len(result.rejected) == len(echoed) and "***@example.com" in text
    assert not _leaks(text, set(echoed))


def test_the_stale_plan_message_names_no_identity() -> None:
    email = "stale.person@example.com"
    doc = {"plan_id": "p1", "fingerprint": "f", "config_hash": "c", "drift": [
        {"subject_key": email, "drift_class": "missed_optout", "field": "email_subscribe", "group_id": None,
         "expected": "unsubscribed"}],
        "actions": [{"action_id": "a1", "plan_id": "p1", "seq": 0, "kind": "global_unsubscribe",
                     "endpoint": "/users/track", "group_id": None, "prioritization": [],
                     "targets": [[email, "email", email]],
                     "drift_keys": [[email, "missed_optout", "email_subscribe", None]], "writeback": []}]}
    try:
        plan = plan_from_document(doc)
    except DataError as exc:
        pytest.skip(f"plan document shape changed: {exc}")
    empty = pd.DataFrame(columns=["subject_key", "drift_class", "field", "group_id", "expected"])
    from reconcile.errors import StalePlan
    with pytest.raises(StalePlan) as err:
        check_stale(doc, plan, empty, {}, "c")
    assert "stale" in str(err.value) and "stale.person" not in str(err.value)
