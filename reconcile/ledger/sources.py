"""What the ledger adds to a run's universe (pipeline/read.py, with `[ledger] enabled = true`).

- changed subjects: every identity whose consent or subscriptions changed in a message
  received after the last successful run's watermark (both modes), labelled `ledger`,
  with Ketch's own time of the change as `updated_at`;
- deletions: every DeleteRequest not yet completed, with its submission time as
  `requested_at` (so ageing counts from when the person asked).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from reconcile.store.ledger import LedgerStore
from reconcile.store.store import Store


def _iso(value: datetime | None) -> Any:
    return value.isoformat() if value is not None else pd.NA


def ledger_sources(store: Store, since: datetime | None, listed: pd.DataFrame,
                   deletions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`listed` and `deletions` with the ledger's subjects added."""
    ledger = LedgerStore.of(store)
    changed = ledger.changed_since(since)
    if changed:
        rows = pd.DataFrame({"identity": pd.Series([c["identity"] for c in changed], dtype="string"),
                             "updated_at": pd.Series([_iso(c["changed_at"]) for c in changed], dtype="string"),
                             "_source": "ledger"})
        listed = pd.concat([listed, rows], ignore_index=True) if len(listed) else rows
    requests = [r for r in ledger.requests("in_progress") if r["identity"]]
    if requests:
        rows = pd.DataFrame({"identity": pd.Series([r["identity"] for r in requests], dtype="string"),
                             "requested_at": pd.Series([_iso(r["submitted_at"] or r["received_at"]) for r in requests],
                                                       dtype="string")})
        attrs = dict(deletions.attrs)
        deletions = pd.concat([deletions, rows], ignore_index=True) if len(deletions) else rows
        deletions.attrs.update(attrs)
    return listed, deletions
