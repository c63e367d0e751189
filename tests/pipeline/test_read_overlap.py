"""Ketch and Braze are read at the same time, and a failure on either side stops the other."""

from __future__ import annotations

import threading

import pytest

from reconcile.errors import ExitCode
from reconcile.pipeline.job import run_job
from reconcile.sandbox.core import SimResponse

STATE_READS = ("/users/export/ids", "/subscription/status/get")


def _is_consent(req) -> bool:
    return "/consent/" in req.path


def test_braze_is_read_while_ketch_still_answers(world, monkeypatch):
    w = world
    cfg = w.config(guards={"max_unsubscribe_fraction": 1.0})
    w.seed(cfg, subjects=80, drift=0.1)
    braze_asked, held = threading.Event(), []
    ketch_handle, braze_handle = w.ketch.handle, w.braze.handle

    def ketch(req):
        if _is_consent(req) and not held:
            held.append(braze_asked.wait(20))  # the first lookup answers once Braze was asked for state
        return ketch_handle(req)

    def braze(req):
        if req.path in STATE_READS:
            braze_asked.set()
        return braze_handle(req)

    monkeypatch.setattr(w.ketch, "handle", ketch)
    monkeypatch.setattr(w.braze, "handle", braze)
    with w.runtime(cfg) as rt:
        result = run_job(rt)
    assert held == [True], "Braze's state was not read until Ketch's read had finished"
    assert result.exit_code == ExitCode.OK, result.messages


def test_a_failed_ketch_read_stops_the_braze_read(world, monkeypatch):
    w = world
    cfg = w.config(braze={"read_concurrency": 2})
    w.seed(cfg, subjects=200, drift=0.1)
    ketch_failed = threading.Event()
    braze_handle = w.braze.handle

    def ketch(req):
        ketch_failed.set()
        return SimResponse(401, {"error": {"code": "unauthorized", "message": "bad token"}})

    def braze(req):
        if req.path == "/users/export/ids":
            ketch_failed.wait(20)
        return braze_handle(req)

    monkeypatch.setattr(w.ketch, "handle", ketch)
    monkeypatch.setattr(w.braze, "handle", braze)
    with w.runtime(cfg) as rt:
        with pytest.raises(Exception) as failure:
            run_job(rt)
    assert "401" in str(failure.value) or "unauthorized" in str(failure.value).lower()
    exports = [c for c in w.braze.calls if c["path"] == "/users/export/ids"]
    assert len(exports) <= 8, f"{len(exports)} exports after Ketch failed: the Braze read went on"
    assert not w.writes(), "nothing is written when a read failed"


def test_a_failed_braze_read_cancels_the_ketch_read(world, monkeypatch):
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=300, drift=0.1)
    braze_failed = threading.Event()
    ketch_handle = w.ketch.handle

    def braze(req):
        if req.path in STATE_READS:
            braze_failed.set()
            return SimResponse(401, {"message": "Invalid API Key"})
        return w.braze.__class__.handle(w.braze, req)

    def ketch(req):
        braze_failed.wait(20)
        return ketch_handle(req)

    monkeypatch.setattr(w.braze, "handle", braze)
    monkeypatch.setattr(w.ketch, "handle", ketch)
    with w.runtime(cfg) as rt:
        with pytest.raises(Exception) as failure:
            run_job(rt)
    assert "401" in str(failure.value) or "unauthorized" in str(failure.value).lower()
    lookups = sum(1 for c in w.ketch.calls if "/consent/" in c["path"])
    assert lookups < 300, "the Ketch read went on after the Braze read failed"


def test_a_ketch_failure_after_the_braze_read_ended_leaves_the_braze_client_usable(world, monkeypatch):
    from reconcile.engine import extract as ex
    from reconcile.errors import TransientApiError
    from reconcile.pipeline.run import plan_only

    w = world
    cfg = w.config()
    w.seed(cfg, subjects=40)
    braze_done, failures = threading.Event(), []
    real_ketch, real_braze = ex.extract_ketch, ex.extract_braze

    def braze_then_signal(*a, **k):
        try:
            return real_braze(*a, **k)
        finally:
            braze_done.set()

    def ketch_failing_late(*a, **k):
        out = real_ketch(*a, **k)
        if not failures:
            braze_done.wait(20)  # the Braze read has ended when Ketch fails
            failures.append(1)
            raise TransientApiError("Ketch lookups failed for most subjects", service="ketch")
        return out

    monkeypatch.setattr(ex, "extract_braze", braze_then_signal)
    monkeypatch.setattr(ex, "extract_ketch", ketch_failing_late)
    with w.runtime(cfg) as rt:
        with pytest.raises(TransientApiError):
            plan_only(rt)
        again = plan_only(rt)[1]  # the same runtime's next run (a sweep worker's next slice)
    assert len(again.obs.observed.universe) > 0
