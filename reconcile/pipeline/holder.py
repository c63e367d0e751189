"""Who holds a run lock, in terms that survive containers and PID namespaces.

A holder is `host:pid:nonce` plus an identity record: the machine id (/etc/machine-id),
the kernel's boot id, the PID namespace (/proc/self/ns/pid), the process's start time in
clock ticks since boot (/proc/self/stat field 22) and the random nonce. Another process
can tell that a holder is dead only when it shares the holder's boot and PID namespace
(and machine id, when both have one) and the holder's PID is gone or now belongs to a
process that started at another time. Anywhere else the holder is presumed alive until
its lease expires.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def start_ticks(pid: int | str = "self") -> int | None:
    """A process's start time (clock ticks since boot), or None when /proc cannot tell."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name may contain spaces
    except (ValueError, IndexError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid())


def identity() -> dict[str, Any]:
    """This process's identity record (a new nonce each call)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "user": _user(),
        "machine_id": _read("/etc/machine-id"),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_ns": _pid_namespace(),
        "start": start_ticks(),
        "nonce": uuid.uuid4().hex[:12],
    }


def holder_name(ident: dict[str, Any]) -> str:
    return f"{ident['host']}:{ident['pid']}:{ident['nonce']}"


def _same_process_space(theirs: dict[str, Any], mine: dict[str, Any]) -> bool:
    if not theirs.get("boot_id") or not theirs.get("pid_ns"):
        return False
    if (theirs.get("boot_id"), theirs.get("pid_ns")) != (mine.get("boot_id"), mine.get("pid_ns")):
        return False
    a, b = theirs.get("machine_id"), mine.get("machine_id")
    return not (a and b and a != b)


def known_dead(theirs: dict[str, Any] | None, mine: dict[str, Any] | None = None) -> bool:
    """True only when `theirs` certainly no longer runs (see the module docstring)."""
    if not theirs:
        return False
    mine = mine or identity()
    if not _same_process_space(theirs, mine):
        return False
    pid, started = theirs.get("pid"), theirs.get("start")
    if not isinstance(pid, int) or not isinstance(started, int):
        return False
    if pid == mine.get("pid") and started == mine.get("start"):
        return False  # this very process
    now = start_ticks(pid)
    return now is None or now != started
