"""What one full sweep costs in Braze requests, with and without the optional permissions.

Every read request spends a budget the customer's whole workspace shares (most read
endpoints: 250,000 requests an hour), so `reconcile doctor` shows an admin what a key with
`subscription.groups.get` saves. The figures follow the reads of `profiles.py` and
`extract.py`, per subject of a full sweep, reads only (writes follow the drift found):

* with `subscription.groups.get`: one `/subscription/user/status` per 50 subjects (every
  profile and every group state of 50 addresses or external ids) and one `/users/export/ids`
  per 50 profiles with an external id (each profile's `email_subscribe`); under email keys
  one more export per address holding a profile without an external id. With a bulk segment
  export (`braze.segment_id`, `users.export.segment`, email keys) the exports become one
  export job of the whole workspace.
* with the partner page's eight permissions: one `/users/export/ids` per 50 external ids and
  one `/subscription/status/get` per 50 subjects and mapped group (under email keys also by
  external id for addresses several profiles share). Under email keys the first sweep
  exports every address alone (the endpoint takes one address a request); later sweeps read
  the cached external ids, and every address is enumerated again once per
  `braze.profile_cache_days` cycle, spread evenly over the cycle (a daily sweep pays
  1/profile_cache_days of the addresses, one request each).

Not counted: the address lists (`/email/unsubscribes`, `/email/hard_bounces`: one request
per 500 listed addresses), per-profile group reads of shared addresses, and refused probes
of a missing permission (one per run).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.config import Config

BATCH = 50


@dataclass(frozen=True)
class SweepCost:
    """Braze read requests of one full sweep under one set of permissions: per subject (the
    first sweep's when it differs from later ones) and in total for `subjects` when known."""

    permissions: str
    per_subject: float
    first_per_subject: float
    note: str
    subjects: int | None = None

    def total(self, first: bool = False) -> int | None:
        if self.subjects is None:
            return None
        return round((self.first_per_subject if first else self.per_subject) * self.subjects)


def sweep_costs(cfg: Config, subjects: int | None) -> tuple[SweepCost, SweepCost]:
    """(with every optional permission, with the partner page's eight) for this config's key
    type and mapped groups; `subjects`: the universe of the last full run, when known."""
    groups = len({m.subscription_group_id for m in cfg.mapping.topics})
    email = cfg.identity.braze_key == "email"
    segment = email and bool(cfg.braze.segment_id)
    listed = 1 / BATCH + (0.0 if segment else 1 / BATCH)
    all_note = ("one /subscription/user/status per 50 subjects for every profile and group state, "
                + ("the profiles from one segment export" if segment else
                   "one /users/export/ids per 50 profiles with an external id")
                + ("; plus one export per address holding a profile without an external id" if email and not segment
                   else ""))
    full = SweepCost("all", listed, listed, all_note, subjects)
    groups_read = groups / BATCH
    if email:
        days = cfg.braze.profile_cache_days
        refresh = 1 / days if days > 0 else 1.0
        later = 1 / BATCH + groups_read + refresh
        first = 1.0 + groups_read
        partner_note = (f"/subscription/status/get per 50 subjects for each of {groups} mapped group(s); the first "
                        "sweep exports every address alone, later daily sweeps read cached external ids 50 a request "
                        f"and enumerate 1/{days:g} of the addresses again (braze.profile_cache_days)")
        return full, SweepCost("partner", later, first, partner_note, subjects)
    later = 1 / BATCH + groups_read
    partner_note = (f"one /users/export/ids per 50 subjects and /subscription/status/get per 50 for each of "
                    f"{groups} group(s)")
    return full, SweepCost("partner", later, later, partner_note, subjects)
