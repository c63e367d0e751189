"""The run session: what a run needs, built from the config (state store, Braze and Ketch
clients, clock), typed, frozen, and closed as one.

With `[sandbox] enabled = true` both clients talk in-process to the simulators whose
state lives in `sandbox.state_file` (loaded at open, saved at close). Otherwise they talk
HTTP to the configured endpoints (real APIs, or `reconcile sandbox serve` on loopback).
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping
from urllib.parse import urlsplit

from reconcile.clients.braze import BrazeClient
from reconcile.clients.ketch import KetchClient
from reconcile.clients.shared_budget import install_shared_budget
from reconcile.config import Config, braze_api_key, proxy_problems, state_url
from reconcile.errors import ConfigError, ConfigProblem
from reconcile.observability.events import Progress
from reconcile.pipeline.interrupts import raise_if_pending
from reconcile.redact import SecretFilter, install_query_filter
from reconcile.store.store import Store

if TYPE_CHECKING:
    from reconcile.sandbox.braze import BrazeSim
    from reconcile.sandbox.ketch import KetchSim

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def workspace_id(rest_endpoint: str, api_key: str) -> str:
    """The Braze workspace as a lock sees it: endpoint host + a hash of the key."""
    host = urlsplit(rest_endpoint).netloc or rest_endpoint
    digest = hashlib.sha256(b"reconcile run lock\0" + api_key.strip().encode()).hexdigest()[:12]
    return f"{host}/{digest}"


@dataclass
class SandboxPair:
    braze: BrazeSim
    ketch: KetchSim
    path: Path

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.braze.save(self.path.with_suffix(".braze.json"))
        self.ketch.save(self.path.with_suffix(".ketch.json"))


@dataclass(frozen=True)
class Session:
    """What one run works with, opened by `open_session()` and closed with it (a context
    manager): the config, the state store, both clients, the clock and sleep, the progress
    display, the sandbox pair (in-process simulators), the Braze workspace (the endpoint
    host and a hash of the key, never the key) and the export scope (a sweep's id, set by
    its workers: they share one Braze segment export). Frozen: a caller that needs a
    variation (a sweep's own slice count, its export scope) makes one with
    `dataclasses.replace`, sharing the closers."""

    cfg: Config
    store: Store
    braze: BrazeClient
    ketch: KetchClient
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    progress: Progress | None = None
    sandbox: SandboxPair | None = None
    workspace: str = ""
    export_scope: str | None = None  # a sweep's id: its workers share one Braze segment export
    closers: ExitStack = field(default_factory=ExitStack, repr=False, compare=False)

    def close(self) -> None:
        self.closers.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _closing(stack: ExitStack, fn: Callable[[], None]) -> None:
    """Close with `fn` when the session closes; an error while closing is logged, never
    raised over the run's own error."""

    def close() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - closing must not hide the run's own error
            log.exception("error while closing")

    stack.callback(close)


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


def open_session(cfg: Config, environ: Mapping[str, str] | None = None, *, clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None) -> Session:
    """Open the state store and both clients for `cfg`; the session owns and closes them."""
    install_secret_filter(cfg, environ)
    if not cfg.sandbox.enabled and (problems := proxy_problems(cfg.ketch.http_backend, environ)):
        raise ConfigError(problems)
    stack = ExitStack()
    try:
        store = Store.open(state_url(cfg, environ))
        _closing(stack, store.close)
        sandbox = braze_transport = ketch_transport = None
        if cfg.sandbox.enabled:
            sandbox = load_sandbox(cfg)
            _closing(stack, sandbox.save)
            braze_transport, ketch_transport = sandbox.braze.transport(), sandbox.ketch.transport()
        key = braze_api_key(cfg, environ)
        braze = BrazeClient(cfg.braze, key, transport=braze_transport, sleep=sleep,
                            interrupt_check=raise_if_pending)
        _closing(stack, braze.close)
        workspace = workspace_id(cfg.braze.rest_endpoint, key)
        if cfg.braze.shared_budget:
            install_shared_budget(store, braze, workspace)
        backend = "auto" if ketch_transport is not None else cfg.ketch.http_backend
        ketch = KetchClient(cfg.ketch, transport=ketch_transport, http_backend=backend)
        _closing(stack, ketch.close)
    except BaseException:
        stack.close()
        raise
    return Session(cfg, store, braze, ketch, clock, sleep, progress, sandbox, workspace, closers=stack)
