"""Run reports: a JSON evidence file and a Markdown summary per run, emails masked.

Masking is a keyed hash (HMAC-SHA256) so the same person masks to the same token across
reports without revealing the address; the key comes from the environment variable named
by `report.mask_key_env`. `report.reveal = true` shows identities in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import os
from pathlib import Path
from typing import Any, Mapping

from reconcile.config import Config
from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY


def mask(identity: str, key: bytes) -> str:
    """`j***@example.com#3f2a1c9d` for emails, `id#3f2a1c9d` otherwise."""
    digest = hmac.new(key, identity.strip().casefold().encode(), hashlib.sha256).hexdigest()[:10]
    local, at, domain = identity.strip().partition("@")
    return f"{local[:1]}***@{domain}#{digest}" if at else f"id#{digest}"


def mask_key(cfg: Config, environ: Mapping[str, str] | None = None) -> bytes:
    env = os.environ if environ is None else environ
    value = env.get(cfg.report.mask_key_env)
    return value.encode() if value else ("reconcile:" + cfg.hash()).encode()


def run_document(store: Any, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run, as plain JSON-able data (identities in clear)."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    actions = store.actions(run_id=run_id) if not run.get("plan_id") else store.actions(plan_id=run["plan_id"])
    return {
        "run": run,
        "drift_counts": {c: int((run.get("drift_counts") or {}).get(c, 0)) for c in DRIFT_CLASSES},
        "exceptions": store.exceptions(run_id),
        "actions": [{k: a.get(k) for k in ("action_id", "seq", "kind", "endpoint", "status", "attempts",
                                           "response_summary", "error", "sent_at", "finished_at")}
                    | {"subjects": len(a.get("subject_keys") or [])} for a in actions],
        "drift_items": store.drift_items(run_id=run_id),
    }


EMAIL = re.compile(r"[^\s@,;:()<>\[\]\"']+@[^\s@,;:()<>\[\]\"']+\.[A-Za-z0-9-]+")


def mask_text(text: Any, key: bytes) -> Any:
    """Mask every email address inside free text (error messages, reasons)."""
    return EMAIL.sub(lambda m: mask(m.group(0), key), text) if isinstance(text, str) else text


def masked(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    out = dict(doc)
    out["run"] = {k: mask_text(v, key) for k, v in doc["run"].items()}
    out["actions"] = [{**a, "error": mask_text(a.get("error"), key)} for a in doc["actions"]]
    out["exceptions"] = [{**e, "identity": mask(str(e.get("identity") or ""), key),
                          "reason": mask_text(e.get("reason"), key)} for e in doc["exceptions"]]
    out["drift_items"] = [{**d, "subject_key": mask(str(d["subject_key"]), key), "detail": None,
                           "reason": mask_text(d.get("reason"), key)} for d in doc["drift_items"]]
    return out


def markdown(doc: dict[str, Any]) -> str:
    run = doc["run"]
    lines = [f"# Reconciliation run {run['run_id']}", "",
             f"- mode: {run.get('mode')}; status: **{run.get('status')}**; exit code: {run.get('exit_code')}",
             f"- started {run.get('started_at')}, finished {run.get('finished_at')}; config {run.get('config_hash')}",
             f"- universe {run.get('universe_count')} subjects; Ketch records {run.get('ketch_records')}; "
             f"Braze profiles {run.get('braze_count')}",
             f"- actions planned {run.get('actions_planned')}, sent {run.get('actions_sent')}, "
             f"failed {run.get('actions_failed')}; verified {run.get('verified_count')}, "
             f"unverified {run.get('unverified_count')}", "",
             "| drift class | severity | count |", "|---|---|---|"]
    lines += [f"| {c} | {SEVERITY[c]} | {n} |" for c, n in doc["drift_counts"].items()]
    if doc["exceptions"]:
        lines += ["", f"## Exceptions ({len(doc['exceptions'])})", "", "| identity | source | reason |", "|---|---|---|"]
        lines += [f"| {e['identity']} | {e['source']} | {e['reason']} |" for e in doc["exceptions"][:200]]
    return "\n".join(lines) + "\n"


def write_report(store: Any, run_id: str, cfg: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Write `<report.dir>/<run_id>.json` and `.md`; returns the Markdown path."""
    doc = run_document(store, run_id)
    if not cfg.report.reveal:
        doc = masked(doc, mask_key(cfg, environ))
    out = Path(cfg.report.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{run_id}.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    md = out / f"{run_id}.md"
    md.write_text(markdown(doc), encoding="utf-8")
    return md
