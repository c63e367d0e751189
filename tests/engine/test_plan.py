"""`build_plan` (pure): batching at each endpoint's limit, phase order, deterministic ids,
per-group actions, deletion prioritization; plan documents round-trip and malformed ones
are refused with a DataError naming the problem."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd
import pytest

from reconcile.clients.limits import ENDPOINT, batch_limit
from reconcile.config import TopicMapping
from reconcile.engine.diff import Rules, diff
from reconcile.engine.frames import DRIFT_COLUMNS, conform
from reconcile.engine.plan import build_plan, plan_document, plan_from_document
from reconcile.errors import DataError
from reconcile.models.plan import Action, ActionKind, DriftKey, Field, IdType, Plan, Target, WriteBack

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
EMAIL = Rules(key_type="email", topics=(TopicMapping("newsletter", "email", "g-news"),))
EXTERNAL = Rules(key_type="external_id", topics=EMAIL.topics)

# (kind, drift class, field) of a drift row that asks for that correction
KINDS = {
    ActionKind.GROUP_UNSUBSCRIBE: ("missed_optout", "group"),
    ActionKind.GLOBAL_UNSUBSCRIBE: ("missed_optout", "email_subscribe"),
    ActionKind.BLOCKLIST: ("missed_blocklist", "blocklist"),
    ActionKind.DELETE: ("missed_deletion", "profile"),
    ActionKind.KETCH_WRITEBACK: ("braze_newer_optout", "group"),
    ActionKind.ALIAS_OPTOUT: ("unmatched", "profile"),
    ActionKind.GROUP_SUBSCRIBE: ("missed_optin", "group"),
    ActionKind.GLOBAL_SUBSCRIBE: ("missed_optin", "email_subscribe"),
}
GLOBAL = (ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE)
ID_BATCHED = [k for k in ActionKind if k not in GLOBAL]


def subj(i: int, prefix: str = "s") -> str:
    return f"{prefix}{i:04d}@x.io"


def row(subject: str, kind: ActionKind, *, group: str | None = "g-news", field: str | None = None,
        drift_class: str | None = None, identity: str | None = None, unsub_at=None) -> dict:
    cls, fld = KINDS[kind]
    fld = field or fld
    return {"subject_key": subject, "identity": identity or subject, "drift_class": drift_class or cls,
            "field": fld, "expected": "unsubscribed", "actual": "subscribed", "severity": "critical",
            "reason": "test", "action": kind.value, "group_id": group if fld == "group" else None,
            "ketch_collected_at": T0, "braze_unsubscribed_at": unsub_at}


def drift_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DRIFT_COLUMNS})
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def profiles_frame(per_subject: dict[str, list[str]]) -> pd.DataFrame:
    """braze_profiles: one row per profile; values are the profiles' email_subscribe states."""
    rows = [{"subject_key": s, "braze_id": f"{s}#{i}", "external_id": None, "email": s, "email_subscribe": st}
            for s, states in per_subject.items() for i, st in enumerate(states)]
    return conform(pd.DataFrame(rows), "braze_profiles")


def emails_of(rows: list[dict]) -> pd.Series:
    keys = list(dict.fromkeys(r["subject_key"] for r in rows))
    return pd.Series(keys, index=keys, dtype=object)


def plan_for(rows: list[dict], *, rules: Rules = EMAIL, profiles: pd.DataFrame | None = None,
             plan_id: str = "plan-1", track: int = 75) -> Plan:
    if profiles is None:
        state = "unsubscribed" if any(r["action"] == ActionKind.GLOBAL_SUBSCRIBE.value for r in rows) else "subscribed"
        profiles = profiles_frame({r["subject_key"]: [state] for r in rows})
    return build_plan(drift_frame(rows), emails_of(rows), profiles, rules, plan_fp="fp-1", plan_id=plan_id,
                      track_batch_size=track)


def sizes(plan: Plan) -> list[int]:
    return [len(a.targets) for a in plan.actions]


# ----------------------------------------------------------------------------- limits


def test_batch_limits_are_the_documented_ones():
    for kind in ID_BATCHED:
        assert batch_limit(kind, 75) == 50, kind
    for kind in GLOBAL:
        assert batch_limit(kind, 75) == 75
        assert batch_limit(kind, 50) == 50
        assert batch_limit(kind, 500) == 75, "users/track is capped at 75 objects"
        assert batch_limit(kind, 0) == 1
    assert batch_limit(ActionKind.ALIAS_OPTOUT, 30) == 30, "one track object per alias profile"


@pytest.mark.parametrize("kind", ID_BATCHED, ids=[k.value for k in ID_BATCHED])
@pytest.mark.parametrize("n, expected", [(49, [49]), (50, [50]), (51, [50, 1]), (101, [50, 50, 1])])
def test_id_endpoints_batch_at_50(kind, n, expected):
    rows = [row(subj(i), kind) for i in range(n)]
    plan = plan_for(rows)
    assert sizes(plan) == expected
    assert {a.kind for a in plan.actions} == {kind}
    assert {a.endpoint for a in plan.actions} == {ENDPOINT[kind]}
    sent = [t.subject_key for a in plan.actions for t in a.targets]
    assert sorted(sent) == sorted(r["subject_key"] for r in rows), "every subject exactly once"
    for a in plan.actions:
        assert {k.subject_key for k in a.drift_keys} == set(a.subject_keys)


@pytest.mark.parametrize("kind", GLOBAL, ids=[k.value for k in GLOBAL])
@pytest.mark.parametrize("track, n, expected", [
    (75, 74, [74]), (75, 75, [75]), (75, 76, [75, 1]), (75, 151, [75, 75, 1]),
    (50, 49, [49]), (50, 50, [50]), (50, 51, [50, 1]), (50, 101, [50, 50, 1]),
    (200, 76, [75, 1]),  # a larger configured size is capped at Braze's 75
])
def test_users_track_batches_at_track_batch_size_capped_at_75(kind, track, n, expected):
    rows = [row(subj(i), kind) for i in range(n)]
    plan = plan_for(rows, track=track)
    assert sizes(plan) == expected
    assert {a.endpoint for a in plan.actions} == {"/users/track"}
    assert {a.id_type for a in plan.actions} == {IdType.BRAZE_ID}, "email keys: each profile by braze_id"


def test_alias_optout_follows_a_smaller_track_batch_size():
    rows = [row(subj(i), ActionKind.ALIAS_OPTOUT) for i in range(31)]
    assert sizes(plan_for(rows, track=30)) == [30, 1]


def test_global_optout_targets_each_subscribed_profile_of_the_address():
    rows = [row("a@x.io", ActionKind.GLOBAL_UNSUBSCRIBE)]
    profiles = profiles_frame({"a@x.io": ["subscribed", "opted_in", "unsubscribed"]})
    (action,) = plan_for(rows, profiles=profiles).actions
    assert action.targets == (Target("a@x.io", IdType.BRAZE_ID, "a@x.io#0"),
                              Target("a@x.io", IdType.BRAZE_ID, "a@x.io#1"))


def test_several_profiles_of_one_subject_stay_in_one_batch():
    # 37 subjects with 2 profiles (74 targets), then one with 3: 74 + 3 > 75, so the
    # three-profile subject opens the next batch instead of being split 1 + 2
    per = {subj(i): ["subscribed"] * 2 for i in range(37)}
    per["z-three@x.io"] = ["subscribed"] * 3
    rows = [row(s, ActionKind.GLOBAL_UNSUBSCRIBE) for s in per]
    plan = plan_for(rows, profiles=profiles_frame(per))
    assert sizes(plan) == [74, 3]
    for s in per:
        holding = [a for a in plan.actions if s in a.subject_keys]
        assert len(holding) == 1, f"{s} split over {len(holding)} batches"
        assert sum(t.subject_key == s for t in holding[0].targets) == len(per[s])


def test_three_profile_subjects_fill_batches_without_splitting():
    per = {subj(i): ["subscribed"] * 3 for i in range(26)}
    plan = plan_for([row(s, ActionKind.GLOBAL_UNSUBSCRIBE) for s in per], profiles=profiles_frame(per))
    assert sizes(plan) == [75, 3]
    assert all(len([a for a in plan.actions if s in a.subject_keys]) == 1 for s in per)


def test_a_subject_with_more_targets_than_a_batch_is_split_and_each_part_names_its_drift():
    per = {"a-big@x.io": ["subscribed"] * 80, "b-small@x.io": ["subscribed"] * 2}
    plan = plan_for([row(s, ActionKind.GLOBAL_UNSUBSCRIBE) for s in per], profiles=profiles_frame(per))
    assert sizes(plan) == [75, 7]
    big = [a for a in plan.actions if "a-big@x.io" in a.subject_keys]
    assert len(big) == 2
    assert sorted(t.value for a in big for t in a.targets if t.subject_key == "a-big@x.io") == \
        sorted(f"a-big@x.io#{i}" for i in range(80)), "every profile exactly once"
    for a in big:
        assert DriftKey("a-big@x.io", "missed_optout", Field.EMAIL_SUBSCRIBE) in a.drift_keys
    assert plan.actions[1].subject_keys == ["a-big@x.io", "b-small@x.io"]
    assert all(len(a.targets) <= 75 for a in plan.actions)


# ----------------------------------------------------------------------------- order, ids, groups


def mixed_rows() -> list[dict]:
    rows = []
    for i, kind in enumerate(reversed(list(ActionKind))):  # listed in reverse phase order
        for j in range(3):
            rows.append(row(subj(j, prefix=f"k{i}-"), kind))
    return rows


def test_actions_run_in_phase_order_with_consecutive_seq():
    rows = mixed_rows()
    # global subscribe needs unsubscribed profiles, global unsubscribe subscribed ones
    per = {r["subject_key"]: ["unsubscribed" if r["action"] == "global_subscribe" else "subscribed"] for r in rows}
    plan = plan_for(rows, profiles=profiles_frame(per))
    assert {a.kind for a in plan.actions} == set(ActionKind)
    phases = [a.kind.phase for a in plan.actions]
    assert phases == sorted(phases)
    assert [a.seq for a in plan.actions] == list(range(len(plan.actions)))
    order = [a.kind for a in plan.actions]
    assert order.index(ActionKind.GROUP_UNSUBSCRIBE) < order.index(ActionKind.BLOCKLIST) \
        < order.index(ActionKind.DELETE) < order.index(ActionKind.KETCH_WRITEBACK) \
        < order.index(ActionKind.ALIAS_OPTOUT) < order.index(ActionKind.GROUP_SUBSCRIBE)


def test_action_ids_are_deterministic_in_plan_id_and_content():
    rows = [row(subj(i), ActionKind.GROUP_UNSUBSCRIBE) for i in range(120)]
    a, b = plan_for(rows), plan_for(list(reversed(rows)))
    assert [x.action_id for x in a.actions] == [x.action_id for x in b.actions], "same input, same ids"
    assert a == b
    assert len({x.action_id for x in a.actions}) == len(a.actions), "ids are unique in a plan"
    other = plan_for(rows, plan_id="plan-2")
    assert not {x.action_id for x in a.actions} & {x.action_id for x in other.actions}
    assert [x.content_hash() for x in a.actions] == [x.content_hash() for x in other.actions]
    changed = plan_for(rows[:-1] + [row("zz@x.io", ActionKind.GROUP_UNSUBSCRIBE)])
    assert changed.actions[0].action_id == a.actions[0].action_id
    assert changed.actions[-1].action_id != a.actions[-1].action_id, "a batch's content is in its id"


def test_group_actions_are_split_per_group():
    rows = [row(subj(i), ActionKind.GROUP_UNSUBSCRIBE, group="g-news") for i in range(10)]
    rows += [row(subj(i), ActionKind.GROUP_UNSUBSCRIBE, group="g-promo") for i in range(5)]
    rows += [row(subj(i), ActionKind.GROUP_SUBSCRIBE, group="g-product") for i in range(20, 22)]
    rows += [row(subj(i), ActionKind.GROUP_SUBSCRIBE, group="g-news") for i in range(30, 33)]
    plan = plan_for(rows)
    got = sorted((a.kind.value, a.group_id, len(a.targets)) for a in plan.actions)
    assert got == [("group_subscribe", "g-news", 3), ("group_subscribe", "g-product", 2),
                   ("group_unsubscribe", "g-news", 10), ("group_unsubscribe", "g-promo", 5)]
    for a in plan.actions:
        assert {k.group_id for k in a.drift_keys} == {a.group_id}


def test_one_subject_in_two_groups_gets_one_target_per_group_action():
    rows = [row("a@x.io", ActionKind.GROUP_UNSUBSCRIBE, group="g-news"),
            row("a@x.io", ActionKind.GROUP_UNSUBSCRIBE, group="g-promo")]
    plan = plan_for(rows)
    assert [(a.group_id, a.values, [k.group_id for k in a.drift_keys]) for a in plan.actions] == [
        ("g-news", ["a@x.io"], ["g-news"]), ("g-promo", ["a@x.io"], ["g-promo"])]


@pytest.mark.parametrize("rules, configured, id_type, prioritization", [
    (EMAIL, (), IdType.EMAIL, ("most_recently_updated",)),
    (replace(EMAIL, deletion_prioritization=("identified", "most_recently_updated")), None, IdType.EMAIL,
     ("identified", "most_recently_updated")),
    (EXTERNAL, (), IdType.EXTERNAL_ID, ()),
], ids=["email-default", "email-configured", "external-id"])
def test_deletion_by_email_carries_prioritization(rules, configured, id_type, prioritization):
    rows = [row(subj(i), ActionKind.DELETE, identity=f"ext-{i}" if rules.key_type == "external_id" else None)
            for i in range(3)]
    (action,) = plan_for(rows, rules=rules).actions
    assert action.id_type is id_type
    assert action.prioritization == prioritization
    if id_type is IdType.EXTERNAL_ID:
        assert action.values == ["ext-0", "ext-1", "ext-2"]


def test_target_identifiers_per_kind():
    rows = [row("a@x.io", ActionKind.BLOCKLIST, identity="acct-a"),
            row("b@x.io", ActionKind.GROUP_UNSUBSCRIBE, identity="acct-b"),
            row("c@x.io", ActionKind.KETCH_WRITEBACK, identity="acct-c")]
    plan = plan_for(rows, rules=EXTERNAL)
    by = {a.kind: a for a in plan.actions}
    assert by[ActionKind.BLOCKLIST].targets == (Target("a@x.io", IdType.EMAIL, "a@x.io"),)
    assert by[ActionKind.GROUP_UNSUBSCRIBE].targets == (Target("b@x.io", IdType.EXTERNAL_ID, "acct-b"),)
    assert by[ActionKind.KETCH_WRITEBACK].targets == (Target("c@x.io", IdType.KETCH, "acct-c"),)


def test_writeback_carries_groups_global_field_and_the_newest_braze_optout():
    t1, t2 = pd.Timestamp("2026-10-01", tz="UTC"), pd.Timestamp("2026-10-05", tz="UTC")
    rows = [row("a@x.io", ActionKind.KETCH_WRITEBACK, group="g-news", unsub_at=t1),
            row("a@x.io", ActionKind.KETCH_WRITEBACK, field="email_subscribe", unsub_at=t2)]
    (action,) = plan_for(rows).actions
    assert action.writeback == (WriteBack("a@x.io", ("g-news",), True, t2.isoformat()),)
    assert len(action.drift_keys) == 2


def test_rows_without_an_action_are_not_planned_and_empty_drift_is_an_empty_plan():
    rows = [dict(row("a@x.io", ActionKind.GROUP_UNSUBSCRIBE), action=None, drift_class="no_consent_record"),
            dict(row("b@x.io", ActionKind.GROUP_UNSUBSCRIBE), action="", drift_class="missed_optin")]
    assert plan_for(rows).actions == ()
    empty = build_plan(drift_frame([]), pd.Series(dtype=object), profiles_frame({}), EMAIL, plan_fp="f", plan_id="p")
    assert empty == Plan("p", "f", ())


def test_a_plan_from_real_diff_output():
    from tests.engine.test_diff import observe, subject  # the diff tests' frame builder

    o = observe(
        subject("a@x.io", ketch={"email_allowed": True}, braze={"email_subscribe": "subscribed"},
                topics=[("newsletter", "email", "denied")], groups=[("g-news", "subscribed")]),
        subject("b@x.io", ketch={"email_allowed": False}, braze={"profiles": ["subscribed", "subscribed"]}),
        subject("c@x.io", ketch={"email_allowed": True}, braze={"email_subscribe": "subscribed"}, deletion=True),
    )
    drift = diff(o, EMAIL)
    plan = build_plan(drift, o.universe.set_index("subject_key")["email"], o.braze_profiles, EMAIL,
                      plan_fp="fp", plan_id="plan-x")
    got = [(a.kind, a.values) for a in plan.actions]
    assert got == [(ActionKind.GLOBAL_UNSUBSCRIBE, ["b@x.io#0", "b@x.io#1"]),
                   (ActionKind.GROUP_UNSUBSCRIBE, ["a@x.io"]),
                   (ActionKind.DELETE, ["c@x.io"])]


# ----------------------------------------------------------------------------- documents


def sample() -> tuple[Plan, pd.DataFrame]:
    rows = mixed_rows()
    rows[0]["braze_unsubscribed_at"] = pd.Timestamp("2026-10-02T03:04:05", tz="UTC")
    per = {r["subject_key"]: ["unsubscribed" if r["action"] == "global_subscribe" else "subscribed"] for r in rows}
    drift = drift_frame(rows)
    plan = build_plan(drift, emails_of(rows), profiles_frame(per),
                      replace(EMAIL, deletion_prioritization=("identified",)), plan_fp="fp-9", plan_id="plan-9")
    return plan, drift


def test_plan_document_round_trips_through_json_text():
    plan, drift = sample()
    doc = plan_document(plan, drift, run_id="run-9", config_hash="cfg-9")
    text = json.dumps(doc)  # must be plain JSON, no default= needed
    back = plan_from_document(json.loads(text))
    assert back == plan
    assert back.actions_hash() == plan.actions_hash() == doc["actions_hash"]
    assert doc["run_id"] == "run-9" and doc["config_hash"] == "cfg-9"
    assert len(doc["drift"]) == len(drift)
    for a in plan.actions:
        assert Action.from_json(json.loads(json.dumps(a.to_json()))) == a


def good_doc() -> dict:
    plan, drift = sample()
    return json.loads(json.dumps(plan_document(plan, drift, run_id="run-9", config_hash="cfg-9")))


@pytest.mark.parametrize("missing", ["plan_id", "fingerprint", "config_hash", "drift", "actions"])
def test_a_document_missing_a_key_is_refused_naming_it(missing):
    doc = good_doc()
    del doc[missing]
    with pytest.raises(DataError, match=f"plan file lacks {missing}"):
        plan_from_document(doc)


def mutate(fn) -> dict:
    doc = good_doc()
    fn(doc["actions"][0])
    return doc


@pytest.mark.parametrize("doc, message", [
    ("not a dict", "not a plan: expected a JSON object"),
    ({**good_doc(), "actions": {"a": 1}}, "`actions` is not a list"),
    ({**good_doc(), "actions": ["x"]}, "plan action 0: expected an object"),
    (mutate(lambda a: a.pop("action_id")), "plan action 0 lacks action_id"),
    (mutate(lambda a: (a.pop("targets"), a.pop("seq"))), "plan action 0 lacks seq, targets"),
    (mutate(lambda a: a.update(kind="resubscribe_everyone")), "plan action 0: unknown kind 'resubscribe_everyone'"),
    (mutate(lambda a: a.update(drift_keys=[])), r"plan action 0 \(global_unsubscribe\) has no targets or no drift keys"),
    (mutate(lambda a: a.update(drift_keys=None)), "has no targets or no drift keys"),
    (mutate(lambda a: a.update(targets=[])), "has no targets or no drift keys"),
    (mutate(lambda a: a.update(targets=[["s", "fax", "1"]])), "unknown id type 'fax'"),
    (mutate(lambda a: a.update(targets=[["s", "email"]])), "expected \\[subject_key, id_type, value\\]"),
    (mutate(lambda a: a.update(targets=[["s", "email", ""]])), "expected \\[subject_key, id_type, value\\]"),
    (mutate(lambda a: a.update(drift_keys=[["s", "missed_optout", "shoe_size", None]])), "unknown field 'shoe_size'"),
    (mutate(lambda a: a.update(drift_keys=[["s", "missed_optout"]])), "expected \\[subject_key, drift_class"),
], ids=["not-object", "actions-not-list", "action-not-object", "no-action-id", "no-seq-targets", "unknown-kind",
        "no-drift-keys", "null-drift-keys", "no-targets", "unknown-id-type", "short-target", "empty-target-value",
        "unknown-field", "short-drift-key"])
def test_malformed_documents_raise_data_error_naming_the_problem(doc, message):
    with pytest.raises(DataError, match=message):
        plan_from_document(doc)


def test_a_later_action_is_named_by_its_index():
    doc = good_doc()
    doc["actions"][3]["kind"] = "nope"
    with pytest.raises(DataError, match="plan action 3: unknown kind 'nope'"):
        plan_from_document(doc)


def test_actions_hash_changes_when_a_target_is_edited():
    plan, _ = sample()
    first = plan.actions[0]
    edited_target = replace(first.targets[0], value="someone-else@x.io")
    edited = replace(plan, actions=(replace(first, targets=(edited_target,) + first.targets[1:]),) + plan.actions[1:])
    assert edited.actions_hash() != plan.actions_hash()
    assert edited.actions[0].content_hash() != first.content_hash()
    # and through the document: an edited file no longer matches the saved plan
    doc = good_doc()
    doc["actions"][0]["targets"][0][2] = "someone-else@x.io"
    assert plan_from_document(doc).actions_hash() != plan.actions_hash()
    same = good_doc()
    assert plan_from_document(same).actions_hash() == plan.actions_hash()


@pytest.mark.parametrize("edit", [
    lambda a: replace(a, drift_keys=a.drift_keys[:-1] or (DriftKey("x", "missed_optout", Field.BLOCKLIST),)),
    lambda a: replace(a, seq=a.seq + 100),
    lambda a: replace(a, group_id="g-other"),
    lambda a: replace(a, targets=tuple(reversed(a.targets)) + (Target("q@x.io", IdType.EMAIL, "q@x.io"),)),
], ids=["drift-keys", "seq", "group", "targets-added"])
def test_actions_hash_changes_on_any_action_edit(edit):
    plan, _ = sample()
    edited = replace(plan, actions=(edit(plan.actions[0]),) + plan.actions[1:])
    assert edited.actions_hash() != plan.actions_hash()
