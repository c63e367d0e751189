"""Who is checked in a run (semantics §2): the union of every configured source.

Loading the sources is I/O (pipeline/sources.py); `build_universe` is pure and returns the
universe frame plus the exceptions frame (identity, source, reason) for every rejected identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reconcile.engine.frames import conform, isin
from reconcile.engine.identity import email_keys, normalize, shown
from reconcile.engine.phones import normalize_phones
from reconcile.engine.times import PROBLEM, with_times
from reconcile.models.mailbox import compat_form, look_alikes

EXCEPTION_COLUMNS = ["identity", "source", "reason"]


@dataclass(frozen=True)
class Sources:
    """Raw identity sources, each a frame with an `identity` column (plus optional ones)."""

    listed: pd.DataFrame  # identity[, email]
    deletions: pd.DataFrame  # identity[, requested_at]
    unsubscribed: pd.DataFrame  # email, unsubscribed_at (Braze list, window)
    bounced: pd.DataFrame  # email, hard_bounced_at (Braze list, window)
    open_drift: pd.DataFrame  # subject_key, identity
    tombstones: pd.DataFrame  # subject_key, identity


def pick_slice(universe: pd.DataFrame, slices: int, index: int) -> pd.DataFrame:
    """Keep listed-only subjects in slice `index` of `slices`; every other source is always kept."""
    if slices <= 1:
        return universe
    keep = (slice_of(universe["subject_key"], slices) == index % slices) | (universe["sources"] != "list")
    return universe[keep.to_numpy()].reset_index(drop=True)


def ignored_rights(deletions: pd.DataFrame) -> pd.DataFrame:
    """The exceptions reporting deletion-source rows of other rights, one per right, with their count."""
    counts = deletions.attrs.get("ignored_rights") or {}
    rows = [{"identity": "", "source": "deletions",
             "reason": f"{n} request(s) with right {right!r} ignored: not an erasure right (universe.deletions_rights)"}
            for right, n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=EXCEPTION_COLUMNS)


def _normalized(df: pd.DataFrame, source: str, key_type: str, exc: list[pd.DataFrame],
                phone_region: str = "US") -> pd.DataFrame:
    valid, invalid = normalize(df["identity"], key_type)
    if len(invalid):
        exc.append(invalid.assign(source=source)[EXCEPTION_COLUMNS])
    extra = df.loc[valid.index].drop(columns=["identity"])
    if "phone" in extra.columns:  # E.164; a number that is not one is an exception, the subject stays
        phones, bad = normalize_phones(extra["phone"], phone_region)
        extra = extra.assign(phone=phones)
        if len(bad):
            who = valid.loc[bad.index, "identity"].astype("string")
            exc.append(pd.DataFrame({"identity": who, "source": source,
                                     "reason": "phone " + bad["identity"] + ": " + bad["reason"]})[EXCEPTION_COLUMNS])
    out = pd.concat([valid, extra], axis=1)
    if "_source" in out.columns:  # rows that name their own source (lists resolved to external ids)
        return out.assign(source=out.pop("_source").fillna(source))
    return out.assign(source=source)


def build_universe(src: Sources, key_type: str, phone_region: str = "US") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Union of all sources, one row per subject; (universe, exceptions). A `phone` column of
    the identity list is normalised to E.164 (national numbers read in `phone_region`)."""
    exc: list[pd.DataFrame] = []
    listed = _time_problems(src.listed, "list", "the subject is checked in this run", exc, keep=True)
    parts = [_normalized(listed, "list", key_type, exc, phone_region)]
    deletions = with_times(src.deletions, "requested_at", "deletions", refuse_mostly_bad=False)
    deletions = _time_problems(deletions, "deletions", "this deletion request is not carried out until its time is "
                               "fixed (nothing is deleted on a guessed date)", exc, keep=False)
    dels = _normalized(deletions, "deletions", key_type, exc)
    parts.append(dels)
    if key_type == "email":
        for df, name in ((src.unsubscribed, "braze_unsubscribes"), (src.bounced, "braze_hard_bounces")):
            parts.append(_normalized(df[["email"]].rename(columns={"email": "identity"}), name, key_type, exc))
    for df, name in ((src.open_drift, "open_drift"), (src.tombstones, "tombstones")):
        parts.append(_rekeyed(df[["subject_key", "identity"]], key_type).assign(source=name))
    allrows = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else \
        pd.DataFrame(columns=["subject_key", "identity", "source"])
    if key_type == "email" and len(allrows):
        allrows = _quarantined(allrows, exc)
        dels = dels[isin(dels["subject_key"], set(allrows["subject_key"])).to_numpy()] if len(dels) else dels
    for col in ("email", "phone"):
        if col not in allrows.columns:
            allrows[col] = pd.NA
    if key_type == "email":
        allrows["email"] = allrows["identity"]
    uni = allrows.groupby("subject_key", sort=True).agg(identity=("identity", "first"), email=("email", "first"),
                                                        phone=("phone", "first"))
    uni = uni.reset_index()
    uni["sources"] = uni["subject_key"].map(_source_labels(allrows))
    uni["deletion_requested"] = isin(uni["subject_key"], dels["subject_key"])
    times = dels.groupby("subject_key")["requested_at"] if "requested_at" in dels.columns and len(dels) else None
    uni["deletion_requested_at"] = uni["subject_key"].map(times.min()) if times is not None else pd.NaT
    # the newest request: one filed after the subject was last confirmed absent makes it read again
    uni["deletion_latest_at"] = pd.to_datetime(uni["subject_key"].map(times.max()), utc=True) \
        if times is not None else pd.NaT
    uni["tombstoned"] = isin(uni["subject_key"], src.tombstones["subject_key"])
    if src.deletions.attrs.get("ignored_rights"):
        exc.append(ignored_rights(src.deletions))
    exceptions = pd.concat(exc, ignore_index=True) if exc else pd.DataFrame(columns=EXCEPTION_COLUMNS)
    return conform(uni, "universe"), exceptions


def _rekeyed(df: pd.DataFrame, key_type: str) -> pd.DataFrame:
    """Stored rows (open drift, tombstones) keyed by today's mailbox key of their identity, so
    a key stored under an older normal form meets the same address from the other sources."""
    if key_type != "email" or not len(df):
        return df
    keys = email_keys(df["identity"].astype("string"))
    return df.assign(subject_key=keys.fillna(df["subject_key"].astype("string")))


QUARANTINE_REASON = ("quarantined, not checked or changed: a look-alike of another subject's address (the two differ "
                     "only by characters Unicode compatibility folding merges, such as U+017F, the Kelvin sign, "
                     "\u00df, fullwidth or non-ASCII capitals); they are different mailboxes to Braze and Ketch. "
                     "Review which address the person gave")


def _quarantined(rows: pd.DataFrame, exc: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows whose mailbox key is a look-alike of another subject's key (models/mailbox.py)
    leave the universe and are reported as exceptions, one per source row."""
    keys = rows["subject_key"].astype("string")
    odd = keys[_non_ascii_keys(keys)]
    if not len(odd):
        return rows
    flagged = look_alikes(set(odd.dropna()) | set(_ascii_partners(keys, odd)))
    if not flagged:
        return rows
    out = isin(rows["subject_key"], set(flagged)).to_numpy()
    gone = rows[out]
    exc.append(pd.DataFrame({"identity": gone["identity"].astype("string").map(shown, na_action="ignore"),
                             "source": gone["source"].astype("string"),
                             "reason": QUARANTINE_REASON})[EXCEPTION_COLUMNS])
    return rows[~out].reset_index(drop=True)


def _non_ascii_keys(keys: pd.Series) -> Any:
    text = keys.fillna("")
    return (~text.map(str.isascii).astype(bool) | text.str.contains("xn--", regex=False)).to_numpy()


def _ascii_partners(keys: pd.Series, odd: pd.Series) -> set[str]:
    """The plain keys some odd key could fold to: the ASCII keys equal to an odd key's
    compatibility form (so look_alikes sees each pair without folding every key)."""
    forms = {compat_form(k) for k in odd.dropna()}
    return set(keys[isin(keys, forms).to_numpy()].dropna())


def _time_problems(df: pd.DataFrame, source: str, consequence: str, exc: list[pd.DataFrame],
                   keep: bool) -> pd.DataFrame:
    """Rows whose time is not a time (`times.PROBLEM`) go to the exceptions, naming the
    source, row and column; they stay (`keep`) or are quarantined. The column is dropped."""
    if PROBLEM not in df.columns:
        return df
    problem = df[PROBLEM].astype("string")
    flagged = problem.notna().to_numpy()
    if flagged.any():
        shown_ids = df.loc[flagged, "identity"].astype("string").fillna("").map(shown)
        exc.append(pd.DataFrame({"identity": shown_ids.to_numpy(), "source": source,
                                 "reason": (problem[flagged] + "; " + consequence).to_numpy()},
                                columns=EXCEPTION_COLUMNS))
    out = df.drop(columns=[PROBLEM])
    return out if keep else out[~flagged]


def _source_labels(rows: pd.DataFrame) -> pd.Series:
    """subject_key -> "+"-joined sorted source names, via one bit per source (no per-subject Python)."""
    names = sorted(rows["source"].unique())
    bits = rows["source"].map({n: 1 << i for i, n in enumerate(names)})
    distinct = rows.assign(_b=bits).drop_duplicates(["subject_key", "source"])
    masks = distinct.groupby("subject_key")["_b"].sum()  # distinct bits: the sum is their OR
    labels = {m: "+".join(n for i, n in enumerate(names) if m >> i & 1) for m in masks.unique()}
    return masks.map(labels)


def slice_of(keys: pd.Series, slices: int) -> pd.Series:
    """A stable slice number per subject (for sliced sweeps)."""
    return pd.util.hash_pandas_object(keys.astype(str), index=False).astype("uint64") % max(slices, 1)
