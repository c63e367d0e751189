"""SIGINT/SIGTERM handling, with real signals sent to this process: outside `deferred()` a
signal raises Interrupted at once; inside, the block finishes first; a third signal inside
raises at once; previous handlers come back afterwards."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

from reconcile.pipeline.interrupts import Interrupted, deferred, handle_signals, pending


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler for each test, whatever the test process inherited (a
    shell's background job starts with SIGINT ignored), restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def send(signum: int) -> None:
    os.kill(os.getpid(), signum)
    signal.pthread_kill(threading.get_ident(), 0)  # returns once the handler has run


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_outside_deferred_raises_at_once(signum: int, code: int) -> None:
    reached = []
    with pytest.raises(Interrupted) as info:
        with handle_signals():
            send(signum)
            reached.append("after the signal")
    assert reached == []
    assert (info.value.signum, info.value.exit_code) == (signum, code)
    assert signal.Signals(signum).name in str(info.value)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_deferred_waits_for_the_block(signum: int) -> None:
    journal = []
    with pytest.raises(Interrupted) as info:
        with handle_signals():
            with deferred():
                journal.append("sent")
                send(signum)
                assert pending() == signum
                journal.append("journaled")
            journal.append("next batch")
    assert journal == ["sent", "journaled"]
    assert info.value.signum == signum and pending() is None


def test_second_sigint_still_defers_and_third_raises_at_once() -> None:
    steps = []
    with pytest.raises(Interrupted) as info:
        with handle_signals():
            with deferred():
                send(signal.SIGTERM)
                send(signal.SIGINT)
                steps.append("two signals, still in the batch")
                send(signal.SIGINT)
                steps.append("not reached")
    assert steps == ["two signals, still in the batch"]
    assert info.value.exit_code == 143  # the first signal's


def test_nested_deferred_blocks_raise_at_the_outermost_exit() -> None:
    steps = []
    with pytest.raises(Interrupted):
        with handle_signals(), deferred():
            with deferred():
                send(signal.SIGINT)
            steps.append("inner block ended")
    assert steps == ["inner block ended"]


def test_an_error_in_a_deferred_block_gives_way_to_the_pending_signal() -> None:
    with pytest.raises(Interrupted) as info:
        with handle_signals(), deferred():
            send(signal.SIGTERM)
            raise RuntimeError("batch failed")
    assert isinstance(info.value.__context__, RuntimeError)


def test_no_signal_means_nothing_is_raised() -> None:
    with handle_signals():
        with deferred():
            pass
    assert pending() is None


def test_previous_handlers_are_restored() -> None:
    seen = []

    def mine(signum: int, _frame: object) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(Interrupted):
            with handle_signals():
                send(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        send(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_without_handlers_deferred_does_nothing() -> None:
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            send(signal.SIGINT)


def test_off_the_main_thread_nothing_is_installed() -> None:
    outcome = {}

    def worker() -> None:
        with handle_signals(), deferred():
            outcome["handler"] = signal.getsignal(signal.SIGTERM)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert outcome["handler"] is signal.getsignal(signal.SIGTERM)


def test_interrupted_is_not_an_exception_and_pickles() -> None:
    assert not issubclass(Interrupted, Exception)
    again = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert (again.signum, again.exit_code) == (signal.SIGTERM, 143)
