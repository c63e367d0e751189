"""The corrections the engine sends, named for what they do; the vendor JSON stays here.

Each method takes plain identifiers and returns a `WriteResult` whose `ok` holds the
identifiers Braze accepted and whose `rejected` holds `(identifier, reason)` pairs for the
ones it refused; `responses` summarise every answered request. Batching (50 ids, the
`/users/track` cap), pacing, splitting and confirmation are `BrazeClient`'s.

    unsubscribe_groups / subscribe_groups   /subscription/status/set by external_id, email or phone
    set_global_state                        /users/track email_subscribe by external_id or braze_id
    delete_profiles                         /users/delete by external_id, braze_id or email
    blocklist_emails                        /email/blocklist
    create_alias_optouts                    /users/track per alias, creating the alias profile

`set_global_state` by `braze_id` reaches exactly one profile: that is how each of several
profiles sharing one address is corrected (`users/track` by email updates only one).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from reconcile.clients import braze_results as br
from reconcile.clients.braze_results import WriteResult

GROUP_ID_TYPES = ("external_id", "email", "phone")
GLOBAL_ID_TYPES = ("external_id", "braze_id")
DELETE_ID_TYPES = ("external_id", "braze_id", "email")
ALIAS_TRACK = "/users/track"


def identifiers(ids: Iterable[Any], what: str) -> list[str]:
    """Distinct non-empty string identifiers, in order; anything else is a ValueError naming `what`."""
    out: list[str] = []
    for position, ident in enumerate(ids or ()):
        if not isinstance(ident, str) or not ident.strip():
            raise ValueError(f"{what}[{position}] is not a non-empty string ({type(ident).__name__}); "
                             "pass identifiers as strings")
        out.append(ident)
    return list(dict.fromkeys(out))


def check_id_type(id_type: str, allowed: Sequence[str], method: str) -> None:
    if id_type not in allowed:
        raise ValueError(f"{method}: id_type {id_type!r} is not one of {', '.join(allowed)}")


def by_identifier(result: WriteResult, key: Callable[[Any], str], endpoint: str | None = None) -> WriteResult:
    """A result whose `ok` / `rejected` name identifiers instead of request items."""
    return WriteResult(endpoint or result.endpoint, requests_sent=result.requests_sent,
                       ok=[key(item) for item in result.ok],
                       rejected=[(key(item), reason) for item, reason in result.rejected],
                       responses=list(result.responses), deleted=result.deleted)


class IntentWrites:
    """Mixed into `BrazeClient`; builds on its batched `subscription_status_set`,
    `users_track`, `users_delete`, `users_alias_new` and `email_blocklist`."""

    def unsubscribe_groups(self, group_id: str, id_type: str, ids: Iterable[str]) -> WriteResult:
        """Unsubscribe the users from one subscription group (50 per request). By email,
        Braze updates every profile holding the address."""
        return self._group_state(group_id, "unsubscribed", id_type, ids, "unsubscribe_groups")

    def subscribe_groups(self, group_id: str, id_type: str, ids: Iterable[str]) -> WriteResult:
        """Subscribe the users to one subscription group (50 per request)."""
        return self._group_state(group_id, "subscribed", id_type, ids, "subscribe_groups")

    def _group_state(self, group_id: str, state: str, id_type: str, ids: Iterable[str], method: str) -> WriteResult:
        check_id_type(id_type, GROUP_ID_TYPES, method)
        if not isinstance(group_id, str) or not group_id.strip():
            raise ValueError(f"{method}: group_id must be the Braze subscription group id (a non-empty string)")
        idents = identifiers(ids, "ids")
        plural = {"external_id": "external_ids", "email": "emails", "phone": "phones"}[id_type]
        result = self.subscription_status_set(group_id, state, **{plural: idents})  # type: ignore[attr-defined]
        return by_identifier(result, str)

    def set_global_state(self, state: str, id_type: str, ids: Iterable[str]) -> WriteResult:
        """Set global `email_subscribe` on existing profiles only (`_update_existing_only`)."""
        br.check_state(state, br.EMAIL_STATES)
        check_id_type(id_type, GLOBAL_ID_TYPES, "set_global_state")
        objects = [{id_type: ident, "email_subscribe": state, "_update_existing_only": True}
                   for ident in identifiers(ids, "ids")]
        result = self.users_track(objects)  # type: ignore[attr-defined]
        return by_identifier(result, lambda obj: obj[id_type])

    def delete_profiles(self, id_type: str, ids: Iterable[str], prioritization: Sequence[str] = ()) -> WriteResult:
        """Queue profiles for deletion (irreversible); by email `prioritization` is required
        and an address still matching several profiles deletes nothing. `deleted` sums
        Braze's counts."""
        check_id_type(id_type, DELETE_ID_TYPES, "delete_profiles")
        plural = {"external_id": "external_ids", "braze_id": "braze_ids", "email": "emails"}[id_type]
        extra = {"prioritization": tuple(prioritization)} if id_type == "email" else {}
        result = self.users_delete(**{plural: identifiers(ids, "ids")}, **extra)  # type: ignore[attr-defined]
        return by_identifier(result, str)

    def blocklist_emails(self, emails: Iterable[str]) -> WriteResult:
        """Unsubscribe each address and mark it hard bounced (50 per request)."""
        return by_identifier(self.email_blocklist(identifiers(emails, "emails")), str)  # type: ignore[attr-defined]

    def create_alias_optouts(self, emails: Iterable[str], alias_label: str) -> WriteResult:
        """An alias-only profile per address (alias name = the address) carrying the opt-out,
        in one `/users/track` object each: `user_alias`, `email`, `email_subscribe:
        unsubscribed` and `_update_existing_only: false`, which creates the alias profile when
        none exists and updates it when one does. No `/users/alias/new` first: Braze asks for
        a delay between the two calls (the new alias may not be visible to `/users/track`
        yet, which would make a second profile for it), and `/users/track` needs none."""
        if not isinstance(alias_label, str) or not alias_label.strip():
            raise ValueError("create_alias_optouts: alias_label must be a non-empty string (e.g. \"ketch_email\")")
        track = self.users_track([  # type: ignore[attr-defined]
            {"user_alias": {"alias_name": e, "alias_label": alias_label}, "email": e,
             "email_subscribe": "unsubscribed", "_update_existing_only": False}
            for e in identifiers(emails, "emails")])
        return by_identifier(track, lambda obj: obj["user_alias"]["alias_name"], ALIAS_TRACK)
