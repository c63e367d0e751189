"""Pure guards (semantics §5): decide whether a plan may be applied.

`check_guards` returns every tripped guard; the caller refuses unless each one is
explicitly overridden, and records the overrides in the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconcile.config import GuardConfig

GUARDS = ("empty_extract", "extract_shrink", "max_deletions", "max_deletion_fraction", "max_unsubscribe_fraction")


@dataclass(frozen=True)
class Tripped:
    guard: str
    message: str


@dataclass(frozen=True)
class PlanStats:
    universe: int
    ketch_records: int
    braze_profiles: int
    deletions: int
    unsubscribes: int


def check_guards(stats: PlanStats, previous: dict[str, Any] | None, cfg: GuardConfig) -> list[Tripped]:
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
    base = max(stats.braze_profiles, 1)
    if stats.deletions and stats.deletions / base > cfg.max_deletion_fraction:
        out.append(Tripped("max_deletion_fraction", f"{stats.deletions} deletions are {stats.deletions / base:.1%} of "
                           f"{stats.braze_profiles} Braze profiles, above guards.max_deletion_fraction = "
                           f"{cfg.max_deletion_fraction:.1%}"))
    ubase = max(stats.universe, 1)
    if stats.unsubscribes and stats.unsubscribes / ubase > cfg.max_unsubscribe_fraction:
        out.append(Tripped("max_unsubscribe_fraction", f"{stats.unsubscribes} subjects to unsubscribe are "
                           f"{stats.unsubscribes / ubase:.1%} of the universe, above "
                           f"guards.max_unsubscribe_fraction = {cfg.max_unsubscribe_fraction:.1%}"))
    return out


def _shrink(stats: PlanStats, previous: dict[str, Any] | None, cfg: GuardConfig) -> list[Tripped]:
    if not previous:
        return []
    out = []
    for side, now, before in (("Ketch", stats.ketch_records, previous.get("ketch_records")),
                              ("Braze", stats.braze_profiles, previous.get("braze_count"))):
        if before and now < before and (before - now) / before > cfg.max_shrink_fraction:
            out.append(Tripped("extract_shrink", f"the {side} extract shrank from {before} to {now} "
                               f"({(before - now) / before:.0%}), above guards.max_shrink_fraction = "
                               f"{cfg.max_shrink_fraction:.0%}"))
    return out


def refused(tripped: list[Tripped], overrides: set[str]) -> list[Tripped]:
    """The tripped guards that were not explicitly overridden."""
    return [t for t in tripped if t.guard not in overrides]
