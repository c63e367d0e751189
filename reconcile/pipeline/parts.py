"""Journal the parts of a chunked read, so a run that stops mid-read resumes part by part.

A universe larger than `universe.chunk_size` is read in parts (stable hash slices of the
subject keys). Each finished part is saved in the state store: which subjects it read
(with whether each has a Ketch record and a Braze profile), its drift, its failed Ketch
lookups, and the state of its drift subjects, as Parquet files in one zip. A run that was
killed, failed or interrupted leaves its parts behind; the next run of the same scope
(config, Braze workspace, mode, sweep slice) and part count takes each part saved within
`universe.resume_parts_hours`. From a saved part it keeps only the subjects that had no
drift and whose universe row (identity, address, sources, deletion request, tombstone) is
unchanged; the part's drift subjects, the subjects whose row changed and those that joined
the part are read again, and those that left it are dropped. A run that reused parts moves
the incremental watermark only to the start of the earliest run it took parts from, so
what changed since is read by the next incremental run. A read that finishes forgets its
scope's parts.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from reconcile.engine.frames import conform, isin
from reconcile.engine.plan import fingerprint
from reconcile.pipeline.session import Session

log = logging.getLogger(__name__)
STATE = ("ketch", "ketch_topics", "braze", "braze_groups", "braze_profiles")
SEEN = ["subject_key", "has_record", "exists"]


@dataclass(frozen=True)
class PartResult:
    """One part's outcome: the subjects read (`seen`: subject_key, has_record, exists), its
    drift, failed Ketch lookups (identity, reason, source), the state frames of its drift
    subjects, and the fingerprint of what it read."""

    seen: pd.DataFrame
    drift: pd.DataFrame
    failed: pd.DataFrame
    state: dict[str, pd.DataFrame]
    print: str

    def only(self, keys: pd.Series) -> PartResult:
        """The result for the subjects of `keys` only (the part's subjects now)."""
        wanted = set(keys.astype(str))

        def pick(df: pd.DataFrame, col: str = "subject_key") -> pd.DataFrame:
            return df[isin(df[col], wanted).to_numpy()].reset_index(drop=True) if len(df) else df

        removed = len(self.seen) - int(isin(self.seen["subject_key"], wanted).sum())
        return PartResult(pick(self.seen), pick(self.drift), self.failed.iloc[0:0],
                          {name: pick(df) for name, df in self.state.items()},
                          fingerprint(self.print, removed) if removed else self.print)

    def dump(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps({"print": self.print}))
            for name, df in {"seen": self.seen, "drift": self.drift, "failed": self.failed, **self.state}.items():
                out = io.BytesIO()
                df.to_parquet(out, index=False)
                zf.writestr(f"{name}.parquet", out.getvalue())
        return buf.getvalue()

    @classmethod
    def load(cls, payload: bytes) -> PartResult:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            meta = json.loads(zf.read("meta.json"))
            frames = {n[:-len(".parquet")]: pd.read_parquet(io.BytesIO(zf.read(n)))
                      for n in zf.namelist() if n.endswith(".parquet")}
        state = {name: conform(frames[name], name) for name in STATE}
        return cls(frames["seen"], frames["drift"], frames["failed"], state, str(meta["print"]))


def merge(a: PartResult, b: PartResult) -> PartResult:
    """Two results over disjoint subjects as one."""
    def cat(x: pd.DataFrame, y: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([x, y], ignore_index=True) if len(x) and len(y) else (x if len(x) else y)

    return PartResult(cat(a.seen, b.seen), cat(a.drift, b.drift), cat(a.failed, b.failed),
                      {n: cat(a.state[n], b.state[n]) for n in STATE}, fingerprint(a.print, b.print))


class PartJournal:
    """The saved parts of one run's chunked read."""

    def __init__(self, rt: Session, run_id: str, mode: str, slice_index: int | None, parts: int):
        self.rt, self.run_id, self.parts = rt, run_id, parts
        self.scope = scope_of(rt, mode, slice_index)
        self.hours = rt.cfg.universe.resume_parts_hours

    def saved(self) -> dict[int, tuple[str, PartResult]]:
        """part -> (run id, result) for the parts an unfinished earlier run left."""
        if self.hours <= 0:
            return {}
        now = self.rt.clock()
        self.rt.store.drop_run_parts(before=now - timedelta(hours=self.hours))
        found = self.rt.store.resumable_parts(self.scope, self.parts, now - timedelta(hours=self.hours), self.run_id)
        out = {}
        for part, (run_id, payload) in found.items():
            try:
                out[part] = (run_id, PartResult.load(payload))
            except Exception as exc:  # noqa: BLE001 - a damaged copy is read again, never trusted
                log.warning("saved part %d of run %s cannot be read (%s); reading it again", part, run_id, exc)
        if out:
            log.info("resuming %d of %d parts from unfinished run(s) %s", len(out), self.parts,
                     ", ".join(sorted({r for r, _ in out.values()})))
        return out

    def save(self, part: int, result: PartResult) -> None:
        if self.hours > 0:
            self.rt.store.save_run_part(run_id=self.run_id, scope=self.scope, part=part, parts=self.parts,
                                        subjects=len(result.seen), payload=result.dump(), at=self.rt.clock())

    def finished(self) -> None:
        self.rt.store.drop_run_parts(self.scope)


def scope_of(rt: Session, mode: str, slice_index: int | None) -> str:
    return fingerprint(rt.cfg.hash(), getattr(rt, "workspace", ""), mode, slice_index)


ROW_COLUMNS = ("subject_key", "identity", "email", "sources", "deletion_requested", "deletion_latest_at",
               "tombstoned")


def row_hashes(universe: pd.DataFrame) -> pd.Series:
    """A hash per universe row of what makes the subject's check what it is (identity, email,
    sources, deletion request, tombstone): a saved result is reused only while it is equal."""
    cols = [c for c in ROW_COLUMNS if c in universe.columns]
    text = universe[cols].astype("string").fillna("<NA>")
    return pd.util.hash_pandas_object(text, index=False).astype("uint64")


def seen_of(universe: pd.DataFrame, ketch: pd.DataFrame, braze: pd.DataFrame) -> pd.DataFrame:
    """subject_key, has_record, exists and the row hash for every subject of a part's read universe."""
    keys = universe["subject_key"]
    has = isin(keys, ketch.loc[ketch["has_record"].fillna(False).astype(bool).to_numpy(), "subject_key"])
    exists = isin(keys, braze.loc[braze["exists"].fillna(False).astype(bool).to_numpy(), "subject_key"])
    return pd.DataFrame({"subject_key": keys.astype(str).to_numpy(), "has_record": has.to_numpy(),
                         "exists": exists.to_numpy(), "row": row_hashes(universe).to_numpy()})


def reusable(saved: PartResult, part: pd.DataFrame) -> pd.Series:
    """The subjects of `part` whose saved result may be taken as it is: read by the saved
    part, without drift there (a subject with drift is read again before anything is done
    about it), and with the same universe row (no deletion request, tombstone, source or
    address since)."""
    if "row" not in saved.seen.columns:
        return pd.Series([], dtype="string")
    now = pd.DataFrame({"subject_key": part["subject_key"].astype(str).to_numpy(),
                        "row": row_hashes(part).to_numpy()})
    both = saved.seen[["subject_key", "row"]].astype({"subject_key": str}).merge(
        now, on="subject_key", suffixes=("_saved", ""))
    same = both.loc[(both["row_saved"] == both["row"]).to_numpy(), "subject_key"]
    return same[~isin(same, set(saved.drift["subject_key"].astype(str)))].reset_index(drop=True)
