"""Guards (semantics §5) as pure tables: each guard at, just below and just above its threshold.

No HTTP: `check_guards(PlanStats, previous_run_row, GuardConfig)` and `refused(...)` only.
A guard trips when the measured value is strictly above its limit ("exceed"), so the
value exactly at the limit passes.
"""

from __future__ import annotations

import pytest

from reconcile.config import GuardConfig
from reconcile.engine.guards import (
    ALL_KINDS, DELETIONS, GUARDS, HOLDS, SUBSCRIBES, UNSUBSCRIBES, PlanStats, Tripped, check_guards, judge, refused,
)
from reconcile.models.plan import ActionKind

CFG = GuardConfig(max_shrink_fraction=0.5, max_deletions=100, max_deletion_fraction=0.05,
                  max_unsubscribe_fraction=0.25, max_subscribe_fraction=0.25)
LOOSE = GuardConfig(max_shrink_fraction=1.0, max_deletions=10**9, max_deletion_fraction=1.0,
                    max_unsubscribe_fraction=1.0, max_subscribe_fraction=1.0)


def loose(**kw) -> GuardConfig:
    """Every guard off except the ones named."""
    return GuardConfig(**{**LOOSE.__dict__, **kw})


def stats(**kw) -> PlanStats:
    """A healthy run: 1000 subjects, all found on both sides, nothing destructive."""
    base = dict(universe=1000, ketch_records=1000, braze_profiles=1000, deletions=0, unsubscribes=0,
                subscribes=0, workspace_profiles=0)
    return PlanStats(**{**base, **kw})


def names(tripped: list[Tripped]) -> list[str]:
    return sorted(t.guard for t in tripped)


def test_a_healthy_run_trips_nothing():
    assert check_guards(stats(), None, CFG) == []
    assert check_guards(stats(), {"universe_count": 1000, "ketch_records": 1000, "braze_count": 1000}, CFG) == []


# ----------------------------------------------------------------------------- empty_extract


@pytest.mark.parametrize("kw, expected, says", [
    (dict(ketch_records=0), ["empty_extract"], "Ketch extract is empty"),
    (dict(ketch_records=1), [], None),
    (dict(braze_profiles=0), ["empty_extract"], "Braze extract found no profiles"),
    (dict(braze_profiles=1), [], None),
    (dict(ketch_records=0, braze_profiles=0), ["empty_extract", "empty_extract"], "for 1000 subjects"),
    # an empty universe with no comparable earlier run: the absolute floor refuses it
    (dict(universe=0, ketch_records=0, braze_profiles=0), ["empty_extract"], "no comparable earlier run"),
], ids=["ketch-empty", "ketch-one", "braze-empty", "braze-one", "both-empty", "empty-universe"])
def test_empty_extract(kw, expected, says):
    tripped = check_guards(stats(**kw), None, LOOSE)
    assert names(tripped) == expected
    if says:
        assert any(says in t.message for t in tripped), [t.message for t in tripped]


# ----------------------------------------------------------------------------- extract_shrink

PREVIOUS = {"universe_count": 1000, "ketch_records": 1000, "braze_count": 1000}
SIDES = [("universe", "universe_count", "checked universe"),
         ("ketch_records", "ketch_records", "Ketch extract"),
         ("braze_profiles", "braze_count", "Braze extract")]


@pytest.mark.parametrize("side, column, label", SIDES, ids=[s[0] for s in SIDES])
@pytest.mark.parametrize("now, trips", [
    (500, False),   # shrank exactly 50% = max_shrink_fraction: allowed
    (501, False),   # just below the limit
    (499, True),    # just above it
    (1000, False),  # unchanged
    (1500, False),  # grew
], ids=["at", "below", "above", "same", "grew"])
def test_extract_shrink_on_each_side(side, column, label, now, trips):
    current = stats(**{side: now})
    tripped = check_guards(current, PREVIOUS, loose(max_shrink_fraction=0.5))
    shrink = [t for t in tripped if t.guard == "extract_shrink"]
    assert bool(shrink) is trips, [t.message for t in tripped]
    if trips:
        assert len(shrink) == 1
        assert f"the {label} shrank from 1000 to {now}" in shrink[0].message
        assert "max_shrink_fraction = 50%" in shrink[0].message


@pytest.mark.parametrize("previous", [None, {}, {"universe_count": None, "ketch_records": 0, "braze_count": None}],
                         ids=["no-previous-run", "empty-row", "unknown-counts"])
def test_extract_shrink_without_a_previous_count_does_not_trip(previous):
    assert check_guards(stats(universe=10, ketch_records=10, braze_profiles=10), previous, CFG) == []


def test_extract_shrink_reports_each_side_that_shrank():
    tripped = check_guards(stats(universe=100, ketch_records=100, braze_profiles=100), PREVIOUS, CFG)
    assert names(tripped) == ["extract_shrink"] * 3
    labels = {lbl for _, _, lbl in SIDES}
    assert {lbl for lbl in labels if any(lbl in t.message for t in tripped)} == labels


# ----------------------------------------------------------------------------- max_deletions


@pytest.mark.parametrize("deletions, trips", [(100, False), (99, False), (101, True), (0, False)],
                         ids=["at", "below", "above", "none"])
def test_max_deletions(deletions, trips):
    cfg = loose(max_deletions=100)
    tripped = check_guards(stats(deletions=deletions), None, cfg)
    assert names(tripped) == (["max_deletions"] if trips else [])
    if trips:
        assert "101 deletions planned, limit guards.max_deletions = 100" in tripped[0].message


# ----------------------------------------------------------------------------- max_deletion_fraction


@pytest.mark.parametrize("braze, workspace, deletions, trips", [
    (1000, 0, 50, False),     # 5.0% of this run's profiles: at the limit
    (1000, 0, 49, False),     # below
    (1000, 0, 51, True),      # above
    (1000, 2000, 100, False),  # 5.0% of the workspace (larger than this run): at the limit
    (1000, 2000, 99, False),
    (1000, 2000, 101, True),
    (2000, 1000, 100, False),  # this run larger than the workspace: the run's count is the base
    (2000, 1000, 101, True),
    (20, 4000, 200, False),   # a small incremental window against a big workspace: 5% of 4000
    (20, 4000, 201, True),
], ids=["run-at", "run-below", "run-above", "ws-at", "ws-below", "ws-above", "run-bigger-at",
        "run-bigger-above", "incremental-at", "incremental-above"])
def test_max_deletion_fraction_against_the_larger_of_run_and_workspace(braze, workspace, deletions, trips):
    cfg = loose(max_deletion_fraction=0.05)
    current = stats(braze_profiles=braze, workspace_profiles=workspace, deletions=deletions)
    tripped = check_guards(current, None, cfg)
    assert names(tripped) == (["max_deletion_fraction"] if trips else []), [t.message for t in tripped]
    if trips:
        base = max(braze, workspace)
        assert f"{deletions} deletions are" in tripped[0].message
        assert f"of {base} Braze profiles" in tripped[0].message
        assert "max_deletion_fraction = 5.0%" in tripped[0].message


# ----------------------------------------------------------------------------- (un)subscribe fractions


@pytest.mark.parametrize("guard, field", [("max_unsubscribe_fraction", "unsubscribes"),
                                          ("max_subscribe_fraction", "subscribes")])
@pytest.mark.parametrize("n, trips", [(250, False), (249, False), (251, True), (0, False)],
                         ids=["at", "below", "above", "none"])
def test_subscription_fractions_of_the_universe(guard, field, n, trips):
    cfg = loose(**{guard: 0.25})
    tripped = check_guards(stats(**{field: n}), None, cfg)
    assert names(tripped) == ([guard] if trips else [])
    if trips:
        assert f"{n} subjects" in tripped[0].message and f"guards.{guard} = 25.0%" in tripped[0].message


def test_unsubscribe_and_subscribe_fractions_are_independent():
    cfg = loose(max_unsubscribe_fraction=0.1, max_subscribe_fraction=0.5)
    assert names(check_guards(stats(unsubscribes=101, subscribes=101), None, cfg)) == ["max_unsubscribe_fraction"]
    assert names(check_guards(stats(unsubscribes=100, subscribes=501), None, cfg)) == ["max_subscribe_fraction"]


def test_fractions_do_not_divide_by_zero():
    tripped = check_guards(stats(universe=0, ketch_records=0, braze_profiles=0, deletions=1, unsubscribes=1,
                                 subscribes=1), None, CFG)
    assert names(tripped) == ["empty_extract", "max_deletion_fraction", "max_subscribe_fraction",
                              "max_unsubscribe_fraction"]


def test_defaults_match_the_documented_limits():
    d = GuardConfig()
    assert (d.max_shrink_fraction, d.max_deletions, d.max_deletion_fraction, d.max_unsubscribe_fraction,
            d.max_subscribe_fraction) == (0.5, 100, 0.05, 0.25, 0.25)


# ----------------------------------------------------------------------------- refused and overrides


def trip(guard: str) -> Tripped:
    return Tripped(guard, f"{guard} tripped")


def test_every_guard_names_the_kinds_it_holds():
    assert set(GUARDS) == set(HOLDS)
    assert HOLDS["empty_extract"] == HOLDS["extract_shrink"] == ALL_KINDS
    assert HOLDS["max_deletions"] == HOLDS["max_deletion_fraction"] == DELETIONS == {ActionKind.DELETE}
    assert HOLDS["max_unsubscribe_fraction"] == UNSUBSCRIBES
    assert HOLDS["max_subscribe_fraction"] == SUBSCRIBES


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("kind", list(ActionKind), ids=[k.value for k in ActionKind])
def test_refused_holds_only_the_kinds_a_guard_names(guard, kind):
    t = trip(guard)
    blocking = refused([t], set(), frozenset({kind}))
    assert (blocking == [t]) is (kind in HOLDS[guard])


@pytest.mark.parametrize("guard", GUARDS)
def test_refused_with_every_kind_blocks_every_guard_unless_overridden(guard):
    t = trip(guard)
    assert refused([t], set()) == [t]
    assert refused([t], {guard}) == []
    others = set(GUARDS) - {guard}
    assert refused([t], others) == [t], "overriding another guard does not override this one"


def test_only_the_non_overridden_guards_still_refuse():
    tripped = [trip("max_deletions"), trip("max_unsubscribe_fraction"), trip("empty_extract")]
    assert refused(tripped, {"max_deletions", "empty_extract"}) == [tripped[1]]
    # applying only deletions: the unsubscribe guard does not hold them, the override frees the rest
    assert refused(tripped, {"max_deletions", "empty_extract"}, DELETIONS) == []
    # applying only unsubscribes while deletions wait for review
    assert refused(tripped, {"empty_extract", "max_unsubscribe_fraction"}, UNSUBSCRIBES) == []
    assert refused(tripped, {"empty_extract"}, UNSUBSCRIBES) == [tripped[1]]
    # an extract guard holds everything
    assert refused(tripped, {"max_deletions", "max_unsubscribe_fraction"},
                   frozenset({ActionKind.BLOCKLIST})) == [tripped[2]]


def test_an_empty_kind_set_is_never_refused():
    assert refused([trip(g) for g in GUARDS], set(), frozenset()) == []


def test_tripped_round_trips_through_json():
    t = Tripped("max_deletions", "101 deletions planned")
    assert Tripped.from_json(t.to_json()) == t
    assert t.holds == DELETIONS


def test_an_incremental_runs_unsubscribe_fraction_is_taken_against_the_workspace():
    cfg = GuardConfig(max_unsubscribe_fraction=0.25)
    small = PlanStats(universe=40, ketch_records=40, braze_profiles=40, deletions=0, unsubscribes=30)
    assert [t.guard for t in check_guards(small, None, cfg)] == ["max_unsubscribe_fraction"]
    window = PlanStats(universe=40, ketch_records=40, braze_profiles=40, deletions=0, unsubscribes=30,
                       workspace_profiles=10_000, workspace_universe=10_000)
    assert check_guards(window, None, cfg) == []


# ----------------------------------------------------------------------------- baselines and floors


def test_judge_gives_a_verdict_for_every_guard_tripped_or_not():
    verdicts = judge(stats(), {"universe_count": 1000, "ketch_records": 1000, "braze_count": 1000,
                               "basis": "the last full run R1"}, CFG)
    assert sorted({v.guard for v in verdicts}) == sorted(GUARDS)
    assert not any(v.tripped for v in verdicts)
    shrink = next(v for v in verdicts if v.guard == "extract_shrink")
    assert "compared with the last full run R1: checked universe 1000 -> 1000" in shrink.message


@pytest.mark.parametrize("universe, floor, trips", [(0, 10, True), (9, 10, True), (10, 10, False),
                                                    (0, 0, True), (1, 0, False)])
def test_without_a_baseline_a_full_run_is_judged_on_the_floor(universe, floor, trips):
    cfg = loose(min_universe=floor)
    tripped = check_guards(stats(universe=universe, ketch_records=universe, braze_profiles=universe,
                                 scope="full runs of job nightly"), None, cfg)
    assert names(tripped) == (["empty_extract"] if trips else [])
    if trips:
        assert f"below guards.min_universe = {floor}" in tripped[0].message
        assert "no comparable earlier run (full runs of job nightly)" in tripped[0].message


def test_an_incremental_run_compares_only_its_identity_list():
    previous = {"universe_count": 3000, "ketch_records": 3000, "braze_count": 3000, "source_rows": 3000,
                "basis": "the last full run R1"}
    window = stats(universe=57, ketch_records=57, braze_profiles=57, mode="incremental", source_rows=3000)
    assert check_guards(window, previous, CFG) == []  # 3000 -> 57 is the amount of change, not a collapse
    collapsed = stats(universe=5, ketch_records=5, braze_profiles=5, mode="incremental", source_rows=0)
    (t,) = check_guards(collapsed, previous, CFG)
    assert t.guard == "extract_shrink" and "identity list shrank from 3000 to 0 (100%) since the last full run" \
        in t.message


def test_an_incremental_run_without_a_baseline_is_floored_on_its_identity_list():
    ok = stats(universe=3, ketch_records=3, braze_profiles=3, mode="incremental", source_rows=500)
    assert check_guards(ok, None, CFG) == []  # a quiet window on a healthy list
    (t,) = check_guards(stats(universe=3, ketch_records=3, braze_profiles=3, mode="incremental", source_rows=2),
                        None, CFG)
    assert t.guard == "empty_extract" and "identity list holds 2 subject(s)" in t.message
    none_configured = stats(universe=0, ketch_records=0, braze_profiles=0, mode="incremental", source_rows=None)
    assert check_guards(none_configured, None, CFG) == []  # nothing changed, nothing to measure


def test_a_full_run_compares_its_identity_list_too():
    previous = {"universe_count": 1000, "ketch_records": 1000, "braze_count": 1000, "source_rows": 900}
    (t,) = check_guards(stats(source_rows=100), previous, CFG)
    assert "identity list shrank from 900 to 100" in t.message
