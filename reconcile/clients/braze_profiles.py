"""Every Braze profile sharing an address, from `/subscription/user/status` by email.

Permission `subscription.groups.get`, shared 250k/h class. Two answer shapes exist
(braze-api.md §2):

* `users[]` (what the live API returns; braze-node's model):
  `{"message": "success", "users": [{"external_id", "email", "phone",
  "subscription_groups": [{"id", "name", "channel", "status"}]}], "total_count": N}`,
  one entry per profile, `limit` (at most 100) and `offset` paging users;
* the documented flat `{"success": true, "subscription_groups": [...]}`, which cannot tell
  the profiles sharing an address apart.

`user_profiles_by_email` returns one `ProfileRef` per profile for the `users[]` shape and
None for the flat one, so the caller falls back to `/users/export/ids` by email.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from reconcile.clients import braze_results as br
from reconcile.errors import AuthError, FatalApiError, PermissionDenied

USER_STATUS_PATH = "/subscription/user/status"
# What the job reads of each profile (`/users/export/ids`, `/users/export/segment`); the fast
# export class applies because neither campaigns_received nor canvases_received is asked for.
PROFILE_FIELDS = ("external_id", "braze_id", "email", "email_subscribe")
MAX_EMAILS = 50
USER_PAGE_LIMIT = 100


@dataclass(frozen=True)
class ProfileRef:
    """One Braze profile holding an address: the address as submitted, its external_id
    (None for a profile without one) and the group states the answer lists for it
    (group id -> "subscribed" | "unsubscribed" | "unknown"; groups never changed are absent)."""

    email: str
    external_id: str | None
    groups: dict[str, str] = field(default_factory=dict)


class Unattributed(Exception):
    """A `users[]` entry that names no submitted address (several were asked for)."""


def profile_refs(body: Any, endpoint: str, submitted: list[str]) -> tuple[list[ProfileRef] | None, int]:
    """ProfileRefs of one `users[]` page and its size; (None, 0) for the flat shape."""
    if isinstance(body, Mapping) and not isinstance(body.get("users"), list) \
            and isinstance(body.get("subscription_groups"), list):
        return None, 0
    users = br.need(body, "users", endpoint, list)
    keys = br.CaselessKeys(submitted, caseless=True)
    refs: list[ProfileRef] = []
    for user in users:
        if not isinstance(user, Mapping):
            raise FatalApiError("a 'users' entry is not an object", service="braze", url=endpoint)
        emails = keys.lookup(user.get("email")) or (submitted if len(submitted) == 1 else [])
        if not emails:
            raise Unattributed()
        groups = {r["group_id"]: r["status"] for r in br.group_records(user.get("subscription_groups"), None, endpoint)}
        xid = user.get("external_id")
        refs.extend(ProfileRef(email, None if xid in (None, "") else str(xid), dict(groups))
                    for email in dict.fromkeys(emails))
    return refs, len(users)


class ProfileReads:
    """Mixed into `BrazeClient`; uses its `pages` and `_call`."""

    def user_profiles_by_email(self, emails: Iterable[str]) -> list[ProfileRef] | None:
        """One ProfileRef per Braze profile holding each address (50 addresses a request,
        100 users a page), or None when the answer has the flat shape that cannot tell
        profiles apart (then read `/users/export/ids` by `email_address` instead)."""
        refs: list[ProfileRef] = []
        addresses = list(dict.fromkeys(emails or ()))
        for start in range(0, len(addresses), MAX_EMAILS):
            found = self._profiles_chunk(addresses[start:start + MAX_EMAILS])
            if found is None:
                return None
            refs.extend(found)
        return refs

    def _profiles_chunk(self, chunk: list[str]) -> list[ProfileRef] | None:
        try:
            return self._profile_pages(chunk)
        except Unattributed:
            pass
        except FatalApiError as exc:
            if isinstance(exc, (AuthError, PermissionDenied)) or not br.is_user_not_found(exc.body):
                raise
        if len(chunk) == 1:
            return []
        out: list[ProfileRef] = []
        half = len(chunk) // 2
        for part in (chunk[:half], chunk[half:]):
            found = self._profiles_chunk(part)
            if found is None:
                return None
            out.extend(found)
        return out

    def _profile_pages(self, chunk: list[str]) -> list[ProfileRef] | None:
        refs: list[ProfileRef] = []
        params = [("email[]", e) for e in chunk]
        for answer in self.pages(USER_STATUS_PATH, params, USER_PAGE_LIMIT):  # type: ignore[attr-defined]
            page, _ = profile_refs(answer.body, answer.url, chunk)
            if page is None:
                return None
            refs.extend(page)
        return refs
