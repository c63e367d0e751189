"""Pure guards (semantics §5): decide whether a plan may be applied.

`check_guards` returns every tripped guard; the caller refuses unless each one is
explicitly overridden, and records the overrides in the run. Extract guards run whether
or not corrections are planned: a universe that collapsed looks "in sync". Fractions are
taken against the workspace (the larger of this run's count and the last full run's:
profiles for deletions, the checked universe for unsubscribes and resubscribes), so a
small incremental window does not trip them. Each guard names the
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
class PlanStats:
    universe: int
    ketch_records: int
    braze_profiles: int
    deletions: int
    unsubscribes: int
    subscribes: int = 0
    workspace_profiles: int = 0  # the last full run's profile count (0 = unknown)
    workspace_universe: int = 0  # the last full run's checked universe (0 = unknown)


def check_guards(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Tripped]:
    out: list[Tripped] = []
    if stats.universe and stats.ketch_records == 0:
        out.append(Tripped("empty_extract", f"the Ketch extract is empty for a universe of {stats.universe} subjects; "
                           "a Ketch outage or wrong organization/property code looks like everyone withdrew"))
    if stats.universe and stats.braze_profiles == 0:
        out.append(Tripped("empty_extract", f"the Braze extract found no profiles for {stats.universe} subjects; "
                           "check the REST endpoint and API key permissions"))
    out += _shrink(stats, previous, cfg)
    if stats.deletions > cfg.max_deletions:
        out.append(Tripped("max_deletions", f"{stats.deletions} deletions planned, limit guards.max_deletions = "
                           f"{cfg.max_deletions}; Braze deletions cannot be undone"))
    base = max(stats.braze_profiles, stats.workspace_profiles, 1)
    if stats.deletions and stats.deletions / base > cfg.max_deletion_fraction:
        out.append(Tripped("max_deletion_fraction", f"{stats.deletions} deletions are {stats.deletions / base:.1%} of "
                           f"{base} Braze profiles, above guards.max_deletion_fraction = "
                           f"{cfg.max_deletion_fraction:.1%}"))
    ubase = max(stats.universe, stats.workspace_universe, 1)
    for guard, n, what, limit in (
            ("max_unsubscribe_fraction", stats.unsubscribes, "to unsubscribe", cfg.max_unsubscribe_fraction),
            ("max_subscribe_fraction", stats.subscribes, "to resubscribe", cfg.max_subscribe_fraction)):
        if n and n / ubase > limit:
            out.append(Tripped(guard, f"{n} subjects {what} are {n / ubase:.1%} of the universe, above "
                               f"guards.{guard} = {limit:.1%}"))
    return out


def _shrink(stats: PlanStats, previous: Mapping[str, Any] | None, cfg: GuardConfig) -> list[Tripped]:
    if not previous:
        return []
    out = []
    for side, now, before in (("checked universe", stats.universe, previous.get("universe_count")),
                              ("Ketch extract", stats.ketch_records, previous.get("ketch_records")),
                              ("Braze extract", stats.braze_profiles, previous.get("braze_count"))):
        if before and now < before and (before - now) / before > cfg.max_shrink_fraction:
            out.append(Tripped("extract_shrink", f"the {side} shrank from {before} to {now} "
                               f"({(before - now) / before:.0%}) since the last run, above "
                               f"guards.max_shrink_fraction = {cfg.max_shrink_fraction:.0%}"))
    return out


def refused(tripped: list[Tripped], overrides: set[str], kinds: frozenset[ActionKind] = ALL_KINDS) -> list[Tripped]:
    """The tripped guards that were not explicitly overridden and hold a kind being applied."""
    return [t for t in tripped if t.guard not in overrides and t.holds & kinds]
