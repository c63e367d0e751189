"""The SQLite state database is private to the job: it holds every identity checked, plan
bodies, raw webhook bodies and callback credentials waiting to be delivered.

A new database file is created 0600 and a folder made for it 0700 (whatever the umask);
an existing file readable or writable by group or others is left as it is (the operator
may share it on purpose) with a warning naming the path and the `chmod` that closes it.
An existing folder is not judged: it is often the job's working directory. SQLite
creates its `-wal`/`-journal` files with the database file's mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)
FILE_MODE, FOLDER_MODE = 0o600, 0o700


def prepare(path: Path) -> None:
    """Create the database's folder (0700) and file (0600) when missing; warn when wider."""
    folder = path.parent
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=FOLDER_MODE, exist_ok=True)
        os.chmod(p, FOLDER_MODE)  # mkdir's mode is filtered by the umask
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)
        os.close(fd)
        os.chmod(path, FILE_MODE)
        return
    _warn_if_wide(path, "state database", FILE_MODE)


def _warn_if_wide(path: Path, what: str, wanted: int) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("the %s %s is readable or writable by others (mode %04o); it holds identities and credentials: "
                    "chmod %04o %s", what, path, mode, wanted, path)
