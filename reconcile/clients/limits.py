"""Which endpoint each correction kind uses and how many targets one request may carry.

The planner batches at these limits; the client enforces the same numbers (and splits
further when a contract's limit is lower, e.g. 50 objects per `/users/track`).
"""

from __future__ import annotations

from reconcile.models.plan import ActionKind

MAX_IDS = 50  # ids, emails or aliases per Braze request
MAX_TRACK_OBJECTS = 75  # attribute objects per /users/track request

ENDPOINT: dict[ActionKind, str] = {
    ActionKind.GROUP_UNSUBSCRIBE: "/subscription/status/set",
    ActionKind.GLOBAL_UNSUBSCRIBE: "/users/track",
    ActionKind.BLOCKLIST: "/email/blocklist",
    ActionKind.DELETE: "/users/delete",
    ActionKind.KETCH_WRITEBACK: "ketch:/subscriptions/update",
    ActionKind.ALIAS_OPTOUT: "/users/track",  # creates the alias profile itself: no /users/alias/new race
    ActionKind.GROUP_SUBSCRIBE: "/subscription/status/set",
    ActionKind.GLOBAL_SUBSCRIBE: "/users/track",
}


def batch_limit(kind: ActionKind, track_batch_size: int) -> int:
    """Targets per request for `kind`."""
    track = max(1, min(track_batch_size, MAX_TRACK_OBJECTS))
    if kind in (ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE):
        return track
    if kind is ActionKind.ALIAS_OPTOUT:  # one track object per alias profile, at most 50 a batch as before
        return min(MAX_IDS, track)
    return MAX_IDS
