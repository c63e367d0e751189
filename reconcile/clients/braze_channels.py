"""Which channel each subscription group is, as Braze says, from `/subscription/user/status`.

Permission `subscription.groups.get`. The `users[]` answer (braze-api.md §2) lists, per
profile, each group it has a state in with the group's `channel` (`email`, `sms`, ...);
the documented flat answer carries no channel, so it tells nothing here. Only groups some
sampled profile has a state in can be named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconcile.clients import braze_results as br
from reconcile.clients.braze_profiles import USER_PAGE_LIMIT, USER_STATUS_PATH

MAX_IDS = 50


def group_channels(client: Any, id_field: str, ids: Iterable[str]) -> dict[str, str]:
    """group id -> channel (lower case) for the groups the given users' answers name; one
    request of at most 50 identifiers (`id_field`: external_id, email or phone); none when
    the client already saw the flat answer, which names no channel."""
    chunk = list(dict.fromkeys(ids))[:MAX_IDS]
    if not chunk or getattr(client, "user_status_flat", False):
        return {}
    out: dict[str, str] = {}
    params = [(f"{id_field}[]", i) for i in chunk]
    for answer in client.pages(USER_STATUS_PATH, params, USER_PAGE_LIMIT):
        body = answer.body
        users = body.get("users") if isinstance(body, Mapping) else None
        for user in users if isinstance(users, list) else []:
            out.update(br.group_channels(user.get("subscription_groups") if isinstance(user, Mapping) else None))
        if not isinstance(users, list):
            break
    return out
