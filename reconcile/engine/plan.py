"""Pure planning: drift table in, batched actions out (semantics §5).

Each action is one Braze request (or one Ketch write-back batch) at the endpoint's
documented limit. Action ids are deterministic in the plan id and the batch's content,
so a resumed apply can tell what it already sent. Plan ids are unique per run: the same
world seen again (say, an import that reverted opt-outs) gets a new plan, never a
"confirmed already" skip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reconcile.engine.diff import Rules
from reconcile.errors import DataError

# Phase order: stop unwanted mail first, then suppress, then erase, then the rest.
PHASES: dict[str, tuple[int, str, int | None]] = {
    # kind: (phase, endpoint, batch size; None = braze.track_batch_size)
    "group_unsubscribe": (0, "/subscription/status/set", 50),
    "global_unsubscribe": (0, "/users/track", None),
    "global_unsubscribe_email": (0, "/email/status", 50),
    "blocklist": (1, "/email/blocklist", 50),
    "delete": (2, "/users/delete", 50),
    "ketch_writeback": (3, "ketch:/subscriptions/update", 50),
    "alias_optout": (4, "/users/alias/new", 50),
    "group_subscribe": (5, "/subscription/status/set", 50),
    "global_subscribe": (5, "/users/track", None),
    "global_subscribe_email": (5, "/email/status", 50),
}
UNSUBSCRIBE_KINDS = {"group_unsubscribe", "global_unsubscribe", "global_unsubscribe_email"}


@dataclass(frozen=True)
class Plan:
    plan_id: str
    fingerprint: str
    drift: pd.DataFrame
    actions: list[dict[str, Any]]

    @property
    def deletion_subjects(self) -> set[str]:
        return {s for a in self.actions if a["kind"] == "delete" for s in a["subject_keys"]}

    @property
    def unsubscribe_subjects(self) -> set[str]:
        return {s for a in self.actions if a["kind"] in UNSUBSCRIBE_KINDS for s in a["subject_keys"]}


def fingerprint(*parts: Any) -> str:
    """A stable hash of plan inputs (frames are hashed by content, order-independent)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            cols = sorted(part.columns)
            text = part[cols].astype("string").fillna("<NA>")  # one dtype: hashes do not depend on storage
            rows = np.sort(pd.util.hash_pandas_object(text, index=False).to_numpy())  # row order does not matter
            h.update("|".join(cols).encode())
            h.update(rows.tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:24]


def _kind(row_action: str, key_type: str) -> str:
    if key_type == "email" and row_action in ("global_unsubscribe", "global_subscribe"):
        return row_action + "_email"
    return row_action


def _target(kind: str) -> str:
    """Which identifier a kind sends: the subject's identity, or its email."""
    return "email" if kind in ("blocklist", "alias_optout") or kind.endswith("_email") else "identity"


def build_plan(drift: pd.DataFrame, emails: pd.Series, rules: Rules, *, plan_fp: str, plan_id: str | None = None,
               track_batch_size: int = 75) -> Plan:
    """Batch the actionable drift rows. `emails` maps subject_key -> email (for blocklist/alias)."""
    todo = drift[drift["action"].fillna("") != ""].copy()
    todo["kind"] = [_kind(a, rules.key_type) for a in todo["action"]]
    todo["email"] = todo["subject_key"].map(emails)
    todo["group_id"] = todo["group_id"].astype(object).where(todo["group_id"].notna(), "")
    actions: list[dict[str, Any]] = []
    ordered = sorted(todo.groupby(["kind", "group_id"], sort=True), key=lambda kv: (PHASES[kv[0][0]][0], kv[0]))
    for (kind, group_id), rows in ordered:
        _, endpoint, size = PHASES[kind]
        col = "email" if _target(kind) == "email" else "identity"
        rows = rows[rows[col].notna()].sort_values(["subject_key", "field"], kind="stable")
        for batch in _batches(rows, col, size or track_batch_size):
            actions.append(_action(kind, endpoint, group_id or None, batch, plan_id or plan_fp, rules))
    for seq, action in enumerate(actions):
        action["seq"] = seq
    return Plan(plan_id=plan_id or f"plan-{plan_fp[:12]}", fingerprint=plan_fp, drift=drift, actions=actions)


def _batches(rows: pd.DataFrame, col: str, size: int) -> list[list[tuple]]:
    """Split rows (sorted by subject) into batches of at most `size` distinct subjects."""
    records = zip(rows["subject_key"].astype(str), rows[col].astype(str), rows["drift_class"].astype(str),
                  rows["field"].astype(str), rows["braze_unsubscribed_at"])
    batches: list[list[tuple]] = []
    current: list[tuple] = []
    subjects = 0
    last = None
    for rec in records:
        if rec[0] != last:
            if subjects == size:
                batches.append(current)
                current, subjects = [], 0
            subjects += 1
            last = rec[0]
        current.append(rec)
    if current:
        batches.append(current)
    return batches


def _action(kind: str, endpoint: str, group_id: str | None, batch: list[tuple], salt: str,
            rules: Rules) -> dict[str, Any]:
    """One request; `batch` holds (subject, identity, class, field, unsubscribed_at) per drift row."""
    first = {rec[0]: rec[1] for rec in batch}
    subjects, ids = list(first), list(first.values())
    body = {"kind": kind, "group_id": group_id, "ids": ids}
    action_id = hashlib.sha256(json.dumps([salt, body], sort_keys=True).encode()).hexdigest()[:20]
    params: dict[str, Any] = {"key_type": rules.key_type}
    if group_id:
        params["group_id"] = group_id
    if kind == "delete" and rules.key_type == "email":
        params["prioritization"] = list(rules.deletion_prioritization) or ["most_recently_updated"]
    if kind == "ketch_writeback":
        params["fields"] = [[r[3] for r in batch if r[0] == s] for s in subjects]
        params["at"] = [_iso(max((pd.Timestamp(r[4]) for r in batch if r[0] == s and not pd.isna(r[4])),
                                 default=pd.NaT)) for s in subjects]
    return {"action_id": action_id, "kind": kind, "endpoint": endpoint, "params": params,
            "identities": ids, "subject_keys": subjects, "drift_keys": [[r[0], r[2], r[3]] for r in batch],
            "payload": {"identities": ids, "params": params}}


def _iso(value: Any) -> str:
    ts = pd.Timestamp(value)
    return ts.isoformat() if not pd.isna(ts) else pd.Timestamp(0, tz="UTC").isoformat()


def plan_to_dict(plan: Plan, **extra: Any) -> dict[str, Any]:
    drift = plan.drift.astype(object).where(plan.drift.notna(), None)
    return {"plan_id": plan.plan_id, "fingerprint": plan.fingerprint, **extra,
            "drift": json.loads(drift.to_json(orient="records", date_format="iso")),
            "actions": plan.actions}


ACTION_KEYS = ("action_id", "kind", "endpoint", "params", "identities", "subject_keys", "drift_keys")


def plan_from_dict(d: Any) -> Plan:
    """A saved plan, checked: DataError names what is missing instead of failing mid-apply."""
    if not isinstance(d, dict):
        raise DataError("not a plan: expected a JSON object written by `reconcile plan --out`")
    missing = [k for k in ("plan_id", "fingerprint", "config_hash", "drift", "actions") if k not in d]
    if missing:
        raise DataError(f"plan file lacks {', '.join(missing)}; write it again with `reconcile plan --out`")
    for i, a in enumerate(d["actions"]):
        lacking = [k for k in ACTION_KEYS if not isinstance(a, dict) or k not in a]
        if lacking or a["kind"] not in PHASES:
            raise DataError(f"plan action {i} is malformed ({', '.join(lacking) or 'unknown kind ' + repr(a['kind'])}); "
                            "write the plan again with `reconcile plan --out`")
    drift = pd.DataFrame(d.get("drift", []))
    return Plan(d["plan_id"], d["fingerprint"], drift, list(d.get("actions", [])))
