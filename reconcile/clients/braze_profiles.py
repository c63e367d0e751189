"""Every Braze profile of a set of users, with all its group states, from `/subscription/user/status`.

Permission `subscription.groups.get`, shared 250k/h class. Two answer shapes exist
(braze-api.md §2):

* `users[]` (what the live API returns; braze-node's model):
  `{"message": "success", "users": [{"external_id", "email", "phone",
  "subscription_groups": [{"id", "name", "channel", "status"}]}], "total_count": N}`,
  one entry per profile, `limit` (at most 100) and `offset` paging users;
* the documented flat `{"success": true, "subscription_groups": [...]}`, which cannot tell
  the profiles sharing an address apart, nor the users of one request.

`user_profiles_by_email` and `user_profiles_by_external_id` return one `ProfileRef` per
profile for the `users[]` shape, carrying every group state the answer lists for it (one
request reads every group of 50 users), and None for the flat one, so the caller reads
profiles with `/users/export/ids` and group states with `/subscription/status/get` instead.
The client remembers a flat answer: later calls return None without asking again.
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
MAX_IDS = 50
MAX_EMAILS = MAX_IDS
USER_PAGE_LIMIT = 100


@dataclass(frozen=True)
class ProfileRef:
    """One Braze profile of a user asked about: `email` is the address as submitted (by-email
    reads) or the profile's address as Braze answered it (by-external-id reads; None when it
    has none), its external_id (None for a profile without one), its phone as Braze holds
    it, the group states the answer lists for it (group id -> "subscribed" | "unsubscribed"
    | "unknown"; groups never changed are absent) and each listed group's channel."""

    email: str | None
    external_id: str | None
    groups: dict[str, str] = field(default_factory=dict)
    phone: str | None = None
    channels: dict[str, str] = field(default_factory=dict)


class Unattributed(Exception):
    """A `users[]` entry that names no submitted identifier (several were asked for)."""


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def profile_refs(body: Any, endpoint: str, submitted: list[str],
                 id_field: str = "email") -> tuple[list[ProfileRef] | None, int]:
    """ProfileRefs of one `users[]` page and its size; (None, 0) for the flat shape."""
    if isinstance(body, Mapping) and not isinstance(body.get("users"), list) \
            and isinstance(body.get("subscription_groups"), list):
        return None, 0
    users = br.need(body, "users", endpoint, list)
    by_email = id_field == "email"
    keys = br.CaselessKeys(submitted, caseless=by_email)
    refs: list[ProfileRef] = []
    for user in users:
        if not isinstance(user, Mapping):
            raise FatalApiError("a 'users' entry is not an object", service="braze", url=endpoint)
        named = keys.lookup(user.get(id_field)) or (submitted if len(submitted) == 1 else [])
        if not named:
            raise Unattributed()
        listed = br.group_records(user.get("subscription_groups"), None, endpoint)
        groups = {r["group_id"]: r["status"] for r in listed}
        channels = br.group_channels(user.get("subscription_groups"))
        xid, phone = _text(user.get("external_id")), _text(user.get("phone"))
        if by_email:
            refs.extend(ProfileRef(email, xid, dict(groups), phone, dict(channels)) for email in dict.fromkeys(named))
        else:
            refs.extend(ProfileRef(_text(user.get("email")), ident, dict(groups), phone, dict(channels))
                        for ident in dict.fromkeys(named))
    return refs, len(users)


class ProfileReads:
    """Mixed into `BrazeClient`; uses its `pages` and `_call`."""

    _flat_user_status: bool = False

    @property
    def user_status_flat(self) -> bool:
        """Whether `/subscription/user/status` answered in the flat shape this client's life."""
        return self._flat_user_status

    def user_profiles_by_email(self, emails: Iterable[str]) -> list[ProfileRef] | None:
        """One ProfileRef per Braze profile holding each address (50 addresses a request,
        100 users a page), or None when the answer has the flat shape that cannot tell
        profiles apart (then read `/users/export/ids` by `email_address` instead)."""
        return self._user_profiles("email", emails)

    def user_profiles_by_external_id(self, external_ids: Iterable[str]) -> list[ProfileRef] | None:
        """One ProfileRef per external id Braze has a profile for (50 a request), with every
        group state of that profile; ids without a profile are absent. None for the flat shape."""
        return self._user_profiles("external_id", external_ids)

    def _user_profiles(self, id_field: str, idents: Iterable[str]) -> list[ProfileRef] | None:
        if self._flat_user_status:
            return None
        asked = list(dict.fromkeys(idents or ()))
        chunks = [asked[start:start + MAX_IDS] for start in range(0, len(asked), MAX_IDS)]
        refs: list[ProfileRef] = []
        # the first request alone: a flat answer stops the read before any other is sent
        for found in [self._profiles_chunk(id_field, chunks[0])] if chunks else []:
            if found is None:
                self._flat_user_status = True
                return None
            refs.extend(found)
        rest = self._in_order(lambda c: self._profiles_chunk(id_field, c), chunks[1:])  # type: ignore[attr-defined]
        for found in rest:
            if found is None:
                self._flat_user_status = True
                return None
            refs.extend(found)
        return refs

    def _profiles_chunk(self, id_field: str, chunk: list[str]) -> list[ProfileRef] | None:
        try:
            return self._profile_pages(id_field, chunk)
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
            found = self._profiles_chunk(id_field, part)
            if found is None:
                return None
            out.extend(found)
        return out

    def _profile_pages(self, id_field: str, chunk: list[str]) -> list[ProfileRef] | None:
        refs: list[ProfileRef] = []
        params = [(f"{id_field}[]", e) for e in chunk]
        for answer in self.pages(USER_STATUS_PATH, params, USER_PAGE_LIMIT):  # type: ignore[attr-defined]
            page, _ = profile_refs(answer.body, answer.url, chunk, id_field)
            if page is None:
                return None
            refs.extend(page)
        return refs
