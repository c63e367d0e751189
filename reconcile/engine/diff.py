"""Pure diff: observed Ketch and Braze state in, drift table out (semantics §3-§4).

No I/O and no clock: `diff(observed, rules)` returns one row per drift item with its
class, the field it concerns, expected vs actual, a reason, and the correcting action
kind ("" when the item is report-only under the configured policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.config import Config, TopicMapping
from reconcile.engine.classes import SEVERITY
from reconcile.engine.frames import DRIFT_COLUMNS, Observed

SUBSCRIBED = ("subscribed", "opted_in")


@dataclass(frozen=True)
class Rules:
    key_type: str = "email"
    topics: tuple[TopicMapping, ...] = ()
    write_back_optouts: bool = False
    apply_optins: bool = False
    alias_unmatched: bool = False
    suppress_deleted_emails: bool = False
    deletion_prioritization: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, cfg: Config) -> "Rules":
        p = cfg.policy
        return cls(cfg.identity.braze_key, cfg.mapping.topics, p.write_back_optouts, p.apply_optins,
                   p.alias_unmatched, p.suppress_deleted_emails, p.deletion_prioritization)


def diff(observed: Observed, rules: Rules) -> pd.DataFrame:
    """The drift table for every subject in the universe."""
    base = _base(observed)
    keys = _Keys.build(base, observed)
    base["_code"] = keys.base
    doomed = base["deletion_requested"] | base["tombstoned"]
    deletions = _deletions(base[doomed], rules)
    kept = base[~doomed]
    parts = [
        deletions,
        _blocklist(base, doomed, rules),
        _global(kept, rules),
        _groups(kept, observed, rules, keys),
        _no_record(kept, keys),
        _unmatched(kept, rules, keys),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in DRIFT_COLUMNS})
    times = ["ketch_collected_at", "braze_unsubscribed_at"]
    out = pd.concat([p.drop(columns=times) for p in parts], ignore_index=True)
    for col in times:
        out[col] = _concat_by_value([p[col] for p in parts])
    out["severity"] = out["drift_class"].map(SEVERITY)
    for col in DRIFT_COLUMNS:
        if col not in out.columns:
            out[col] = pd.NA
    out = out[DRIFT_COLUMNS].sort_values(["subject_key", "drift_class", "field"], kind="stable")
    return out.reset_index(drop=True)


def _concat_by_value(columns: list[pd.Series]) -> pd.Series:
    """`pd.concat(columns, ignore_index=True)` through each column's distinct values: when the
    parts' dtypes differ (tz-aware times and all-NaT parts give object), pandas converts every
    row to a Timestamp object; here only the distinct values are concatenated (same dtypes, so
    the same result dtype) and the rows are taken from them."""
    codes, uniques, offset = [], [], 0
    for col in columns:
        c, u = pd.factorize(col, use_na_sentinel=False)
        codes.append(c + offset)
        uniques.append(pd.Series(u))
        offset += len(u)
    return pd.concat(uniques, ignore_index=True).take(np.concatenate(codes)).reset_index(drop=True)


@dataclass(frozen=True)
class _Keys:
    """subject_key as integer codes in one space for the base, ketch_topics and braze_groups
    rows (factorized once; NA is a code of its own, as merges and `map` match NA to NA), plus
    the per-row facts of those two frames the diff looks up by subject."""

    n: int
    base: npt.NDArray[np.intp]
    topics: npt.NDArray[np.intp]
    groups: npt.NDArray[np.intp]
    topic_denied: npt.NDArray[np.bool_]
    group_subscribed: npt.NDArray[np.bool_]
    group_unsubscribed: npt.NDArray[np.bool_]

    @classmethod
    def build(cls, base: pd.DataFrame, o: Observed) -> "_Keys":
        t, g = o.ketch_topics, o.braze_groups
        both = pd.concat([base["subject_key"], t["subject_key"], g["subject_key"]], ignore_index=True)
        codes, uniques = pd.factorize(both, use_na_sentinel=False)
        codes = codes.astype(np.intp, copy=False)
        nb, nt = len(base), len(t)
        return cls(len(uniques), codes[:nb], codes[nb:nb + nt], codes[nb + nt:], _equals(t["status"], "denied"),
                   _equals(g["status"], "subscribed"), _equals(g["status"], "unsubscribed"))

    def mark(self, codes: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """A per-code flag: True for the given codes."""
        flag = np.zeros(self.n, dtype=bool)
        flag[codes] = True
        return flag


def _equals(s: pd.Series, value: str) -> npt.NDArray[np.bool_]:
    """`s == value` as a numpy bool array, NA never equal."""
    return np.asarray((s == value).fillna(False), dtype=bool)


def _base(o: Observed) -> pd.DataFrame:
    u = o.universe[["subject_key", "identity", "email", "deletion_requested", "tombstoned"]]
    u = u.assign(erase_all=_asked_by_ketch(o.universe))
    k = o.ketch.drop(columns=[c for c in ("identity",) if c in o.ketch.columns])
    b = o.braze.rename(columns={"email": "braze_email"})
    base = u.merge(k, on="subject_key", how="left").merge(b, on="subject_key", how="left")
    for col in ("has_record", "global_engaged", "blocklist_engaged", "exists"):
        base[col] = base[col].fillna(False).astype(bool)
    base["blocklisted"] = base["blocklisted"].astype("boolean")  # NA: the hard-bounce list was not readable
    base["profile_count"] = base["profile_count"].fillna(0).astype("int32")
    base["email"] = base["email"].fillna(base["braze_email"])
    return base


EVERY_PROFILE = "absent (every profile)"  # `expected` of a deletion that reaches each profile by braze_id
ERASE_ALL_SOURCE = "ketch_delete_request"  # ledger/sources.py: a Ketch DeleteRequest named this address


def _asked_by_ketch(universe: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Subjects a Ketch DeleteRequest names: every profile holding the address is erased."""
    if "sources" not in universe.columns or not len(universe):
        return np.zeros(len(universe), dtype=bool)
    labels = universe["sources"].astype("string").fillna("")
    flag = {v: ERASE_ALL_SOURCE in v.split("+") for v in labels.unique()}
    return labels.map(flag).fillna(False).to_numpy(dtype=bool)


def _col(value: Any, n: int) -> Any:
    """A column for `_rows`: a scalar stays a scalar; a Series gives its array (no
    conversion: Arrow strings and tz-aware times are kept as they are)."""
    if isinstance(value, pd.Series):
        return value.array
    return value


def _rows(df: pd.DataFrame, drift_class: str, field: str | pd.Series, expected: Any, actual: Any, reason: Any,
          action: Any) -> pd.DataFrame:
    n = len(df)
    cols = {
        "subject_key": _col(df["subject_key"], n), "identity": _col(df["identity"], n),
        "drift_class": drift_class, "field": _col(field, n), "expected": _col(expected, n),
        "actual": actual if isinstance(actual, str) else actual.astype("string").array,
        "reason": _col(reason, n), "action": _col(action, n),
        "group_id": _col(df["group_id"], n) if "group_id" in df.columns else pd.NA,
        "ketch_collected_at": _col(df["_collected"], n) if "_collected" in df.columns else pd.NaT,
        "braze_unsubscribed_at": _col(df["unsubscribed_at"], n) if "unsubscribed_at" in df.columns else pd.NaT,
    }
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def _deletions(d: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """The deletion drift rows."""
    present = d[d["exists"]]
    ambiguous = (rules.key_type == "email") & (present["profile_count"] > 1) & (not rules.deletion_prioritization) \
        & ~present["erase_all"]
    out = []
    amb = present[ambiguous]
    if len(amb):
        out.append(_rows(amb, "ambiguous_identity", "profile", "absent", "present",
                         "deletion requested but " + amb["profile_count"].astype(str)
                         + " Braze profiles share this email; no deletion prioritization configured", ""))
    act = present[~ambiguous]
    requested = act[act["deletion_requested"]]
    if len(requested):
        why = pd.Series("Ketch deletion request, Braze profile still exists", index=requested.index)
        shared = requested["erase_all"] & (requested["profile_count"] > 1) & (rules.key_type == "email")
        why = why.mask(shared, "Ketch DeleteRequest for this address, " + requested["profile_count"].astype(str)
                       + " Braze profiles hold it: each is deleted by braze_id")
        expected = pd.Series("absent", index=requested.index).mask(shared, EVERY_PROFILE)
        out.append(_rows(requested, "missed_deletion", "profile", expected, "present", why, "delete"))
    back = act[~act["deletion_requested"]]
    if len(back):
        out.append(_rows(back, "resurrected", "profile", "absent", "present",
                         "deleted earlier (tombstone), profile exists again in Braze", "delete"))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _not_blocklisted(base: pd.DataFrame) -> pd.Series:
    """Not known to be on the blocklist. When the hard-bounce list cannot be read (NA), the
    address is not assumed blocklisted, whatever its profiles say (zero profiles is no
    evidence): blocklisting is idempotent, so when unsure it is blocklisted again."""
    known = base["blocklisted"]
    return (known == False).fillna(False) | known.isna()  # noqa: E712


def _blocklist(base: pd.DataFrame, doomed: pd.Series, rules: Rules) -> pd.DataFrame:
    should = (doomed & rules.suppress_deleted_emails) | (base["has_record"] & base["blocklist_engaged"])
    miss = base[should & _not_blocklisted(base) & base["email"].notna()]
    if not len(miss):
        return pd.DataFrame()
    why = miss["blocklist_engaged"].map({True: "Ketch do-not-contact control is active",
                                         False: "deleted subject's email must stay suppressed"})
    return _rows(miss, "missed_blocklist", "blocklist", "blocklisted", "not blocklisted",
                 why + "; email is not on the Braze blocklist", "blocklist")


def _expected_global(b: pd.DataFrame) -> pd.Series:
    allowed = b["email_allowed"].astype("boolean")
    exp = pd.Series(pd.NA, index=b.index, dtype="string")
    exp = exp.mask(b["has_record"] & allowed.fillna(False), "subscribed")
    stop = b["global_engaged"] | b["blocklist_engaged"] | (allowed == False).fillna(False)  # noqa: E712
    exp = exp.mask(b["has_record"] & stop, "unsubscribed")
    return exp


def _optin_conflict(rows: pd.DataFrame, field: str | pd.Series, rules: Rules,
                    subscribe_action: str) -> list[pd.DataFrame]:
    """Ketch granted, Braze unsubscribed: a newer Braze opt-out wins, ties included, and so
    does an opt-out of unknown time (the address is not, or no longer, on Braze's unsubscribe
    list: under one reading of the list an address leaves it once any of its profiles
    re-subscribes), which is never resubscribed whatever the policy."""
    unknown = rows["unsubscribed_at"].isna().to_numpy(dtype=bool)
    newer = unknown | (rows["_collected"].isna() | (rows["unsubscribed_at"] >= rows["_collected"])).fillna(
        False).to_numpy(dtype=bool)
    out = []
    n = rows[newer]
    if len(n):
        why = pd.Series("Braze opt-out (braze_unsubscribed_at) is not older than Ketch's grant; never resubscribed",
                        index=n.index).mask(n["unsubscribed_at"].isna(),
                                            "Braze opt-out of unknown time (the address is not on Braze's unsubscribe "
                                            "list); never resubscribed")
        out.append(_rows(n, "braze_newer_optout", field if isinstance(field, str) else field[newer], "subscribed",
                         "unsubscribed", why, "ketch_writeback" if rules.write_back_optouts else ""))
    m = rows[~newer]
    if len(m):
        out.append(_rows(m, "missed_optin", field if isinstance(field, str) else field[~newer], "subscribed",
                         "unsubscribed", "Ketch granted and is not older than any Braze opt-out",
                         subscribe_action if rules.apply_optins else ""))
    return out


def _global(b: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    b = b.assign(_collected=b["consent_collected_at"], _exp=_expected_global(b))
    out = []
    opt = b[(b["_exp"] == "unsubscribed").fillna(False) & b["email_subscribe"].isin(SUBSCRIBED).fillna(False)]
    if len(opt):
        why = pd.Series("Ketch email purpose is not allowed", index=opt.index)
        why = why.mask(opt["blocklist_engaged"], "Ketch do-not-contact control is active")
        why = why.mask(opt["global_engaged"], "Ketch global unsubscribe control is active")
        out.append(_rows(opt, "missed_optout", "email_subscribe", "unsubscribed", opt["email_subscribe"],
                         why + "; Braze email_subscribe is " + opt["email_subscribe"].astype(str),
                         "global_unsubscribe"))
    conflict = b[(b["_exp"] == "subscribed").fillna(False) & (b["email_subscribe_min"] == "unsubscribed").fillna(False)]
    out += _optin_conflict(conflict, "email_subscribe", rules, "global_subscribe")
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


GROUP_COLUMNS = ["subject_key", "identity", "global_engaged", "blocklist_engaged", "subs_collected_at",
                 "unsubscribed_at"]


def _groups(b: pd.DataFrame, o: Observed, rules: Rules, keys: _Keys) -> pd.DataFrame:
    """Group drift on integer subject codes: per mapping, the Ketch status and the Braze group
    status are per-code arrays, looked up by each record's code; rows come out mapping by
    mapping, in base order within one. A subject with several rows for one group (several
    profiles) is subscribed if any row is, unsubscribed if any row is: one drift item each way."""
    rec = b.loc[b["has_record"], GROUP_COLUMNS + ["_code"]]
    if not rules.topics or not len(rec):
        return pd.DataFrame()
    g = o.braze_groups
    group_ids = g["group_id"]
    code = rec["_code"].to_numpy(np.intp)
    engaged = (rec["global_engaged"] | rec["blocklist_engaged"]).to_numpy(bool)
    t = o.ketch_topics
    opt_pos, opt_gid, con_pos, con_gid = [], [], [], []
    for m in rules.topics:
        in_group = _equals(group_ids, m.subscription_group_id)
        gc = keys.groups[in_group]
        granted, denied = _topic_status(t, m, keys)
        sub = keys.mark(gc[keys.group_subscribed[in_group]])[code]
        unsub = keys.mark(gc[keys.group_unsubscribed[in_group]])[code]
        exp_unsub = denied[code] | engaged
        exp_sub = granted[code] & ~exp_unsub
        opt = np.flatnonzero(exp_unsub & sub)
        con = np.flatnonzero(exp_sub & unsub)
        opt_pos.append(opt)
        con_pos.append(con)
        opt_gid.append(np.full(len(opt), m.subscription_group_id, dtype=object))
        con_gid.append(np.full(len(con), m.subscription_group_id, dtype=object))
    out = []
    pos = np.concatenate(opt_pos)
    if len(pos):
        r = _group_rows(rec, pos, np.concatenate(opt_gid))
        why = np.empty(len(pos), dtype=object)
        start = 0
        for m, p in zip(rules.topics, opt_pos):
            label = f"{m.topic}/{m.channel}" if m.channel else m.topic
            why[start:start + len(p)] = np.where(
                engaged[p], "Ketch global unsubscribe or do-not-contact control is active",
                f"Ketch {label} is denied") + f"; Braze group {m.subscription_group_id} is subscribed"
            start += len(p)
        out.append(_rows(r, "missed_optout", pd.Series("group", index=r.index), "unsubscribed", "subscribed",
                         pd.Series(why, index=r.index), "group_unsubscribe"))
    pos = np.concatenate(con_pos)
    c = _group_rows(rec, pos, np.concatenate(con_gid))
    sms = np.concatenate([np.full(len(p), m.sms, dtype=bool) for m, p in zip(rules.topics, con_pos)])
    e = c[~sms].reset_index(drop=True)
    out += _optin_conflict(e, pd.Series("group", index=e.index), rules, "group_subscribe")
    out += _sms_stops(c[sms].reset_index(drop=True), rules)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _sms_stops(rows: pd.DataFrame, rules: Rules) -> list[pd.DataFrame]:
    """Ketch granted an SMS topic, Braze has the number unsubscribed. Braze keeps no time for
    an SMS opt-out (a STOP reply sets it), so it cannot be shown older than Ketch's grant:
    it is never resubscribed, whatever `apply_optins` says, and goes back to Ketch as the
    topic's SMS channel denied when write-back is on."""
    if not len(rows):
        return []
    # the address's email unsubscribe time says nothing about SMS
    rows = rows.assign(unsubscribed_at=pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]"))
    return [_rows(rows, "braze_newer_optout", pd.Series("group", index=rows.index), "subscribed", "unsubscribed",
                  "Braze SMS opt-out of unknown time (a STOP reply keeps none); never resubscribed",
                  "ketch_writeback" if rules.write_back_optouts else "")]


def _group_rows(rec: pd.DataFrame, pos: npt.NDArray[np.intp], group_id: npt.NDArray[np.object_]) -> pd.DataFrame:
    r = rec.iloc[pos].reset_index(drop=True)
    return r.assign(group_id=group_id, _collected=r["subs_collected_at"])


def _topic_status(t: pd.DataFrame, m: TopicMapping, keys: _Keys) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per subject code for one mapping: (Ketch status is granted, is denied). The exact
    channel's rows count, else the flat topic's (no channel); a denied row wins, otherwise the
    first row's status holds."""
    rows = _equals(t["topic"], m.topic)
    if m.channel is not None:
        exact = rows & _equals(t["channel"], m.channel)
        flat = rows & t["channel"].isna().to_numpy(bool)
        rows = exact | (flat & ~keys.mark(keys.topics[exact])[keys.topics])
    idx = np.flatnonzero(rows)
    code = keys.topics[idx]
    denied = keys.mark(code[keys.topic_denied[idx]])
    first_codes, first = np.unique(code, return_index=True)
    granted = np.zeros(keys.n, dtype=bool)
    granted[first_codes] = _equals(t["status"].iloc[idx[first]], "granted")
    return granted & ~denied, denied


def _no_record(b: pd.DataFrame, keys: _Keys) -> pd.DataFrame:
    groups_on = keys.mark(keys.groups[keys.group_subscribed])[b["_code"].to_numpy()]
    on = b["email_subscribe"].isin(SUBSCRIBED).fillna(False) | groups_on
    r = b[~b["has_record"] & on & b["exists"]]
    if not len(r):
        return pd.DataFrame()
    return _rows(r, "no_consent_record", "consent", "no opinion", "subscribed",
                 "Braze subscribed but Ketch has no consent record; reported, never unsubscribed", "")


def _unmatched(b: pd.DataFrame, rules: Rules, keys: _Keys) -> pd.DataFrame:
    r = b[b["has_record"] & (b["exists"] == False).fillna(False)]  # noqa: E712
    if not len(r):
        return pd.DataFrame()
    optout = _expected_global(r) == "unsubscribed"
    denied = keys.mark(keys.topics[keys.topic_denied])[r["_code"].to_numpy()]
    optout = optout.fillna(False) | denied
    action = optout.map({True: "alias_optout" if rules.alias_unmatched else "", False: ""})
    return _rows(r, "unmatched", "profile", "present", "absent",
                 "Ketch has a record but no Braze profile matches this identity", action)
