"""Pure guards (semantics §5): decide whether a plan may be applied.

`judge` gives every guard's verdict (tripped or not, with what it compared), `check_guards`
the tripped ones; the caller refuses unless each one is explicitly overridden, and records
the overrides in the run. Extract guards run whether or not corrections are planned: a
universe that collapsed looks "in sync".

A run is judged against a comparable baseline only (the pipeline picks it: the last
successful run of the same job, mode and slice; an incremental run's identity list also
against the last full run's): a full run compares its checked universe, Ketch records,
Braze profiles and identity-list rows; an incremental run only its identity-list rows (its
universe is the amount of change, not the workspace). With no comparable run, the absolute
floor `guards.min_universe` refuses an empty or near-empty universe, and the verdict says
so. Fractions are taken against the workspace (the larger of this run's count and the last
full run's: profiles for deletions, the checked universe for unsubscribes and
resubscribes), so a small incremental window does not trip them. Each guard names the
action kinds it holds, so an operator may apply the other kinds (`--only`) while one
class waits for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from reconcile.config import GuardConfig
from reconcile.models.plan import ActionKind

ALL_KINDS = frozenset(ActionKind)
DELETIONS = frozenset({ActionKind.DELETE})
UNSUBSCRIBES = frozenset({ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GLOBAL_UNSUBSCRIBE})
SUBSCRIBES = frozenset({ActionKind.GROUP_SUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE})

HOLDS: dict[str, frozenset[ActionKind]] = {
    "empty_extract": ALL_KINDS,
    "extract_shrink": ALL_KINDS,
    "max_deletions": DELETIONS,
    "max_deletion_fraction": DELETIONS,
    "max_unsubscribe_fraction": UNSUBSCRIBES,
    "max_subscribe_fraction": SUBSCRIBES,
}
GUARDS = tuple(HOLDS)


@dataclass(frozen=True)
class Tripped:
    guard: str
    message: str

    @property
    def holds(self) -> frozenset[ActionKind]:
        return HOLDS[self.guard]

    def to_json(self) -> dict[str, str]:
        return {"guard": self.guard, "message": self.message}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Tripped":
        return cls(str(value["guard"]), str(value["message"]))


@dataclass(frozen=True)
class Verdict:
    """One guard's judgement of a run, tripped or not, with what it compared."""

    guard: str
    tripped: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"guard": self.guard, "tripped": self.tripped, "message": self.message}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Verdict":
        return cls(str(value["guard"]), bool(value.get("tripped")), str(value["message"]))


@dataclass(frozen=True)
class PlanStats:
    universe: int
    ketch_records: int
    braze_profiles: int
    deletions: int
    unsubscribes: int
    subscribes: int = 0
    workspace_profiles: int = 0  # the last full run's profile count (0 = unknown)
    workspace_universe: int = 0  # the last full run's checked universe (0 = unknown)
    mode: str = "full"  # "full" (a whole sweep or one slice of it) or "incremental" (what changed)
    source_rows: int | None = None  # rows of the configured identity list, whole (None: none configured/unknown)
    scope: str = "this run"  # what is compared: "full runs of job nightly, slice 2 of 4"


def check_guards(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Tripped]:
    """The tripped guards (see `judge`)."""
    return [Tripped(v.guard, v.message) for v in judge(stats, previous, cfg) if v.tripped]


def judge(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Verdict]:
    """Every guard's verdict. `previous` is the comparable baseline (None: there is none):
    the counts (`universe_count`, `ketch_records`, `braze_count`, `source_rows`) of the last
    successful run of the same job, mode and slice, and `basis`, what it is (for the messages).
    A full run is compared on all four; an incremental run only on `source_rows` (its universe
    and extracts are the amount of change, not the workspace). Without a baseline a run is
    judged on the absolute floor `guards.min_universe`."""
    out = _empty(stats, previous, cfg)
    out += _shrink(stats, previous, cfg)
    if stats.deletions > cfg.max_deletions:
        out.append(Verdict("max_deletions", True, f"{stats.deletions} deletions planned, limit "
                           f"guards.max_deletions = {cfg.max_deletions}; Braze deletions cannot be undone"))
    else:
        out.append(Verdict("max_deletions", False, f"{stats.deletions} deletion(s) planned, limit "
                           f"guards.max_deletions = {cfg.max_deletions}"))
    base = max(stats.braze_profiles, stats.workspace_profiles, 1)
    if stats.deletions and stats.deletions / base > cfg.max_deletion_fraction:
        out.append(Verdict("max_deletion_fraction", True, f"{stats.deletions} deletions are "
                           f"{stats.deletions / base:.1%} of {base} Braze profiles, above "
                           f"guards.max_deletion_fraction = {cfg.max_deletion_fraction:.1%}"))
    else:
        out.append(Verdict("max_deletion_fraction", False, f"{stats.deletions} deletion(s) are "
                           f"{stats.deletions / base:.1%} of {base} Braze profiles, limit "
                           f"{cfg.max_deletion_fraction:.1%}"))
    ubase = max(stats.universe, stats.workspace_universe, 1)
    for guard, n, what, limit in (
            ("max_unsubscribe_fraction", stats.unsubscribes, "to unsubscribe", cfg.max_unsubscribe_fraction),
            ("max_subscribe_fraction", stats.subscribes, "to resubscribe", cfg.max_subscribe_fraction)):
        if n and n / ubase > limit:
            out.append(Verdict(guard, True, f"{n} subjects {what} are {n / ubase:.1%} of the universe, above "
                               f"guards.{guard} = {limit:.1%}"))
        else:
            out.append(Verdict(guard, False, f"{n} subject(s) {what} are {n / ubase:.1%} of {ubase} subjects, "
                               f"limit {limit:.1%}"))
    return out


def _empty(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Verdict]:
    out = []
    if stats.universe and stats.ketch_records == 0:
        out.append(Verdict("empty_extract", True, f"the Ketch extract is empty for a universe of {stats.universe} "
                           "subjects; a Ketch outage or wrong organization/property code looks like everyone "
                           "withdrew"))
    if stats.universe and stats.braze_profiles == 0:
        out.append(Verdict("empty_extract", True, f"the Braze extract found no profiles for {stats.universe} "
                           "subjects; check the REST endpoint and API key permissions"))
    if previous is None:
        # no comparable earlier run: the absolute floor decides (an empty source looks "in sync")
        floor = cfg.min_universe
        # a full run: its checked universe; an incremental run (whose universe is what changed):
        # the whole identity list it read, when one is configured
        measured = ([("checked universe", stats.universe)] if stats.mode == "full" else
                    [("identity list", stats.source_rows)] if stats.source_rows is not None else [])
        for what, n in measured:
            if n < max(floor, 1):
                out.append(Verdict("empty_extract", True, f"the {what} holds {n} subject(s), below "
                                   f"guards.min_universe = {floor}, and there is no comparable earlier run "
                                   f"({stats.scope}) to judge it against: an empty or near-empty universe is "
                                   "refused"))
    if not out:
        sizes = (f"Ketch found {stats.ketch_records} record(s) and Braze {stats.braze_profiles} profile(s) "
                 f"for {stats.universe} subject(s)")
        if previous is None:
            src = f", identity list {stats.source_rows}" if stats.source_rows is not None else ""
            sizes += (f"; no comparable earlier run ({stats.scope}): judged on the floor guards.min_universe = "
                      f"{cfg.min_universe} (universe {stats.universe}{src})")
        out.append(Verdict("empty_extract", False, sizes))
    return out


def _shrink(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Verdict]:
    if previous is None:
        return [Verdict("extract_shrink", False, f"no comparable earlier run ({stats.scope}): not compared; "
                        "the absolute floor of empty_extract applies")]
    basis = str(previous.get("basis") or "the last run")
    sides: list[tuple[str, int | None, Any]] = [("identity list", stats.source_rows, previous.get("source_rows"))]
    if stats.mode == "full":
        sides = [("checked universe", stats.universe, previous.get("universe_count")),
                 ("Ketch extract", stats.ketch_records, previous.get("ketch_records")),
                 ("Braze extract", stats.braze_profiles, previous.get("braze_count")), *sides]
    out, compared = [], []
    for side, now, before in sides:
        if not before or now is None:
            continue
        before = int(before)
        compared.append(f"{side} {before} -> {now}")
        if now < before and (before - now) / before > cfg.max_shrink_fraction:
            out.append(Verdict("extract_shrink", True, f"the {side} shrank from {before} to {now} "
                               f"({(before - now) / before:.0%}) since {basis}, above "
                               f"guards.max_shrink_fraction = {cfg.max_shrink_fraction:.0%}"))
    if out:
        return out
    if not compared:
        what = ("an incremental run's universe is what changed; its identity list is compared, and none is "
                "configured" if stats.mode == "incremental" else "the baseline has no counts")
        return [Verdict("extract_shrink", False, f"nothing to compare with {basis}: {what}")]
    return [Verdict("extract_shrink", False, f"compared with {basis}: {'; '.join(compared)}; limit "
                    f"guards.max_shrink_fraction = {cfg.max_shrink_fraction:.0%}")]


def refused(tripped: list[Tripped], overrides: set[str], kinds: frozenset[ActionKind] = ALL_KINDS) -> list[Tripped]:
    """The tripped guards that were not explicitly overridden and hold a kind being applied."""
    return [t for t in tripped if t.guard not in overrides and t.holds & kinds]
