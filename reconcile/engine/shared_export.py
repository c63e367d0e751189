"""One Braze segment export per run or sweep, shared by every part and worker.

A full sweep with `braze.segment_id` lists every profile of the workspace with one
asynchronous `/users/export/segment`. A universe read in parts, and the workers of a
sliced sweep, all need that list, and Braze runs one export of a segment at a time (a
second start is refused with 429) that may take an hour for tens of millions of users.
So the export belongs to a scope (the run, or the sweep the worker joined), recorded in
the state store: the first reader claims it, starts it and stores the profiles it lists;
every other part and worker reads those rows for its own addresses, waiting for them
when the export is still running.

Each documented failure makes the export `unavailable` for the whole scope, and every
part then reads profile by profile (the reads of `profiles.py` after the export):

* `bucket`: the workspace writes exports to its own bucket, so there is no download URL;
* `busy`: 429, an export of the segment is already running (another integration's);
  answered at once, never retried, so the shared rate budget is not held back;
* `not_ready`: no file within the wait (`braze.segment_export_wait_seconds`, by default
  sized from the workspace: Braze reports a failed export by email only, so waiting
  longer than a slow export could take is how a failed one is told apart);
* the key lacks `users.export.segment` (the caller records the missing permission);
* a holder that went quiet (its process died) for longer than that wait.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from reconcile.clients.braze_results import ExportUnavailable
from reconcile.engine.identity import email_keys
from reconcile.engine.ports import BrazeProfileReads, SegmentExportStore
from reconcile.errors import PermissionDenied, TransientApiError

log = logging.getLogger(__name__)

PROFILES_PER_SECOND = 2800.0  # Braze: "an hour or more" for tens of millions of users
MIN_WAIT_SECONDS = 300.0
MAX_WAIT_SECONDS = 3600.0
STORE_PIECE = 50_000  # exported users turned into a frame and stored at a time
PRUNE_AFTER = timedelta(days=2)
NO_PERMISSION = "permission: the key lacks users.export.segment"


def expected_wait(profiles: int) -> float:
    """How long to wait for an export of about `profiles` users before calling it failed:
    three times Braze's pace plus five minutes, at most an hour."""
    return min(MAX_WAIT_SECONDS, MIN_WAIT_SECONDS + 3 * max(0, profiles) / PROFILES_PER_SECOND)


def export_frame(users: list[dict[str, Any]]) -> pd.DataFrame:
    """Exported users with an address and a braze_id, as store rows (keyed by the same
    mailbox key as every other read: a look-alike address is another mailbox)."""
    cols = ["braze_id", "email", "external_id", "email_subscribe", "phone"]
    df = pd.DataFrame(users, columns=cols).astype("string")
    df["email_key"] = email_keys(df["email"])
    return df[(df["email_key"].notna() & df["braze_id"].notna()).to_numpy()]


class SharedExport:
    """The segment export of one scope; `rows_for(keys)` gives the profiles of those
    addresses, or None when the scope's export is unavailable (read per profile)."""

    def __init__(self, store: SegmentExportStore, braze: BrazeProfileReads, scope: str, segment_id: str,
                 fields: Sequence[str], *, clock: Callable[[], datetime], sleep: Callable[[float], None],
                 wait_seconds: float, poll_seconds: float = 15.0):
        self.store, self.braze, self.scope, self.segment_id = store, braze, scope, segment_id
        self.fields = list(fields)
        self.clock, self.sleep = clock, sleep
        self.wait_seconds, self.poll_seconds = float(wait_seconds), max(0.01, float(poll_seconds))
        self.holder = uuid.uuid4().hex
        self.status: str | None = None  # "ready" or "unavailable" once known
        self.started = False  # whether this reader started the scope's export

    def rows_for(self, email_keys: Iterable[str]) -> pd.DataFrame | None:
        if self.status is None:
            self.status = self._settle()
        if self.status == NO_PERMISSION:
            raise PermissionDenied("the key lacks users.export.segment (found by the reader that started the export)",
                                   service="braze", status_code=403)
        if self.status != "ready":
            return None
        return self.store.segment_export_rows(self.scope, email_keys)

    def _settle(self) -> str:
        now = self.clock()
        self.store.prune_segment_exports(now - PRUNE_AFTER)
        claimed, row = self.store.claim_segment_export(self.scope, self.segment_id, self.holder, now)
        if claimed:
            return self._export()
        return self._wait_for(row)

    def _export(self) -> str:
        self.started = True
        try:
            count = 0
            piece: list[dict[str, Any]] = []
            for user in self.braze.export_segment(self.segment_id, self.fields, poll_seconds=self.poll_seconds,
                                                  timeout_seconds=self.wait_seconds):
                piece.append(user)
                if len(piece) >= STORE_PIECE:
                    count += self.store.add_segment_export_rows(self.scope, export_frame(piece))
                    piece = []
            count += self.store.add_segment_export_rows(self.scope, export_frame(piece))
        except ExportUnavailable as exc:
            return self._unavailable(f"{exc.kind}: {exc}")
        except TransientApiError as exc:
            return self._unavailable(f"failed: {exc}")
        except PermissionDenied:
            self._unavailable(NO_PERMISSION)
            self.status = NO_PERMISSION
            raise  # the caller records the missing permission
        except BaseException as exc:
            self._unavailable(f"stopped: {type(exc).__name__}")
            raise
        self.store.finish_segment_export(self.scope, self.holder, "ready", self.clock(), profiles=count)
        log.info("braze segment export of %s: %d profiles with an address, shared by every part and worker of %s",
                 self.segment_id, count, self.scope)
        return "ready"

    def _unavailable(self, reason: str) -> str:
        self.store.finish_segment_export(self.scope, self.holder, "unavailable", self.clock(), reason=reason)
        log.warning("braze segment export unavailable (%s); profiles are read one by one instead", reason[:300])
        return "unavailable"

    def _wait_for(self, row: dict[str, Any]) -> str:
        """Wait for the export another part or worker holds."""
        deadline = row["started_at"] + timedelta(seconds=self.wait_seconds + 60)
        while row["status"] == "running":
            if self.clock() >= deadline:
                self.store.give_up_segment_export(self.scope, self.clock(),
                                                  "no answer from the reader that started it within the wait")
                log.warning("the segment export of %s started by another reader did not finish in time; profiles "
                            "are read one by one instead", self.scope)
                return "unavailable"
            self.sleep(self.poll_seconds)
            row = self.store.segment_export(self.scope) or {**row, "status": "unavailable"}
        if row["status"] != "ready":
            log.info("the segment export of %s is unavailable (%s); profiles are read one by one", self.scope,
                     (row.get("reason") or "")[:300])
            if row.get("reason") == NO_PERMISSION:
                return NO_PERMISSION
        return str(row["status"])
