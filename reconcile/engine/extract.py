"""Extract: read Ketch and Braze for the universe into the frames of frames.py.

Braze reads are chosen by identity type (issue: cheapest reads):
* email keys: group states from `subscription/status/get` (50 emails a request), global
  state from the unsubscribe list, and `users/export/ids` (one email a request) only where
  existence must be proven (deletions, tombstones, subjects unknown to every group);
* external_id keys: `users/export/ids` 50 a request, then group states by external_id.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Callable, Iterable

import pandas as pd

from reconcile.config import Config
from reconcile.engine.frames import conform, isin
from reconcile.engine.identity import email_key
from reconcile.errors import FatalApiError, TransientApiError

EXPORT_FIELDS = ["external_id", "braze_id", "email", "email_subscribe", "created_at"]
Progress = Callable[[str, int, int], None]


def braze_lists(braze: Any, start: date, end: date, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(unsubscribed, bounced) frames from Braze's email lists in [start, end]."""
    unsub = pd.DataFrame(list(braze.email_unsubscribes(start, end)) if cfg.universe.braze_unsubscribes else [],
                         columns=["email", "unsubscribed_at"])
    bounced = pd.DataFrame(list(braze.email_hard_bounces(start, end)) if cfg.universe.braze_hard_bounces else [],
                           columns=["email", "hard_bounced_at"])
    for df, col in ((unsub, "unsubscribed_at"), (bounced, "hard_bounced_at")):
        df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="mixed")
        df["email"] = df["email"].astype("string")
    return unsub, bounced


def _latest_by_key(df: pd.DataFrame, col: str) -> pd.Series:
    if not len(df):
        return pd.Series(dtype="datetime64[ns, UTC]")
    keys = df["email"].str.strip().str.casefold()
    return df.assign(_k=keys).groupby("_k")[col].max()


# ----------------------------------------------------------------------------- Ketch


def ketch_frames(records: dict[str, Any], universe: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn KetchRecord objects (keyed by identity) into the ketch and ketch_topics frames."""
    m = cfg.mapping
    rows, topics = [], []
    for key, identity in zip(universe["subject_key"], universe["identity"]):
        rec = records.get(identity)
        if rec is None or not rec.has_record:
            continue
        consent, subs = rec.consent, rec.subscriptions
        controls = subs.controls if subs else {}
        rows.append({
            "subject_key": key, "has_record": True,
            "email_allowed": consent.purposes.get(m.email_purpose) if consent and m.email_purpose else None,
            "global_engaged": controls.get(m.global_control) == m.global_control_engaged,
            "blocklist_engaged": bool(m.blocklist_control) and controls.get(m.blocklist_control) == m.global_control_engaged,
            "consent_collected_at": consent.collected_at if consent else None,
            "subs_collected_at": subs.collected_at if subs else None,
        })
        if subs:
            topics += [{"subject_key": key, "topic": t, "channel": c, "status": s} for (t, c), s in subs.topics.items()]
    return conform(pd.DataFrame(rows), "ketch"), conform(pd.DataFrame(topics), "ketch_topics")


def extract_ketch(ketch: Any, universe: pd.DataFrame, cfg: Config, progress: Progress | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ketch, ketch_topics, failed): identities whose lookup failed after every retry come
    back in `failed` (identity, reason) instead of stopping the run. They must not be read
    as "no record": the caller takes them out of this run and reports them."""
    purposes = {cfg.mapping.email_purpose: cfg.mapping.email_purpose_legal_basis} if cfg.mapping.email_purpose else None
    values = universe["identity"].astype(str).tolist()
    cb = (lambda done, total: progress("ketch", done, total)) if progress else None
    failed: list[dict[str, str]] = []

    def on_error(value: str, exc: Exception) -> None:
        if isinstance(exc, FatalApiError):  # a wrong org code or a refused request fails the run
            raise exc
        failed.append({"identity": value, "reason": f"Ketch lookup failed: {type(exc).__name__}: {exc}"[:300]})

    records = ketch.fetch_many(cfg.identity.ketch_space, values, purposes, progress=cb, on_error=on_error)
    if len(values) >= 10 and len(failed) > len(values) / 2:
        raise TransientApiError(f"Ketch lookups failed for {len(failed)} of {len(values)} subjects (first: "
                                f"{failed[0]['reason']}); not reconciling on partial data", service="ketch")
    ketch_df, topics = ketch_frames(records, universe, cfg)
    return ketch_df, topics, pd.DataFrame(failed, columns=["identity", "reason"])


# ----------------------------------------------------------------------------- Braze


def _groups(braze: Any, universe: pd.DataFrame, cfg: Config, id_col: str) -> pd.DataFrame:
    """Group state per subject and mapped group; identifiers Braze does not know are `unknown`."""
    by_email = cfg.identity.braze_key == "email"
    ids = universe[id_col].astype(str)
    look = ids.str.strip().str.casefold() if by_email else ids
    frames = []
    for m in cfg.mapping.topics:
        if not len(ids):
            break
        kw = {"emails" if by_email else "external_ids": ids.tolist()}
        answer = braze.subscription_status_get(m.subscription_group_id, **kw)
        status = pd.Series({(email_key(k) if by_email else k): v for k, v in answer.items()}, dtype=object)
        frames.append(pd.DataFrame({"subject_key": universe["subject_key"].to_numpy(),
                                    "group_id": m.subscription_group_id,
                                    "status": look.map(status).fillna("unknown").to_numpy()}))
    return conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), "braze_groups")


def _export_emails(braze: Any, emails: Iterable[tuple[str, str]]) -> dict[str, list[dict]]:
    """subject_key -> profiles, one users/export/ids request per email."""
    return {key: braze.export_email(email, EXPORT_FIELDS) for key, email in emails}


def extract_braze_email(braze: Any, universe: pd.DataFrame, unsub: pd.DataFrame, bounced: pd.DataFrame,
                        ketch: pd.DataFrame, cfg: Config, full_window: bool, today: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = _groups(braze, universe, cfg, "identity")
    b = universe[["subject_key", "identity"]].copy()
    b["unsubscribed_at"] = b["subject_key"].map(_latest_by_key(unsub, "unsubscribed_at"))
    if not full_window:
        b = _confirm_old_unsubscribes(braze, b, ketch, cfg, today)
    b["email_subscribe"] = b["unsubscribed_at"].notna().map({True: "unsubscribed", False: "subscribed"})
    b["blocklisted"] = isin(b["subject_key"], _latest_by_key(bounced, "hard_bounced_at").index)
    b["email"] = b["identity"]
    all_unknown = groups.assign(_u=groups["status"].astype(str) == "unknown").groupby("subject_key")["_u"].all()
    prove = universe["deletion_requested"] | universe["tombstoned"] | universe["subject_key"].map(all_unknown).fillna(True).astype(bool)
    proven = _export_emails(braze, zip(universe.loc[prove, "subject_key"], universe.loc[prove, "identity"]))
    b["profile_count"] = b["subject_key"].map(lambda k: len(proven[k]) if k in proven else 1)
    b["exists"] = b["subject_key"].map(lambda k: len(proven[k]) > 0 if k in proven else pd.NA)
    b.loc[b["exists"] == False, "email_subscribe"] = pd.NA  # noqa: E712
    return conform(b.drop(columns=["identity"]), "braze"), groups


def _confirm_old_unsubscribes(braze: Any, b: pd.DataFrame, ketch: pd.DataFrame, cfg: Config, today: date) -> pd.DataFrame:
    """An incremental window misses older unsubscribes: look those up per email before calling them drift."""
    stop = ketch["global_engaged"] | ketch["blocklist_engaged"] | (ketch["email_allowed"] == False).fillna(False)  # noqa: E712
    expect_unsub = ketch[stop]["subject_key"]
    todo = b[isin(b["subject_key"], expect_unsub) & b["unsubscribed_at"].isna()]
    since = date.fromisoformat(cfg.universe.full_since)
    for idx, email in zip(todo.index, todo["identity"]):
        found = [r["unsubscribed_at"] for r in braze.email_unsubscribes(since, today, email=email)]
        if found:
            b.loc[idx, "unsubscribed_at"] = pd.Timestamp(max(found))
    return b


def extract_braze_external(braze: Any, universe: pd.DataFrame, unsub: pd.DataFrame, bounced: pd.DataFrame,
                           cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = universe["identity"].astype(str).tolist()
    result = braze.export_ids(ids, EXPORT_FIELDS)
    users = pd.DataFrame(result.users, columns=EXPORT_FIELDS)
    users = users[users["external_id"].notna()].drop_duplicates("external_id").set_index("external_id")
    b = universe[["subject_key", "identity", "email"]].copy()
    found = isin(b["identity"], users.index)
    b["exists"] = found
    b["profile_count"] = found.astype("int32")
    b["email"] = b["identity"].map(users["email"]).fillna(b["email"])
    b["email_subscribe"] = b["identity"].map(users["email_subscribe"])
    ekeys = b["email"].map(email_key, na_action="ignore")
    b["unsubscribed_at"] = ekeys.map(_latest_by_key(unsub, "unsubscribed_at"))
    b["blocklisted"] = isin(ekeys, _latest_by_key(bounced, "hard_bounced_at").index)
    groups = _groups(braze, universe[found.to_numpy()], cfg, "identity")
    return conform(b.drop(columns=["identity"]), "braze"), groups
