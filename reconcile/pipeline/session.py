"""Build what a run needs from the config: state store, Braze and Ketch clients, clock.

With `[sandbox] enabled = true` both clients talk in-process to the simulators whose
state lives in `sandbox.state_file` (loaded at open, saved at close). Otherwise they talk
HTTP to the configured endpoints (real APIs, or `reconcile sandbox serve` on loopback).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from reconcile.pipeline.interrupts import raise_if_pending
from reconcile.clients.braze import BrazeClient
from reconcile.clients.ketch import KetchClient
from reconcile.config import Config, braze_api_key, proxy_problems, state_url
from reconcile.errors import ConfigError, ConfigProblem
from reconcile.redact import SecretFilter, install_query_filter
from reconcile.store.store import Store

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Runtime:
    cfg: Config
    store: Any
    braze: Any
    ketch: Any
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[[str, int, int], None] | None = None
    sandbox: Any = None
    workspace: str = ""  # the Braze workspace (endpoint host + a hash of the key), never the key
    export_scope: str | None = None  # a sweep's id: its workers share one Braze segment export
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception:  # noqa: BLE001 - closing must not hide the run's own error
                log.exception("error while closing")
        self._closers.clear()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class SandboxPair:
    braze: Any
    ketch: Any
    path: Path

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.braze.save(self.path.with_suffix(".braze.json"))
        self.ketch.save(self.path.with_suffix(".ketch.json"))


def load_sandbox(cfg: Config) -> SandboxPair:
    from reconcile.sandbox.braze import BrazeSim, braze_sim_options
    from reconcile.sandbox.ketch import KetchSim

    path = cfg.sandbox.state_file
    if path is None or not path.with_suffix(".braze.json").exists():
        raise ConfigError(ConfigProblem("sandbox.state_file", f"no seeded sandbox at {path}",
                                        "run `reconcile sandbox seed` (or `reconcile demo`) first"))
    braze = BrazeSim.load(path.with_suffix(".braze.json"), **braze_sim_options(cfg.sandbox))
    return SandboxPair(braze, KetchSim.load(path.with_suffix(".ketch.json")), path)


def install_secret_filter(cfg: Config, environ: Mapping[str, str] | None = None) -> None:
    secrets = cfg.secret_values(environ)
    root = logging.getLogger()
    last_resort: list[logging.Handler | None] = [logging.lastResort]
    for h in root.handlers or last_resort:
        if h is not None and not any(isinstance(f, SecretFilter) for f in h.filters):
            h.addFilter(SecretFilter(secrets))
    if not any(isinstance(f, SecretFilter) for f in root.filters):
        root.addFilter(SecretFilter(secrets))
    install_query_filter([h for h in root.handlers or last_resort if h is not None])


def open_runtime(cfg: Config, environ: Mapping[str, str] | None = None, *, clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep, progress=None) -> Runtime:
    install_secret_filter(cfg, environ)
    if not cfg.sandbox.enabled and (problems := proxy_problems(cfg.ketch.http_backend, environ)):
        raise ConfigError(problems)
    store = Store.open(state_url(cfg, environ))
    rt = Runtime(cfg, store, None, None, clock, sleep, progress)
    rt._closers.append(store.close)
    try:
        braze_transport = ketch_transport = None
        if cfg.sandbox.enabled:
            rt.sandbox = load_sandbox(cfg)
            rt._closers.append(rt.sandbox.save)
            braze_transport, ketch_transport = rt.sandbox.braze.transport(), rt.sandbox.ketch.transport()
        rt.braze = BrazeClient(cfg.braze, braze_api_key(cfg, environ), transport=braze_transport, sleep=sleep,
                               interrupt_check=raise_if_pending)
        rt._closers.append(rt.braze.close)
        from reconcile.pipeline.lock import workspace_id

        rt.workspace = workspace_id(cfg.braze.rest_endpoint, braze_api_key(cfg, environ))
        if cfg.braze.shared_budget:
            from reconcile.clients.shared_budget import install_shared_budget

            install_shared_budget(rt, braze_api_key(cfg, environ))
        backend = "auto" if ketch_transport is not None else cfg.ketch.http_backend
        rt.ketch = KetchClient(cfg.ketch, transport=ketch_transport, http_backend=backend)
        rt._closers.append(rt.ketch.close)
    except BaseException:
        rt.close()
        raise
    return rt
