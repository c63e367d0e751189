"""Ketch's side of the webhooks: Forwarder messages (ketch-api.md §3.3) as Ketch sends them.

Ketch's webhook set-up lets an admin choose the header name and the value that carry the
secret, and a DeleteRequest names its subject through whatever identities the tenant's
set-up captured. Each reading the docs leave open is a constructor option, so tests can
send what a real tenant might:

* `auth_header` (default `Authorization`) and `auth_value` (a template with `{token}`:
  `"Bearer {token}"` by default, `"{token}"` for a token without a scheme);
* `delete_identity`: `"identities"` (the subject's identity in `identities[]` and its email
  in `subject.email`) or `"email_only"` (only `subject.email`; `identities[]` names a space
  the reconciler does not key on, such as a cookie id);
* `timestamps`: `"both"` (`submittedTimestamp` and `dueTimestamp`) or `"none"`;
* `topic_shape`: a SubscriptionTopicRequest's topics as `"channels"` (`{topic: {channel:
  {status}}}`, the Web API's shape) or `"contact_methods"` (`{topic: {status,
  contactMethods: [channel, ...]}}`, one status for the channels listed).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import httpx

DSR_KINDS = ("DeleteRequest", "AccessRequest", "CorrectionRequest", "RestrictProcessingRequest")


@dataclass(frozen=True)
class KetchWebhooks:
    """Sends Forwarder messages to one webhook URL (loopback in tests)."""

    url: str
    token: str
    auth_header: str = "Authorization"
    auth_value: str = "Bearer {token}"
    delete_identity: str = "identities"
    timestamps: str = "both"
    topic_shape: str = "channels"
    tenant: str = "acme"
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.delete_identity not in ("identities", "email_only"):
            raise ValueError(f"delete_identity must be identities or email_only, got {self.delete_identity!r}")
        if self.timestamps not in ("both", "none"):
            raise ValueError(f"timestamps must be both or none, got {self.timestamps!r}")
        if self.topic_shape not in ("channels", "contact_methods"):
            raise ValueError(f"topic_shape must be channels or contact_methods, got {self.topic_shape!r}")
        if "{token}" not in self.auth_value:
            raise ValueError("auth_value must contain {token}")

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", self.auth_header: self.auth_value.format(token=self.token)}

    def dsr(self, kind: str, *, email: str, space: str = "email", value: str | None = None,
            callbacks: list[dict[str, Any]] | None = None, uid: str | None = None) -> dict[str, Any]:
        """A DSR message for a subject: `value` in identity space `space` (default the email)."""
        if kind not in DSR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DSR_KINDS)}, got {kind!r}")
        now = int(self.clock())
        if self.delete_identity == "email_only":
            cookie = uuid.uuid4().hex
            ids = [{"identitySpace": "swb_website_smart_tag", "identityFormat": "raw", "identityValue": cookie}]
        else:
            ids = [{"identitySpace": space, "identityFormat": "raw", "identityValue": value or email}]
        request: dict[str, Any] = {
            "controller": self.tenant, "property": "web", "environment": "production", "regulation": "gdpr",
            "jurisdiction": "eugdpr", "identities": ids, "callbacks": callbacks or [],
            "subject": {"email": email, "firstName": "Test", "lastName": "Subject", "countryCode": "US"},
            "context": {}}
        if self.timestamps == "both":
            request.update(submittedTimestamp=now - 60, dueTimestamp=now + 30 * 86400)
        return {"apiVersion": "dsr/v1", "kind": kind,
                "metadata": {"uid": uid or str(uuid.uuid4()), "tenant": self.tenant}, "request": request}

    def _change(self, kind: str, api_version: str, space: str, value: str, body: dict[str, Any],
                uid: str | None) -> dict[str, Any]:
        request = {"controller": self.tenant, "property": "web", "environment": "production",
                   "identities": [{"identitySpace": space, "identityFormat": "raw", "identityValue": value}], **body}
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"uid": uid or str(uuid.uuid4()), "tenant": self.tenant}, "request": request}

    def consent(self, value: str, purposes: dict[str, bool], *, space: str = "email",
                collected_at: int | None = None, uid: str | None = None) -> dict[str, Any]:
        """A ConsentRequest: the purposes a person just chose (code -> allowed)."""
        return self._change("ConsentRequest", "consent/v1", space, value, {
            "regulation": "gdpr", "jurisdiction": "default",
            "purposes": {c: "granted" if a else "denied" for c, a in purposes.items()},
            "collectedAt": int(self.clock()) if collected_at is None else collected_at}, uid)

    def topics(self, value: str, topics: dict[str, dict[str, str]], *, space: str = "email",
               submitted_at: int | None = None, uid: str | None = None) -> dict[str, Any]:
        """A SubscriptionTopicRequest: topic -> {channel: status}."""
        if self.topic_shape == "contact_methods":
            shaped: dict[str, Any] = {}
            for t, chans in topics.items():
                if len(set(chans.values())) != 1:
                    raise ValueError(f"topic {t}: the contactMethods shape carries one status for all its channels")
                shaped[t] = {"status": next(iter(chans.values())), "contactMethods": list(chans)}
        else:
            shaped = {t: {ch: {"status": st} for ch, st in chans.items()} for t, chans in topics.items()}
        return self._change("SubscriptionTopicRequest", "subscription/v1", space, value, {
            "topics": shaped,
            "submittedTimestamp": int(self.clock()) if submitted_at is None else submitted_at}, uid)

    def controls(self, value: str, controls: dict[str, str], *, space: str = "email",
                 submitted_at: int | None = None, uid: str | None = None) -> dict[str, Any]:
        """A SubscriptionControlRequest: control code -> status."""
        return self._change("SubscriptionControlRequest", "subscription/v1", space, value, {
            "controls": {c: {"status": st} for c, st in controls.items()},
            "submittedTimestamp": int(self.clock()) if submitted_at is None else submitted_at}, uid)

    def send(self, doc: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url, json=doc, headers=self.headers(), timeout=10)
