"""Stopping a run on SIGINT or SIGTERM without losing the batch in flight.

    with handle_signals():          # main thread: SIGINT and SIGTERM raise Interrupted
        ...                         # a signal here raises Interrupted at once
        with deferred():            # send one batch and journal its answer
            ...                     # a signal here is remembered; the block finishes,
                                    # then Interrupted is raised as it exits

`Interrupted` derives from BaseException (like KeyboardInterrupt) so `except Exception`
handlers do not swallow it; its `exit_code` is 130 for SIGINT and 143 for SIGTERM
(128 + signal number). `reconcile.pipeline.recorder` records the run as `interrupted` with it.

Inside `deferred()` the first and second signals are remembered (the first one's number is
what `Interrupted` carries); a third raises `Interrupted` at once, for a batch that hangs.
A batch abandoned that way is left `sending` in the journal and the next run resumes it.
A wait inside the block (a 429's reset, a retry's back-off) ends at the first signal
(`raise_if_pending`, called by the Braze client between slices of its pauses): a rate-limit
wait of up to an hour never holds a stop request back.
If the deferred block itself raises while a signal is pending, `Interrupted` is raised in
its place (the block's exception is its `__context__`).

Outside the main thread (a scheduler's worker) Python cannot install signal handlers:
there `handle_signals()` and `deferred()` do nothing, and the process's own handling
applies. Without `handle_signals()`, `deferred()` does nothing either.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
DEFERRED_LIMIT = 2  # signals remembered inside deferred(); the next one raises at once


class Interrupted(BaseException):
    """The run was stopped by a signal; `exit_code` is 128 + the signal's number."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"interrupted by {signal_name(self.signum)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signum,))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    def __init__(self) -> None:
        self.installed = 0
        self.depth = 0
        self.pending: list[int] = []

    def reset(self) -> None:
        self.depth = 0
        self.pending = []


_state = _State()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state.depth == 0:
        _state.pending = []
        raise Interrupted(signum)
    _state.pending.append(signum)
    if len(_state.pending) > DEFERRED_LIMIT:
        first = _state.pending[0]
        _state.pending = []
        raise Interrupted(first)


@contextmanager
def handle_signals(signals: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """Make SIGINT/SIGTERM raise `Interrupted` (deferred inside `deferred()`) for the block."""
    if not _on_main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        signal.signal(signum, _handler)
    _state.installed += 1
    try:
        yield
    finally:
        _state.installed -= 1
        if not _state.installed:
            _state.reset()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold back `Interrupted` until the block ends (blocks nest; the outermost one raises)."""
    if not _state.installed or not _on_main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending:
            first = _state.pending[0]
            _state.pending = []
            raise Interrupted(first)


def raise_if_pending() -> None:
    """Raise `Interrupted` now for a signal held back by `deferred()`: what a wait calls
    (a 429's reset, a retry's back-off), where the batch has no answer yet, so stopping leaves
    it `sending` in the journal and the next run resumes it, as a third signal would."""
    if _state.pending and _on_main_thread():
        first = _state.pending[0]
        _state.pending = []
        raise Interrupted(first)


def pending() -> int | None:
    """The signal waiting for the current `deferred()` block to end, if any."""
    return _state.pending[0] if _state.pending else None
