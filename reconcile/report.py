"""Run reports: a JSON evidence file and a Markdown summary per run, identities masked.

Every run gets one, whatever its outcome: the report opens with the run's status, exit
code and, for a run that did not apply cleanly (refused, stale, failed, interrupted,
partial), the error that says why. A run still `running` or `applying` is reported as
having no recorded outcome.

Masking is a keyed hash (HMAC-SHA256): the same person masks to the same token in every
report without the address being shown. Every string in the report is masked: values
under identity keys (`identity`, `subject_key(s)`, `email(s)`, `external_id(s)`, `braze_id(s)`, ...)
entirely, email addresses inside any other text (error messages, reasons, response
summaries echoing a rejected record). `report.reveal = true` shows identities in clear.

The key comes from the environment variable named by `report.mask_key_env`. Without it,
a random key is generated once and kept in `mask.key` (mode 0600) beside the SQLite state
database, or, when the state is in PostgreSQL or in memory, in `.reconcile/mask.key`
beside the config file (the current directory without one). It is never kept in the
report folder, which is what gets handed over: nothing in a report lets anyone recompute
a token from an address. Report files are written with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from reconcile.config import Config, state_url
from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY
from reconcile.errors import ConfigError, ConfigProblem
from reconcile.models.run import RUN_STATUSES, RunStatus

log = logging.getLogger(__name__)

KEY_FILE = "mask.key"
KEY_BYTES = 32
PRIVATE = 0o600
IDENTITY_KEY = re.compile(
    r"^(identity|identities|subject_keys?|emails?|email_keys?|external_ids?|braze_ids?|user_ids?|alias_names?)$",
    re.IGNORECASE,
)
EMAIL = re.compile(r"[^\s@,;:()<>\[\]\"']+@[^\s@,;:()<>\[\]\"']+\.[A-Za-z0-9-]+")
MEANING = {
    RunStatus.RUNNING: "no outcome recorded: the run is still going, or its process ended without recording one",
    RunStatus.APPLYING: "no outcome recorded: the run was applying, or its process ended while applying",
    RunStatus.PLANNED: "plan made and saved; nothing was written to Braze",
    RunStatus.DRY_RUN: "dry run; nothing was written to Braze",
    RunStatus.IN_SYNC: "no drift to correct",
    RunStatus.APPLIED: "every planned correction was sent and confirmed",
    RunStatus.PARTIAL: "applied, but some batches failed or some records were rejected",
    RunStatus.REFUSED: "a safety guard refused to apply; nothing was written to Braze",
    RunStatus.STALE: "the saved plan no longer matched Ketch/Braze; nothing was sent",
    RunStatus.FAILED: "the run failed",
    RunStatus.INTERRUPTED: "the run was stopped by a signal",
}


# masking ------------------------------------------------------------------------------


def mask(identity: str, key: bytes) -> str:
    """`j***@example.com#3f2a1c9d01` for emails, `id#3f2a1c9d01` otherwise."""
    digest = hmac.new(key, identity.strip().casefold().encode(), hashlib.sha256).hexdigest()[:10]
    local, at, domain = identity.strip().partition("@")
    return f"{local[:1]}***@{domain}#{digest}" if at else f"id#{digest}"


def mask_text(text: Any, key: bytes) -> Any:
    """Mask every email address inside free text (error messages, reasons)."""
    return EMAIL.sub(lambda m: mask(m.group(0), key), text) if isinstance(text, str) else text


def mask_all(value: Any, key: bytes, identity: bool = False) -> Any:
    """`value` with every string masked: wholly under an identity key, emails elsewhere."""
    if isinstance(value, str):
        return mask(value, key) if identity and value.strip() else mask_text(value, key)
    if isinstance(value, Mapping):
        return {
            mask_text(k, key): mask_all(v, key, identity or (isinstance(k, str) and bool(IDENTITY_KEY.match(k))))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_all(v, key, identity) for v in value]
    return value


def masked(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    return mask_all(doc, key)


def mask_key(cfg: Config, environ: Mapping[str, str] | None = None) -> bytes:
    """The masking key: `report.mask_key_env` if set, else the kept random key (see above)."""
    env = os.environ if environ is None else environ
    value = env.get(cfg.report.mask_key_env)
    if value:
        return value.encode()
    return _kept_key(mask_key_path(cfg, environ))


def mask_key_path(cfg: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Where the generated masking key is kept for this config."""
    folder = _sqlite_folder(cfg, environ)
    if folder is None:
        base = cfg.path.resolve().parent if cfg.path else Path.cwd()
        folder = base / ".reconcile"
    return folder / KEY_FILE


def _sqlite_folder(cfg: Config, environ: Mapping[str, str] | None) -> Path | None:
    try:
        url = make_url(state_url(cfg, environ))
    except (ConfigError, ValueError, TypeError):
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or url.query.get("uri"):
        return None
    return Path(url.database).expanduser().resolve().parent


def _kept_key(path: Path) -> bytes:
    if not path.exists():
        _create_key(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("masking key %s was readable by others (mode %o); set to 0600", path, mode)
        path.chmod(PRIVATE)
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 2 * KEY_BYTES or not re.fullmatch(r"[0-9a-f]+", text):
        raise ConfigError(
            ConfigProblem(
                "report.mask_key_env",
                f"the kept masking key {path} is not a key this program wrote",
                "restore it from a backup, or set the environment variable instead (a new key changes every token)",
            )
        )
    return text.encode()


def _create_key(path: Path) -> None:
    """Write a new random key; if another process got there first, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_private(staging, secrets.token_hex(KEY_BYTES) + "\n")
    try:
        os.link(staging, path)
        log.info("generated a masking key in %s; back it up to keep report tokens stable", path)
    except FileExistsError:
        pass
    finally:
        staging.unlink()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd >= 0:
            os.close(fd)


# the document -------------------------------------------------------------------------


def outcome(run: Mapping[str, Any]) -> dict[str, Any]:
    """Status, exit code, what the status means and the recorded error, for any run."""
    status = run.get("status")
    known = RunStatus(status) if status in RUN_STATUSES else None
    return {
        "status": status,
        "exit_code": run.get("exit_code"),
        "finished": bool(run.get("finished_at")) and known is not None and known.finished,
        "meaning": MEANING[known] if known is not None else f"unknown status {status!r}",
        "error": run.get("error"),
    }


def run_document(store: Any, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run, as plain JSON-able data (identities in clear)."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    actions = store.actions(run_id=run_id) if not run.get("plan_id") else store.actions(plan_id=run["plan_id"])
    return {
        "run": run,
        "outcome": outcome(run),
        "drift_counts": {c: int((run.get("drift_counts") or {}).get(c, 0)) for c in DRIFT_CLASSES},
        "exceptions": store.exceptions(run_id),
        "actions": [{k: a.get(k) for k in ("action_id", "seq", "kind", "endpoint", "status", "attempts",
                                           "response_summary", "error", "sent_at", "finished_at")}
                    | {"subjects": len(a.get("subject_keys") or [])} for a in actions],
        "drift_items": store.drift_items(run_id=run_id),
    }


def markdown(doc: dict[str, Any]) -> str:
    run = doc["run"]
    lines = [f"# Reconciliation run {run['run_id']}", ""]
    lines += _outcome_lines(doc.get("outcome") or outcome(run), run)
    lines += ["", "## Run", "",
              f"- mode: {_v(run.get('mode'))}; job: {_v(run.get('job'))}; config {_v(run.get('config_hash'))}",
              f"- started {_v(run.get('started_at'))}, finished {_v(run.get('finished_at'))}",
              f"- universe {_v(run.get('universe_count'))} subjects; Ketch records {_v(run.get('ketch_records'))}; "
              f"Braze profiles {_v(run.get('braze_count'))}",
              f"- actions planned {_v(run.get('actions_planned'))}, sent {_v(run.get('actions_sent'))}, "
              f"failed {_v(run.get('actions_failed'))}; verified {_v(run.get('verified_count'))}, "
              f"unverified {_v(run.get('unverified_count'))}", ""]
    if run.get("drift_counts") is None:
        lines += ["Drift was not computed: the run ended before planning."]
    else:
        lines += ["| drift class | severity | count |", "|---|---|---|"]
        lines += [f"| {c} | {SEVERITY[c]} | {n} |" for c, n in doc["drift_counts"].items()]
    if doc["exceptions"]:
        lines += ["", f"## Exceptions ({len(doc['exceptions'])})", "",
                  "| identity | source | reason |", "|---|---|---|"]
        lines += [f"| {_cell(e['identity'])} | {_cell(e['source'])} | {_cell(e['reason'])} |"
                  for e in doc["exceptions"][:200]]
    return "\n".join(lines) + "\n"


def _outcome_lines(out: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    lines = ["## Outcome", "", f"- status: **{_v(out['status'])}**; exit code: {_v(out['exit_code'])}",
             f"- {out['meaning']}"]
    if run.get("guard_overrides"):
        lines.append(f"- guards overridden by explicit flag: {', '.join(map(str, run['guard_overrides']))}")
    if out.get("error"):
        text = str(out["error"]).replace("```", "'''")
        lines += ["", "Why:", "", "```text", text, "```"]
    return lines


def _v(value: Any) -> str:
    """A value for a human reader: "-" for nothing recorded, times to the second."""
    if value is None or value == "":
        return "-"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def write_report(store: Any, run_id: str, cfg: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Write `<report.dir>/<run_id>.json`, `.md` and `.html` (mode 0600) and rebuild the folder's
    `index.html`; returns the Markdown path.

    The content is `reconcile.reports`' compliance report for this run, as of the moment it
    finished (now, for a run without an outcome).
    """
    from datetime import datetime, timezone

    from reconcile.reports.build import os_user, record_reveal, record_version, report_doc, write
    from reconcile.reports.history import Selection

    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    record_version(store, run_id)
    now = run.get("finished_at") or datetime.now(timezone.utc)
    if cfg.report.reveal:
        record_reveal(store, [run_id], os_user(), datetime.now(timezone.utc), "report.reveal = true")
    key = None if cfg.report.reveal else mask_key(cfg, environ)
    doc = report_doc(store, cfg, Selection(run_id=run_id), now, key)
    written = write(doc, Path(cfg.report.dir), run_id, ("json", "md", "html"))
    from reconcile.reports.index import write_index

    write_index(store, Path(cfg.report.dir), datetime.now(timezone.utc))
    return next(p for p in written if p.suffix == ".md")


def mask_key_notes(cfg: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """What `config check` says about the masking key outside the sandbox."""
    env = os.environ if environ is None else environ
    if cfg.sandbox.enabled or env.get(cfg.report.mask_key_env):
        return []
    return [f"report.mask_key_env: {cfg.report.mask_key_env} is not set, so report pseudonyms use a random key "
            f"generated once and kept in {mask_key_path(cfg, environ)} (mode 0600), never with the reports; "
            f"back that file up (a new key changes every token) or set {cfg.report.mask_key_env}"]
