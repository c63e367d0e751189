"""Pure planning: drift table in, batched actions out (semantics §5).

Each action is one Braze request (or one Ketch write-back batch) at the endpoint's
documented limit (clients/limits.py). Targets are chosen per kind and key type: a global
opt-out under `email` keys addresses each subscribed profile of the address by braze_id
(`users/track` by email would reach only one of them), group writes go by the subject's
key (by email they reach every profile sharing the address), deletions by the subject's
key (by email with the configured prioritization). Action ids are deterministic in the plan
id and the batch's content, so a resumed apply can tell what it already sent. Plan ids are
unique per run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from reconcile.clients.limits import ENDPOINT, batch_limit
from reconcile.engine.diff import SUBSCRIBED, Rules
from reconcile.errors import DataError
from reconcile.models.plan import Action, ActionKind, DriftKey, Field, IdType, Plan, Target, WriteBack


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


_FIELDS = {f.value: f for f in Field}


def drift_keys(drift: pd.DataFrame) -> list[DriftKey]:
    """The DriftKey of every drift row, in row order."""
    def column(name: str) -> Any:
        return drift[name].astype(object).where(drift[name].notna(), None).to_numpy(dtype=object)

    try:
        return [DriftKey(s, c, _FIELDS[f], g if f == "group" else None)
                for s, c, f, g in zip(column("subject_key"), column("drift_class"), column("field"),
                                      column("group_id"))]
    except KeyError as exc:
        raise DataError(f"drift field {exc.args[0]!r} is not one of {', '.join(_FIELDS)}") from None


def _profile_targets(profiles: pd.DataFrame, kind: ActionKind) -> pd.DataFrame:
    """subject_key, value: the profiles a global write must reach, by braze_id."""
    state = profiles["email_subscribe"].astype("string")
    want = state.isin(SUBSCRIBED).fillna(False) if kind is ActionKind.GLOBAL_UNSUBSCRIBE \
        else (state == "unsubscribed").fillna(False)
    hit = profiles[want.to_numpy() & profiles["braze_id"].notna().to_numpy()]
    return pd.DataFrame({"subject_key": hit["subject_key"].astype(str), "value": hit["braze_id"].astype(str)})


def _targets(rows: pd.DataFrame, kind: ActionKind, rules: Rules, emails: pd.Series,
             profiles: pd.DataFrame) -> tuple[IdType, pd.DataFrame]:
    """(id type, frame of subject_key + value) for the drift rows of one kind."""
    subjects = rows.drop_duplicates("subject_key")
    by_key = IdType.EMAIL if rules.key_type == "email" else IdType.EXTERNAL_ID
    if kind in (ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE) and rules.key_type == "email":
        picked = _profile_targets(profiles[profiles["subject_key"].isin(subjects["subject_key"])], kind)
        return IdType.BRAZE_ID, picked
    if kind in (ActionKind.BLOCKLIST, ActionKind.ALIAS_OPTOUT):
        values = subjects["subject_key"].map(emails)
        return IdType.EMAIL, pd.DataFrame({"subject_key": subjects["subject_key"], "value": values}).dropna()
    id_type = IdType.KETCH if kind is ActionKind.KETCH_WRITEBACK else by_key
    return id_type, pd.DataFrame({"subject_key": subjects["subject_key"], "value": subjects["identity"]}).dropna()


def build_plan(drift: pd.DataFrame, emails: pd.Series, profiles: pd.DataFrame, rules: Rules, *, plan_fp: str,
               plan_id: str, track_batch_size: int = 75) -> Plan:
    """Batch the actionable drift rows. `emails` maps subject_key -> email (blocklist, alias);
    `profiles` is the braze_profiles frame (which profiles a global write reaches)."""
    todo = drift[drift["action"].fillna("").astype(str) != ""]
    todo = todo.assign(_key=pd.Series(drift_keys(todo), index=todo.index, dtype=object) if len(todo) else [])
    actions: list[Action] = []
    kinds = sorted({ActionKind(a) for a in todo["action"].unique()}, key=lambda k: (k.phase, k.value))
    for kind in kinds:
        rows = todo[todo["action"] == kind.value]
        for group_id, part in (rows.groupby(rows["group_id"].astype(str)) if kind in
                               (ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GROUP_SUBSCRIBE) else [(None, rows)]):
            part = part.sort_values(["subject_key", "field"], kind="stable")
            id_type, targets = _targets(part, kind, rules, emails, profiles)
            keys_of: dict[str, list[DriftKey]] = {}
            for subject, key in zip(part["subject_key"].to_numpy(dtype=object), part["_key"]):
                keys_of.setdefault(subject, []).append(key)
            for batch in _batches(targets, batch_limit(kind, track_batch_size)):
                actions.append(_action(kind, id_type, group_id, batch, keys_of, part, rules, plan_id, len(actions)))
    return Plan(plan_id=plan_id, fingerprint=plan_fp, actions=tuple(actions))


def _batches(targets: pd.DataFrame, size: int) -> list[list[tuple[str, str]]]:
    """Split (subject, value) pairs into batches of at most `size` values, keeping one
    subject's values together unless they alone exceed `size`."""
    t = targets.drop_duplicates(["subject_key", "value"]).sort_values("subject_key", kind="stable")
    subjects = t["subject_key"].astype(str).to_numpy(dtype=object)
    values = t["value"].astype(str).to_numpy(dtype=object)
    if not len(subjects):
        return []
    starts = np.flatnonzero(np.r_[True, subjects[1:] != subjects[:-1]])
    counts = np.diff(np.r_[starts, len(subjects)])
    bounds: list[tuple[int, int]] = []
    begin, filled = 0, 0
    for start, count in zip(starts.tolist(), counts.tolist()):
        if filled and filled + count > size:
            bounds.append((begin, start))
            begin, filled = start, 0
        if count > size:  # one subject alone fills whole batches; its remainder opens the next one
            full = count // size * size
            bounds += [(i, i + size) for i in range(start, start + full, size)]
            begin, filled = start + full, count - full
            continue
        filled += count
    if filled:
        bounds.append((begin, len(subjects)))
    return [list(zip(subjects[a:b], values[a:b])) for a, b in bounds]


def _action(kind: ActionKind, id_type: IdType, group_id: str | None, batch: list[tuple[str, str]],
            keys_of: dict[str, list[DriftKey]], rows: pd.DataFrame, rules: Rules, plan_id: str,
            seq: int) -> Action:
    targets = tuple(Target(s, id_type, v) for s, v in batch)
    subjects = list(dict.fromkeys(s for s, _ in batch))
    keys = tuple(k for s in subjects for k in keys_of.get(s, []))
    prioritization: tuple[str, ...] = ()
    if kind is ActionKind.DELETE and id_type is IdType.EMAIL:
        prioritization = tuple(rules.deletion_prioritization) or ("most_recently_updated",)
    writeback = _writeback(rows, subjects) if kind is ActionKind.KETCH_WRITEBACK else ()
    draft = Action("", plan_id, seq, kind, targets, keys, ENDPOINT[kind], group_id, prioritization, writeback)
    action_id = hashlib.sha256(f"{plan_id}\x1e{draft.content_hash()}".encode()).hexdigest()[:20]
    return Action(action_id, plan_id, seq, kind, targets, keys, ENDPOINT[kind], group_id, prioritization, writeback)


def _writeback(rows: pd.DataFrame, subjects: list[str]) -> tuple[WriteBack, ...]:
    out = []
    for s in subjects:
        mine = rows[rows["subject_key"] == s]
        groups = tuple(str(g) for f, g in zip(mine["field"], mine["group_id"]) if f == Field.GROUP and pd.notna(g))
        at = pd.to_datetime(mine["braze_unsubscribed_at"], utc=True, errors="coerce").max()
        when = at.isoformat() if not pd.isna(at) else pd.Timestamp(0, tz="UTC").isoformat()
        out.append(WriteBack(s, groups, bool((mine["field"] == Field.EMAIL_SUBSCRIBE).any()), when))
    return tuple(out)


# ----------------------------------------------------------------------------- plan documents


def plan_document(plan: Plan, drift: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """The JSON form saved in the state store and written by `plan --out`."""
    rows = drift.astype(object).where(drift.notna(), None)
    return {"plan_id": plan.plan_id, "fingerprint": plan.fingerprint, **extra,
            "actions_hash": plan.actions_hash(),
            "drift": json.loads(rows.to_json(orient="records", date_format="iso")),
            "actions": [a.to_json() for a in plan.actions]}


def plan_from_document(d: Any) -> Plan:
    """A saved plan, checked: DataError names what is missing instead of failing mid-apply."""
    if not isinstance(d, dict):
        raise DataError("not a plan: expected a JSON object written by `reconcile plan --out`")
    missing = [k for k in ("plan_id", "fingerprint", "config_hash", "drift", "actions") if k not in d]
    if missing:
        raise DataError(f"plan file lacks {', '.join(missing)}; write it again with `reconcile plan --out`")
    if not isinstance(d["actions"], list):
        raise DataError("plan file: `actions` is not a list; write it again with `reconcile plan --out`")
    actions = tuple(Action.from_json(a, i) for i, a in enumerate(d["actions"]))
    return Plan(str(d["plan_id"]), str(d["fingerprint"]), actions)
