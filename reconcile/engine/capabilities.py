"""Which optional Braze permissions the run's key has, learned by using them.

The partner page's eight permissions are required; the optional ones below buy cheaper
or wider reads. An optional call answered 403 marks its permission missing for the rest
of the run, logs one warning saying what is lost, and the caller takes the fallback.
The run records the result (`as_record()`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from reconcile.errors import PermissionDenied

log = logging.getLogger(__name__)
T = TypeVar("T")

OPTIONAL: dict[str, str] = {
    "email.hard_bounces": "hard-bounced addresses are not read: they do not join the universe, and only "
                          "addresses this job blocklisted itself count as blocklisted (others that must be "
                          "suppressed are blocklisted again)",
    "subscription.groups.get": "group states are read one group a request (subscription/status/get) instead of "
                               "every group of 50 subjects in one, and under email keys profiles sharing an "
                               "address are found by one users/export/ids request per address",
    "users.export.segment": "full sweeps read profiles through users/export/ids instead of one bulk export",
}


@dataclass
class Capabilities:
    """Known state of each optional permission: True (used, granted), False (403), None (not tried)."""

    granted: dict[str, bool | None] = field(default_factory=lambda: {p: None for p in OPTIONAL})

    def available(self, permission: str) -> bool:
        return self.granted.get(permission) is not False

    def call(self, permission: str, fn: Callable[[], T]) -> T | None:
        """Run an optional read; None when the key lacks `permission` (now or earlier this run)."""
        if not self.available(permission):
            return None
        try:
            value = fn()
        except PermissionDenied:
            self.granted[permission] = False
            log.warning("the Braze API key lacks the optional permission %s: %s (see `reconcile doctor`)",
                        permission, OPTIONAL.get(permission, "this read is skipped"))
            return None
        self.granted[permission] = True
        return value

    def as_record(self) -> dict[str, bool | None]:
        return dict(self.granted)

    @classmethod
    def remembered(cls, record: dict[str, bool | None] | None) -> "Capabilities":
        """Start from an earlier run's record: a permission it found missing is not asked
        again (keys cannot gain permissions; a new key is a new config), anything else is
        learned afresh."""
        caps = cls()
        for permission, granted in (record or {}).items():
            if permission in caps.granted and granted is False:
                caps.granted[permission] = False
        return caps
