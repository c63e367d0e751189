"""Braze rate budgets counted in the state database, so N workers together stay within the limits.

    install_shared_budget(store, braze, workspace)     # when [braze] shared_budget = true

Every Braze send is taken twice: from the process's own `RateBudget` (as always) and from
the window row of its workspace and rate class in `rate_budget_windows`, with one atomic
statement (`reconcile.store.budgets.take_budget`). The limit taken against is the one the
process's budget applies, `braze.budget_share` included, so the share caps all workers
together. A send reserved close to its window's end is charged to the next window as well.
Windows are the clock windows Braze counts (`floor(now / per_seconds) * per_seconds`), so
workers agree on them as far as their clocks agree; keep the hosts' clocks synchronised.

Only a PostgreSQL state store is shared; with SQLite (one worker) the budget stays in the
process and a warning says so.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from reconcile.clients.pacing import BudgetBackend

log = logging.getLogger(__name__)


class StoreBudget:
    """A `pacing.BudgetBackend` on the state store, for one Braze workspace."""

    def __init__(self, store: BudgetStore, workspace: str):
        self.store, self.workspace = store, workspace
        self._pruned: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, rate_class: str, window_start: float, per_seconds: float, limit: int,
             carry_to_next: bool) -> bool:
        start = _ms(window_start)
        self._prune(rate_class, start, per_seconds)
        if self.store.take_budget(self.workspace, rate_class, start, limit) is None:
            return False
        if carry_to_next:
            self.store.add_budget(self.workspace, rate_class, _ms(window_start + per_seconds))
        return True

    def used(self, rate_class: str, window_start: float) -> int:
        return int(self.store.budget_used(self.workspace, rate_class, _ms(window_start)))

    def _prune(self, rate_class: str, start_ms: int, per_seconds: float) -> None:
        """Once per new window and class: forget windows older than the previous one."""
        with self._lock:
            if self._pruned.get(rate_class) == start_ms:
                return
            self._pruned[rate_class] = start_ms
        self.store.prune_budget(self.workspace, rate_class, start_ms - _ms(per_seconds))


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


class BudgetStore(Protocol):
    """The state store's budget rows (`reconcile.store.budgets`)."""

    @property
    def url(self) -> str: ...

    @property
    def has_session_locks(self) -> bool: ...

    def take_budget(self, workspace: str, rate_class: str, window_start_ms: int, limit: int) -> int | None: ...

    def add_budget(self, workspace: str, rate_class: str, window_start_ms: int) -> int: ...

    def budget_used(self, workspace: str, rate_class: str, window_start_ms: int) -> int: ...

    def prune_budget(self, workspace: str, rate_class: str, before_ms: int) -> int: ...


class SharesBudget(Protocol):
    def share_budget(self, backend: BudgetBackend | None) -> None: ...


def install_shared_budget(store: BudgetStore, braze: SharesBudget, workspace: str) -> StoreBudget | None:
    """Count `braze`'s rate windows in `store` (PostgreSQL) under `workspace` (the endpoint
    host and a hash of the key); None (with a warning) on SQLite."""
    if not store.has_session_locks:
        log.warning("braze.shared_budget = true needs a PostgreSQL state store; %s keeps the Braze budget "
                    "in this process (run one worker only)", store.url)
        return None
    backend = StoreBudget(store, workspace)
    braze.share_budget(backend)
    log.info("Braze rate budgets shared through the state database (workspace %s)", backend.workspace)
    return backend
