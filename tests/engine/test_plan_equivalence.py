"""`build_plan` and `drift_keys` against the implementation they replaced (per-row Python
objects, a dict of drift keys per subject, one `content_hash` per draft action), kept
below as it was: on random drift tables (object and Arrow-string columns, missing values
in every column a drift table can lack, several rows and profiles per subject, names that
need JSON escapes, small batch limits so that subjects are split, rows in any order or sorted
by subject as diff writes them) both give equal plans
(every action, target, drift key, write-back and id), the same drift keys, and the same
error for an unknown field. Subject keys are never missing (diff never emits such a row).
Also: every planned action id is the hash of its `Action.content_hash()`."""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.clients.limits import ENDPOINT, batch_limit
from reconcile.engine import plan as plan_module
from reconcile.engine.diff import SUBSCRIBED, Rules, diff
from reconcile.engine.frames import DRIFT_COLUMNS, conform
from reconcile.engine.plan import build_plan, drift_keys
from reconcile.errors import DataError
from reconcile.models.plan import Action, ActionKind, DriftKey, Field, IdType, Plan, Target, WriteBack

LIMIT = batch_limit  # the reference's batch limit; patched together with plan.batch_limit

# ----------------------------------------------------------------------------- the replaced implementation


_FIELDS = {f.value: f for f in Field}


def old_drift_keys(drift: pd.DataFrame) -> list[DriftKey]:
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


def old_build_plan(drift: pd.DataFrame, emails: pd.Series, profiles: pd.DataFrame, rules: Rules, *, plan_fp: str,
               plan_id: str, track_batch_size: int = 75) -> Plan:
    """Batch the actionable drift rows. `emails` maps subject_key -> email (blocklist, alias);
    `profiles` is the braze_profiles frame (which profiles a global write reaches)."""
    todo = drift[drift["action"].fillna("").astype(str) != ""]
    todo = todo.assign(_key=pd.Series(old_drift_keys(todo), index=todo.index, dtype=object) if len(todo) else [])
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
            for batch in _batches(targets, LIMIT(kind, track_batch_size)):
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


# ----------------------------------------------------------------------------- random drift tables

T = [pd.Timestamp("2026-10-01T00:00:00", tz="UTC"), pd.Timestamp("2026-10-05T12:30:00.123456", tz="UTC")]
SUBJECTS = ["a@x.io", "b@x.io", "c@x.io", 'q"uote@x.io', "back\\slash@x.io", "ünï@x.io", "tab\t@x.io", "z@x.io"]
FIELDS = ["group", "group", "group", "email_subscribe", "email_subscribe", "profile", "blocklist", "consent"]
CLASSES = ["missed_optout", "missed_optin", "braze_newer_optout", "missed_deletion", "unmatched", "é-class", None]
GROUPS = ["g1", "g2", 'g"3', None]
ACTIONS = [k.value for k in ActionKind] * 2 + ["", None]
STATES = ["subscribed", "opted_in", "unsubscribed", None]
TEXT = ["object", "string", "str"]  # dtype of the text columns
TEXT_COLUMNS = ["subject_key", "identity", "drift_class", "field", "action", "group_id"]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    pool = draw(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(0, 40))
    rows = []
    for _ in range(n):
        s = draw(st.sampled_from(pool))
        rows.append({"subject_key": s, "identity": draw(st.sampled_from([f"id-{s}", None, "ïd"])),
                     "drift_class": draw(st.sampled_from(CLASSES)), "field": draw(st.sampled_from(FIELDS)),
                     "expected": "unsubscribed", "actual": "subscribed", "severity": "critical", "reason": "r",
                     "action": draw(st.sampled_from(ACTIONS)), "group_id": draw(st.sampled_from(GROUPS)),
                     "ketch_collected_at": T[0], "braze_unsubscribed_at": draw(st.sampled_from([None, *T]))})
    bad = draw(st.one_of(st.none(), st.integers(0, 60)))
    if bad is not None and bad < n:  # an unknown or missing field (refused if the row is planned)
        rows[bad]["field"] = draw(st.sampled_from(["bogus", None]))
    drift = pd.DataFrame(rows, columns=DRIFT_COLUMNS) if rows else \
        pd.DataFrame({c: pd.Series(dtype=object) for c in DRIFT_COLUMNS})
    if draw(st.booleans()):  # sorted by subject, as diff writes it
        drift = drift.sort_values("subject_key", kind="stable").reset_index(drop=True)
    text = draw(st.sampled_from(TEXT))
    if text != "object":
        drift = drift.astype({c: text for c in TEXT_COLUMNS})
    profiles = [{"subject_key": s, "braze_id": draw(st.sampled_from([f"{s}#{i}", f"{s}#{i}", None])),
                 "external_id": None, "email": s, "email_subscribe": draw(st.sampled_from(STATES))}
                for s in pool + ["other@x.io"] for i in range(draw(st.integers(0, 4)))]
    emails = pd.Series({s: draw(st.sampled_from([s, s.upper(), None])) for s in pool}, dtype=object)
    rules = Rules(key_type=draw(st.sampled_from(["email", "external_id"])),
                  deletion_prioritization=draw(st.sampled_from([(), ("identified", "most_recently_updated")])))
    return {"drift": drift, "emails": emails, "profiles": conform(pd.DataFrame(profiles), "braze_profiles"),
            "rules": rules, "track": draw(st.sampled_from([1, 2, 3, 75])),
            "ids": draw(st.sampled_from([None, 1, 2, 3]))}


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - compared, type and message
        return "error", type(exc), str(exc)


def limited(ids: int | None) -> ExitStack:
    """Both implementations batch id endpoints at `ids` targets (None: the real 50)."""
    stack = ExitStack()
    if ids is not None:
        def small(kind: ActionKind, track: int) -> int:
            return min(batch_limit(kind, track), ids) if kind not in (
                ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE) else batch_limit(kind, track)
        stack.enter_context(mock.patch.object(plan_module, "batch_limit", small))
        stack.enter_context(mock.patch(f"{__name__}.LIMIT", small))
    return stack


def assert_ids_hash_content(plan: Plan) -> None:
    for a in plan.actions:
        assert a.action_id == hashlib.sha256(f"{plan.plan_id}\x1e{a.content_hash()}".encode()).hexdigest()[:20]


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_build_plan_equals_the_replaced_implementation(case):
    args = (case["drift"], case["emails"], case["profiles"], case["rules"])
    kw = {"plan_fp": "fp", "plan_id": "plan-h", "track_batch_size": case["track"]}
    with limited(case["ids"]):
        new = outcome(build_plan, *args, **kw)
        old = outcome(old_build_plan, *args, **kw)
    assert new == old
    if new[0] == "ok":
        assert_ids_hash_content(new[1])
        assert [a.to_json() for a in new[1].actions] == [a.to_json() for a in old[1].actions]


@settings(max_examples=examples(200), deadline=None)
@given(cases())
def test_drift_keys_equal_the_replaced_implementation(case):
    assert outcome(drift_keys, case["drift"]) == outcome(old_drift_keys, case["drift"])


# ----------------------------------------------------------------------------- real diff output


def _bench() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "diff_scale.py"
    spec = importlib.util.spec_from_file_location("diff_scale_bench", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("drift_share", [None, 0.03], ids=["random", "in-step-3pct"])
@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_plans_from_benchmark_frames_equal_the_replaced_implementation(drift_share, key_type):
    bench = _bench()
    o = bench.frames(4000, seed=7, drift=drift_share)
    rules = Rules(key_type=key_type, topics=bench.TOPICS, write_back_optouts=True, apply_optins=True,
                  alias_unmatched=True, suppress_deleted_emails=True)
    d = diff(o, rules)
    emails = o.universe.set_index("subject_key")["email"]
    new = build_plan(d, emails, o.braze_profiles, rules, plan_fp="fp", plan_id="plan-b", track_batch_size=7)
    old = old_build_plan(d, emails, o.braze_profiles, rules, plan_fp="fp", plan_id="plan-b", track_batch_size=7)
    assert len(new.actions) >= 5
    assert {a.kind for a in new.actions} >= {ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GLOBAL_UNSUBSCRIBE,
                                             ActionKind.KETCH_WRITEBACK}
    assert new == old
    assert new.actions_hash() == old.actions_hash()
    assert_ids_hash_content(new)
    assert drift_keys(d) == old_drift_keys(d)


def test_a_subject_split_over_batches_keeps_its_drift_keys_and_writeback_in_each():
    rows = [{"subject_key": "big@x.io", "identity": "big@x.io", "drift_class": "missed_optout",
             "field": "email_subscribe", "expected": "unsubscribed", "actual": "subscribed", "severity": "critical",
             "reason": "r", "action": "global_unsubscribe", "group_id": None, "ketch_collected_at": T[0],
             "braze_unsubscribed_at": T[1]},
            {"subject_key": "small@x.io", "identity": "small@x.io", "drift_class": "missed_optout",
             "field": "email_subscribe", "expected": "unsubscribed", "actual": "subscribed", "severity": "critical",
             "reason": "r", "action": "global_unsubscribe", "group_id": None, "ketch_collected_at": T[0],
             "braze_unsubscribed_at": None}]
    drift = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    profiles = conform(pd.DataFrame([{"subject_key": s, "braze_id": f"{s}#{i}", "email": s,
                                      "email_subscribe": "subscribed"}
                                     for s, k in (("big@x.io", 7), ("small@x.io", 2)) for i in range(k)]),
                       "braze_profiles")
    emails = pd.Series({"big@x.io": "big@x.io", "small@x.io": "small@x.io"})
    args = (drift, emails, profiles, Rules(key_type="email"))
    new = build_plan(*args, plan_fp="f", plan_id="p", track_batch_size=3)
    assert new == old_build_plan(*args, plan_fp="f", plan_id="p", track_batch_size=3)
    assert [len(a.targets) for a in new.actions] == [3, 3, 3]  # 7 = 3 + 3 + 1, then small's 2 join the last
    assert [len(a.drift_keys) for a in new.actions] == [1, 1, 2]
