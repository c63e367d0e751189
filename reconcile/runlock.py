"""One applying run at a time: a lease in the state store (works across hosts on PostgreSQL).

A holder is `host:pid:nonce`. A lease left by a process that died on this host (SIGKILL,
power loss) is taken over at once; one held elsewhere is honoured until it expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reconcile.errors import RunLocked

LOCK_NAME = "reconcile-apply"
LEASE_SECONDS = 6 * 3600


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def run_lock(rt: Any, name: str = LOCK_NAME, lease_seconds: float = LEASE_SECONDS) -> Iterator[str]:
    """Hold the apply lock for the duration of the block, or raise RunLocked (exit 6)."""
    me = holder_id()
    if not rt.store.acquire_lock(name, me, rt.clock(), lease_seconds):
        current = rt.store.lock_holder(name)
        if current and _dead_here(current["holder"]):
            rt.store.release_lock(name, current["holder"])
        if not rt.store.acquire_lock(name, me, rt.clock(), lease_seconds):
            current = rt.store.lock_holder(name) or {}
            raise RunLocked(f"another run holds the lock {name!r}: {current.get('holder')} since "
                            f"{current.get('acquired_at')}, lease until {current.get('expires_at')}; "
                            "wait for it to finish (a crashed run on another host frees it when the lease ends)")
    try:
        yield me
    finally:
        rt.store.release_lock(name, me)
