"""SMS subscription groups: who they are addressed by, and their state per subject.

Braze takes only `phone` (E.164) or `external_id` for an SMS group: an email identifier is
refused with a 400 (braze-api.md §2-§3). So:

* with `external_id` keys an SMS group is read and written by the subject's external id,
  like any group;
* with `email` keys each Braze profile of the subject's address is addressed on its own:
  by its phone (from the exports, normalised to E.164) when `identity.phone_sources` has
  "braze", else by its external id; with "universe", the identity list's phone
  (`universe.phone_column`) too, for a subject that has a Braze profile. A profile with
  neither cannot be reached and is left as it is.

A subject is subscribed to an SMS group when any of its numbers or profiles is, as for its
email groups. SMS state in Braze is kept per phone number: a profile whose number changes
keeps its states (a new number inherits them; a number already in the workspace brings its
own), so reading by the number is reading what Braze will send to.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reconcile.clients.braze_channels import group_channels
from reconcile.config import Config, TopicMapping
from reconcile.engine.frames import conform, isin
from reconcile.engine.phones import normalize_phones

ADDRESS_COLUMNS = ["subject_key", "id_type", "value"]
RANK = {"subscribed": 2, "unsubscribed": 1}


def sms_topics(cfg: Config) -> tuple[TopicMapping, ...]:
    return tuple(m for m in cfg.mapping.topics if m.sms)


def email_topics(cfg: Config) -> tuple[TopicMapping, ...]:
    return tuple(m for m in cfg.mapping.topics if not m.sms)


def profile_phones(profiles: pd.DataFrame, region: str) -> pd.Series:
    """Each profile's phone in E.164 (NA when it has none or Braze holds a malformed one)."""
    if "phone" not in profiles.columns or not len(profiles):
        return pd.Series(pd.NA, index=profiles.index, dtype="string")
    phones, _bad = normalize_phones(profiles["phone"], region)
    return phones


def sms_addresses(universe: pd.DataFrame, profiles: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """subject_key, id_type ("phone" | "external_id"), value: how each subject's SMS group
    state is read and written. Empty for `external_id` keys (the subject's key is used)."""
    ident = cfg.identity
    if ident.braze_key != "email" or not len(profiles):
        return pd.DataFrame({c: pd.Series(dtype="string") for c in ADDRESS_COLUMNS})
    phones = profile_phones(profiles, ident.phone_region) if "braze" in ident.phone_sources \
        else pd.Series(pd.NA, index=profiles.index, dtype="string")
    by_phone = phones.notna().to_numpy()
    xid = profiles["external_id"].astype("string")
    parts = [
        pd.DataFrame({"subject_key": profiles["subject_key"][by_phone], "id_type": "phone",
                      "value": phones[by_phone]}),
        pd.DataFrame({"subject_key": profiles["subject_key"][~by_phone & xid.notna().to_numpy()],
                      "id_type": "external_id", "value": xid[~by_phone & xid.notna().to_numpy()]}),
    ]
    if "universe" in ident.phone_sources and "phone" in universe.columns:
        held = isin(universe["subject_key"], profiles["subject_key"]).to_numpy() & universe["phone"].notna().to_numpy()
        parts.append(pd.DataFrame({"subject_key": universe["subject_key"][held], "id_type": "phone",
                                   "value": universe["phone"][held]}))
    out = pd.concat(parts, ignore_index=True).astype("string")
    return out.drop_duplicates().sort_values(ADDRESS_COLUMNS, kind="stable").reset_index(drop=True)


def read_sms_groups(braze: Any, topics: tuple[TopicMapping, ...], addresses: pd.DataFrame) -> pd.DataFrame:
    """The braze_groups rows of the SMS groups for subjects addressed by `addresses`: per
    group `subscription/status/get` by phone and by external id (50 a request, never by
    email); a subject is subscribed if any of its addresses is, else unsubscribed if any is."""
    frames = []
    for m in topics:
        for id_type, kwarg in (("phone", "phones"), ("external_id", "external_ids")):
            rows = addresses[(addresses["id_type"] == id_type).fillna(False).to_numpy()]
            if not len(rows):
                continue
            answer = braze.subscription_status_get(m.subscription_group_id,
                                                   **{kwarg: rows["value"].astype(str).tolist()})
            status = pd.Series(answer, dtype=object)
            frames.append(pd.DataFrame({"subject_key": rows["subject_key"].to_numpy(),
                                        "group_id": m.subscription_group_id,
                                        "status": rows["value"].astype(str).map(status).fillna("unknown").to_numpy()}))
    if not frames:
        return conform(pd.DataFrame(), "braze_groups")
    both = pd.concat(frames, ignore_index=True)
    rank = both["status"].astype(str).map(RANK).fillna(0)
    best = both.assign(_r=rank).sort_values("_r", ascending=False, kind="stable")
    return conform(best.drop_duplicates(["subject_key", "group_id"]).drop(columns="_r"), "braze_groups")


def subject_phones(universe: pd.DataFrame, profiles: pd.DataFrame, cfg: Config) -> pd.Series:
    """subject_key -> one E.164 number: the identity list's, else the first of its Braze
    profiles' (what an SMS opt-out written back to Ketch names in `identity.ketch_phone_space`)."""
    listed = universe.set_index("subject_key")["phone"].dropna() if "phone" in universe.columns \
        else pd.Series(dtype="string")
    held = profile_phones(profiles, cfg.identity.phone_region)
    braze = pd.Series(held.to_numpy(), index=profiles["subject_key"].to_numpy(), dtype="string").dropna() \
        if len(profiles) else pd.Series(dtype="string")
    braze = braze[~braze.index.duplicated()]
    out: pd.Series = pd.concat([listed, braze[~braze.index.isin(listed.index)]]).astype("string")
    return out


def channel_mismatches(cfg: Config, channels: dict[str, str]) -> list[str]:
    """Each mapped group whose channel Braze names differently from the mapping, as a
    sentence naming the key to fix."""
    out = []
    for i, m in enumerate(cfg.mapping.topics):
        braze = channels.get(m.subscription_group_id)
        mapped = m.channel or "email"
        if braze is not None and braze != mapped:
            out.append(f"mapping.topics[{i}]: group {m.subscription_group_id} (topic {m.topic!r}) is mapped as "
                       f"{mapped} but Braze says it is an {braze} group; set mapping.topics[{i}].channel = "
                       f"\"{braze}\" or map the topic's {mapped} channel to an {mapped} group")
    return out


def check_channels(braze: Any, caps: Any, cfg: Config, id_field: str, ids: list[str]) -> list[str]:
    """With `subscription.groups.get`: the mismatches between the mapping and Braze's
    channels of the groups a sample of users (`ids`, at most 50) has a state in; [] when the
    key lacks the permission or the sample names no mapped group."""
    if not ids or not cfg.mapping.topics:
        return []
    channels = caps.call("subscription.groups.get", lambda: group_channels(braze, id_field, ids))
    return channel_mismatches(cfg, channels or {})


def invalid_profile_phones(universe: pd.DataFrame, profiles: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Exceptions (identity, source, reason) for Braze profiles whose `phone` is not a valid
    number, when those numbers address SMS groups (email keys, `phone_sources` "braze"):
    such a profile is reached by its external id, or not at all, and the number is never
    sent to Braze."""
    columns = ["identity", "source", "reason"]
    ident = cfg.identity
    if ident.braze_key != "email" or "braze" not in ident.phone_sources or not sms_topics(cfg) \
            or not len(profiles) or "phone" not in profiles.columns:
        return pd.DataFrame(columns=columns)
    _phones, bad = normalize_phones(profiles["phone"], ident.phone_region)
    if not len(bad):
        return pd.DataFrame(columns=columns)
    rows = profiles.loc[bad.index]
    who = rows["subject_key"].map(universe.set_index("subject_key")["identity"]).fillna(rows["subject_key"])
    how = rows["external_id"].notna().map({True: "its SMS groups are read and written by its external id",
                                           False: "its SMS groups cannot be reached"})
    reason = ("Braze profile " + rows["braze_id"].astype(str) + ": phone " + bad["identity"].astype(str) + ": "
              + bad["reason"].astype(str) + "; " + how)
    return pd.DataFrame({"identity": who.astype(str), "source": "braze_profiles", "reason": reason})[columns]
