"""Subjects still owed a read: a Ketch lookup that failed after its retries leaves its
subject unchecked, so it must not be forgotten by the next incremental run.

The retry set is kept in the state store (the `watermarks` table, under `owed_reads`: a
JSON object identity -> when its read first failed). Every run's universe takes the set in
(source `owed_read`, whatever the mode), a run that reads a subject takes it out, and a
lookup that fails again keeps it in. A run with failed lookups is partial (exit 4) and does
not move the incremental watermark, so nothing changed since stays unread either.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

from reconcile.engine.identity import normalize

OWED = "owed_reads"
SOURCE = "owed_read"


def owed(store: Any) -> dict[str, str]:
    """identity -> ISO time its read first failed."""
    raw = store.get_watermark(OWED)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def with_owed(store: Any, listed: pd.DataFrame) -> pd.DataFrame:
    """`listed` with every owed identity added (source `owed_read`)."""
    identities = list(owed(store))
    if not identities:
        return listed
    rows = pd.DataFrame({"identity": pd.Series(identities, dtype="string"), "_source": SOURCE})
    return pd.concat([listed, rows], ignore_index=True) if len(listed) else rows


def settle(store: Any, universe: pd.DataFrame, exceptions: pd.DataFrame, key_type: str, now: datetime) -> int:
    """After a run's read: subjects read leave the set, failed lookups join it (keeping the
    first failure's time). Returns how many are owed now."""
    before = owed(store)
    failed = exceptions.loc[exceptions["source"] == "ketch", "identity"].astype(str).tolist() \
        if len(exceptions) and "source" in exceptions.columns else []
    if not before and not failed:
        return 0
    read = set(universe["subject_key"].astype(str)) if len(universe) else set()
    keys = _keys(list(before), key_type)
    after = {i: t for i, t in before.items() if keys.get(i) not in read}
    for identity in failed:
        after.setdefault(identity, now.isoformat())
    if after != before:
        store.set_watermark(OWED, json.dumps(after, sort_keys=True), now)
    return len(after)


def _keys(identities: list[str], key_type: str) -> dict[str, str]:
    if not identities:
        return {}
    valid, _ = normalize(pd.Series(identities, dtype="string"), key_type)
    return {identities[pos]: str(k) for pos, k in zip(valid.index.tolist(), valid["subject_key"].tolist())}


def unread_message(exceptions: pd.DataFrame) -> str | None:
    """What to say when subjects could not be read: the run is partial (exit 4) with the count."""
    if not len(exceptions) or "source" not in exceptions.columns:
        return None
    n = int((exceptions["source"] == "ketch").sum())
    if not n:
        return None
    return (f"{n} subject(s) not checked: their Ketch lookup failed after every retry (listed in the run's "
            "exceptions); they are kept in the retry set and read by the next run, and the incremental watermark "
            "does not move")
