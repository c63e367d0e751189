"""Braze rate budgets shared through the database: requests taken per workspace, rate class
and clock window, so every worker on one database counts against the same allowance.

    take_budget   INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <= limit
                  RETURNING used: one atomic statement; None when the window has no room
    add_budget    charge a window whatever it holds (a send that may land in the next window)
    prune_budget  forget a class's windows that ended before a time

Windows are identified by their start in epoch milliseconds (the clock windows Braze counts).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from reconcile.store.base import StoreBase
from reconcile.store.schema import rate_budget_windows as windows


class BudgetsMixin(StoreBase):
    """Atomic take / add / prune on `rate_budget_windows`."""

    def take_budget(self, workspace: str, rate_class: str, window_start_ms: int, limit: int, n: int = 1) -> int | None:
        """Take `n` requests from the window if it stays within `limit`: the window's use after
        taking, or None (nothing taken) when it would not."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if n > limit:
            return None
        ins = self._insert(windows).values(workspace=workspace, rate_class=rate_class,
                                           window_start_ms=window_start_ms, used=n)
        stmt = ins.on_conflict_do_update(
            index_elements=[windows.c.workspace, windows.c.rate_class, windows.c.window_start_ms],
            set_={"used": windows.c.used + ins.excluded.used},
            where=windows.c.used + ins.excluded.used <= limit,
        ).returning(windows.c.used)
        with self._write("take_budget") as conn:
            row = conn.execute(stmt).first()
        return int(row[0]) if row is not None else None

    def add_budget(self, workspace: str, rate_class: str, window_start_ms: int, n: int = 1) -> int:
        """Charge `n` requests to the window unconditionally; its use after."""
        ins = self._insert(windows).values(workspace=workspace, rate_class=rate_class,
                                           window_start_ms=window_start_ms, used=n)
        stmt = ins.on_conflict_do_update(
            index_elements=[windows.c.workspace, windows.c.rate_class, windows.c.window_start_ms],
            set_={"used": windows.c.used + ins.excluded.used},
        ).returning(windows.c.used)
        with self._write("add_budget") as conn:
            return int(conn.execute(stmt).scalar_one())

    def budget_used(self, workspace: str, rate_class: str, window_start_ms: int) -> int:
        query = select(windows.c.used).where((windows.c.workspace == workspace) & (windows.c.rate_class == rate_class)
                                             & (windows.c.window_start_ms == window_start_ms))
        with self._read("budget_used") as conn:
            return int(conn.scalar(query) or 0)

    def prune_budget(self, workspace: str, rate_class: str, before_ms: int) -> int:
        """Delete the class's windows that started before `before_ms`; how many."""
        stmt = delete(windows).where((windows.c.workspace == workspace) & (windows.c.rate_class == rate_class)
                                     & (windows.c.window_start_ms < before_ms))
        with self._write("prune_budget") as conn:
            return int(conn.execute(stmt).rowcount)
