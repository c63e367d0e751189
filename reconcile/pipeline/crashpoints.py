"""Seeded crash points for the crash-safety tests (docs/reliability.md).

Inert unless the environment sets `RECONCILE_CRASH_AT=<point>:<n>`: then the process
kills itself with SIGKILL the n-th time (default 1) it reaches `<point>`. Points:

    part          a part of a chunked read is read, diffed and saved (the run reads on)
    plan          the plan is saved, nothing journaled
    journal       the plan's batches are journaled pending, none sent
    before_send   a batch is journaled sending, its request not yet made
    after_send    a batch's request was answered, its result not yet journaled
    verify        every batch is journaled, verification not started
    report        the run is closed, its report not yet written

Never set it in production: it exists so tests can kill a real run at an exact step.
"""

from __future__ import annotations

import os
import signal
from typing import Any

ENV = "RECONCILE_CRASH_AT"
POINTS = ("part", "plan", "journal", "before_send", "after_send", "verify", "report")
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


class _Crashing:
    """An executor that passes `before_send` and `after_send` around every batch."""

    def __init__(self, inner: Any):
        self._inner = inner

    def run(self, action: Any) -> Any:
        crash_point("before_send")
        result = self._inner.run(action)
        crash_point("after_send")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def crash_wrapped(executor: Any) -> Any:
    """`executor` itself unless RECONCILE_CRASH_AT is set."""
    return _Crashing(executor) if os.environ.get(ENV) else executor
