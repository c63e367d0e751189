"""Run reports: every outcome gets a report that says why, files are private, and masked
tokens cannot be recomputed from anything in the report (nor from the config)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.config import Config
from reconcile.config.model import ReportConfig, StateConfig
from reconcile.errors import AuthError, ConfigError, DataError, GuardRefused, StalePlan
from reconcile.pipeline.recorder import RunRecorder
from reconcile.reports.build import write_report
from reconcile.reports.masking import mask, mask_key, mask_key_path
from reconcile.store.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ANN = "Ann.Lee@example.com"
TOKEN = re.compile(r"#([0-9a-f]{10})\b")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def cfg(tmp_path: Path, store_url: str) -> Config:
    return Config(
        state=StateConfig(url=store_url),
        report=ReportConfig(dir=tmp_path / "reports"),
        path=tmp_path / "job" / "reconcile.toml",
    )


def recorder(store: Store, run_id: str = "run-1") -> RunRecorder:
    rec = RunRecorder(store, Clock(), run_id, "full", "cfg-hash-1", job="nightly")
    rec.start()
    return rec


def read(md: Path) -> tuple[str, dict]:
    return md.read_text(encoding="utf-8"), json.loads(md.with_suffix(".json").read_text(encoding="utf-8"))


def hashed(identity: str, key: bytes) -> str:
    return hmac.new(key, identity.strip().casefold().encode(), hashlib.sha256).hexdigest()[:10]


def test_a_failed_run_report_says_why(store: Store, cfg: Config) -> None:
    rec = recorder(store)
    rec.failed(AuthError("invalid API key", service="braze", method="GET", url="/email/unsubscribes", status_code=401))
    md, doc = read(write_report(store, "run-1", cfg))
    assert "status: **failed**; exit code: 1" in md
    assert "the run failed" in md and "Why:" in md
    assert "braze GET /email/unsubscribes HTTP 401: invalid API key" in md
    assert "Drift was not computed: the run ended before planning." in md
    assert doc["outcome"] == {
        "status": "failed",
        "exit_code": 1,
        "finished": True,
        "meaning": "the run failed",
        "error": "braze GET /email/unsubscribes HTTP 401: invalid API key",
    }


def test_a_refused_run_report_says_which_guard_and_that_nothing_was_written(store: Store, cfg: Config) -> None:
    rec = recorder(store)
    rec.planned(drift_counts={"missed_deletion": 140}, actions_planned=3, universe_count=1000)
    err = GuardRefused(["max_deletions"], "140 deletions planned, limit guards.max_deletions = 100")
    rec.refused(err, err.exit_code)
    md, doc = read(write_report(store, "run-1", cfg))
    assert "status: **refused**; exit code: 12" in md
    assert "a safety guard refused to apply; nothing was written to Braze" in md
    assert "guard max_deletions refused apply: 140 deletions planned" in md
    assert "| missed_deletion | critical | 140 |" in md
    assert doc["outcome"]["status"] == "refused" and doc["outcome"]["exit_code"] == 12
    assert doc["drift_counts"]["missed_deletion"] == 140


@pytest.mark.parametrize(
    "close, status, code, why",
    [
        (lambda r: r.stale(StalePlan("plan plan-1 is stale: 2 planned correction(s) no longer match")), "stale", 5,
         "plan plan-1 is stale"),
        (lambda r: (r.applying(), r.interrupted(signal.SIGTERM)), "interrupted", 143, "interrupted by SIGTERM"),
        (lambda r: r.failed(DataError("universe.csv: no column 'email'")), "failed", 1, "no column 'email'"),
        (lambda r: (r.applying(), r.partial(actions_failed=1, error="batch 2: HTTP 500")), "partial", 4,
         "batch 2: HTTP 500"),
    ],
    ids=["stale", "interrupted", "bad csv", "partial"],
)
def test_every_outcome_is_reported_with_its_reason(store: Store, cfg: Config, close, status, code, why) -> None:
    close(recorder(store))
    md, doc = read(write_report(store, "run-1", cfg))
    assert f"status: **{status}**; exit code: {code}" in md and why in md
    assert doc["outcome"]["finished"] is True and why in doc["outcome"]["error"]


def test_a_run_without_an_outcome_is_reported_as_such(store: Store, cfg: Config) -> None:
    recorder(store).applying()
    md, doc = read(write_report(store, "run-1", cfg))
    assert "status: **applying**; exit code: -" in md and "None" not in md
    assert "no outcome recorded" in md and doc["outcome"]["finished"] is False


def test_a_clean_run_has_no_why(store: Store, cfg: Config) -> None:
    rec = recorder(store)
    rec.planned(drift_counts={})
    rec.in_sync()
    md, _ = read(write_report(store, "run-1", cfg))
    assert "status: **in_sync**; exit code: 0" in md and "no drift to correct" in md and "Why:" not in md


def seeded(store: Store) -> None:
    """A partial run whose error, exceptions, drift and a 400's echo all carry identities."""
    rec = recorder(store)
    rec.planned(drift_counts={"missed_optout": 2})
    store.record_drift(
        "run-1",
        [
            {"subject_key": ANN.casefold(), "drift_class": "missed_optout", "field": "email_subscribe",
             "expected": "unsubscribed", "actual": "subscribed", "severity": "critical",
             "reason": f"{ANN} opted out in Ketch", "detail": {"identity": ANN, "group_id": "g1"}},
            {"subject_key": "ext-4242", "drift_class": "missed_optout", "field": "g1",
             "expected": "unsubscribed", "actual": "subscribed", "severity": "critical",
             "detail": {"identity": "ext-4242"}},
        ],
        [ANN.casefold(), "ext-4242"],
        T0,
    )
    store.add_exceptions("run-1", [{"identity": "bob@example.com", "source": "braze", "reason": "ambiguous"}])
    store.save_plan("plan-1", "run-1", "fp", {}, T0)
    store.update_run("run-1", plan_id="plan-1")
    store.journal_plan("plan-1", "run-1", [{"action_id": "a1", "seq": 0, "endpoint": "/users/track",
                                              "kind": "unsubscribe_email", "subject_keys": [ANN.casefold()]}], T0)
    echo = {"responses": [{"status": 400, "errors": [{"type": "invalid", "input": {"email": ANN}},
                                                      f"'{ANN}' is not valid"]}],
            "by_email": {ANN: "rejected"}, "external_ids": ["ext-4242"]}
    store.journal_result("a1", "rejected", response_summary=echo, error=f"400 for {ANN}", at=T0)
    rec.applying()
    rec.partial(actions_failed=1, error=f"batch a1 rejected {ANN}")


def test_no_identity_is_left_in_clear_anywhere_in_the_report(store: Store, cfg: Config) -> None:
    seeded(store)
    md, doc = read(write_report(store, "run-1", cfg))
    blob = md + json.dumps(doc)
    for clear in (ANN, ANN.casefold(), "bob@example.com", "ext-4242"):
        assert clear not in blob
    assert "A***@example.com#" in blob
    key = mask_key(cfg)
    assert doc["actions"][0]["response_summary"]["external_ids"] == [mask("ext-4242", key)]
    assert doc["drift_items"][0]["detail"]["identity"] == mask(ANN, key)
    assert doc["exceptions"][0]["identity"] == mask("bob@example.com", key)


def test_revealed_reports_show_identities(store: Store, cfg: Config) -> None:
    seeded(store)
    revealing = Config(state=cfg.state, report=ReportConfig(dir=cfg.report.dir, reveal=True), path=cfg.path)
    md, doc = read(write_report(store, "run-1", revealing))
    assert ANN in json.dumps(doc) and "bob@example.com" in md


def test_masked_tokens_cannot_be_recomputed_from_the_report(store: Store, cfg: Config, tmp_path: Path) -> None:
    seeded(store)
    md_path = write_report(store, "run-1", cfg)
    md, doc = read(md_path)
    blob = md + json.dumps(doc)
    tokens = set(TOKEN.findall(blob))
    assert hashed(ANN, mask_key(cfg)) in tokens

    candidates = {"reconcile:" + cfg.hash(), cfg.hash(), "cfg-hash-1", "reconcile:cfg-hash-1"}
    candidates |= set(re.findall(r"[0-9A-Za-z:_-]{6,}", blob))
    for candidate in candidates:
        assert hashed(ANN, candidate.encode()) not in tokens, candidate

    key_file = mask_key_path(cfg)
    assert key_file.read_text().strip().encode() == mask_key(cfg)
    assert key_file.read_text().strip() not in blob
    assert cfg.report.dir.resolve() not in key_file.resolve().parents
    assert not any(p.name == "mask.key" for p in cfg.report.dir.rglob("*"))
    for path in (key_file, md_path, md_path.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_kept_key_is_stable_and_lives_beside_the_state(store: Store, cfg: Config, store_url: str) -> None:
    seeded(store)
    first = write_report(store, "run-1", cfg).with_suffix(".json").read_text()
    again = write_report(store, "run-1", cfg).with_suffix(".json").read_text()
    assert first == again
    if store_url.startswith("sqlite"):
        assert mask_key_path(cfg) == Path(store_url.removeprefix("sqlite:///")).resolve().parent / "mask.key"
    else:
        assert mask_key_path(cfg) == cfg.path.resolve().parent / ".reconcile" / "mask.key"


def test_a_configured_key_is_used_and_nothing_is_kept(store: Store, cfg: Config) -> None:
    seeded(store)
    env = {"RECONCILE_MASK_KEY": "operator-key-123"}
    _, doc = read(write_report(store, "run-1", cfg, environ=env))
    assert doc["drift_items"][0]["detail"]["identity"].endswith("#" + hashed(ANN, b"operator-key-123"))
    assert not mask_key_path(cfg, env).exists()


def test_a_kept_key_readable_by_others_is_made_private(cfg: Config) -> None:
    key = mask_key(cfg)
    path = mask_key_path(cfg)
    path.chmod(0o644)
    assert mask_key(cfg) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_kept_key_is_a_clear_error(cfg: Config) -> None:
    path = mask_key_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not-a-key\n")
    with pytest.raises(ConfigError, match="is not a key this program wrote"):
        mask_key(cfg)


def test_existing_report_files_become_private(store: Store, cfg: Config) -> None:
    rec = recorder(store)
    rec.failed("boom", 1)
    cfg.report.dir.mkdir(parents=True)
    stale = cfg.report.dir / "run-1.md"
    stale.write_text("old")
    stale.chmod(0o644)
    write_report(store, "run-1", cfg)
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600 and "boom" in stale.read_text()
