"""`reconcile doctor`: can this job's configuration work? Checked with harmless requests only.

* Braze: which endpoints the REST API key may call (`reconcile.clients.braze_probe`).
* Ketch: one `consent/get` and one `subscriptions/get` for a synthetic identity with the
  configured organization and property codes.
* State database: opened (and migrated) at the configured URL.
* Cost: the Braze read requests of one full sweep, with and without the optional
  permissions (`engine/costs.py`), per subject and for the last full run's universe.

`run_doctor(cfg)` returns a `DoctorReport`; `checks()` is its JSON form, `exit_code()`
is 0 when every required permission is granted and everything is reachable, else 1.
With `[sandbox] enabled = true` the clients talk in-process to the seeded simulators,
whose saved state is left untouched.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

from reconcile.clients.braze import BrazeClient
from reconcile.clients.braze_probe import GRANTED, NOT_GRANTED, PROBE_EMAIL, ProbeResult, probe_braze
from reconcile.clients.pacing import RetryPolicy
from reconcile.config import Config, braze_api_key, state_url
from reconcile.engine.costs import SweepCost, sweep_costs
from reconcile.errors import (
    ApiError,
    ConfigError,
    DataError,
    ExitCode,
    FatalApiError,
    NotFound,
    ReconcileError,
    TransientApiError,
)
from reconcile.redact import redact_text, sanitize_url

OK, FAILED = "ok", "failed"
ACCEPTED, UNAUTHORIZED, UNREACHABLE, MISSING = "accepted", "unauthorized", "unreachable", "missing"
REACHABLE, WRONG_ORG, REFUSED = "reachable", "wrong organization", "refused"
NEW_KEY_FIX = ("create a new REST API key with the missing permissions (a key's permissions cannot be edited) "
               "and put it in the variable named by braze.api_key_env")


@dataclass(frozen=True)
class Outcome:
    """One non-permission check: its status, whether it passes, and what it found or what to fix."""

    status: str
    ok: bool
    detail: str


@dataclass
class DoctorReport:
    braze_endpoint: str
    key: Outcome
    permissions: list[ProbeResult]
    ketch: Outcome
    store: Outcome
    notes: list[str] = field(default_factory=list)
    channels: Outcome | None = None  # mapped groups' channels against Braze's (subscription.groups.get)
    groups: Outcome | None = None  # each mapped group asked of /subscription/status/get
    costs: tuple[SweepCost, SweepCost] | None = None  # one full sweep with every optional permission, with the eight

    def problems(self) -> list[str]:
        """Everything that makes the job unable to work, each naming what to fix."""
        out = [] if self.key.ok else [f"Braze key {self.key.status}: {self.key.detail}"]
        if self.key.ok:
            out += [f"required permission {r.spec.permission} ({r.spec.endpoint}) is {r.status}: "
                    f"{r.spec.lost_without}; fix: {NEW_KEY_FIX}"
                    for r in self.permissions if r.spec.required and r.status != GRANTED]
        if not self.ketch.ok:
            out.append(f"Ketch {self.ketch.status}: {self.ketch.detail}")
        if not self.store.ok:
            out.append(f"state database {self.store.status}: {self.store.detail}")
        if self.groups is not None and not self.groups.ok:
            out.append(f"subscription groups {self.groups.status}: {self.groups.detail}")
        if self.channels is not None and not self.channels.ok:
            out.append(f"subscription group channels {self.channels.status}: {self.channels.detail}")
        return out

    def warnings(self) -> list[str]:
        """One line per optional permission that is not granted, then the notes."""
        lines = [] if not self.key.ok else [
            f"optional permission {r.spec.permission} ({r.spec.endpoint}) is {r.status}: {r.spec.lost_without}"
            for r in self.permissions if not r.spec.required and r.status != GRANTED]
        return lines + self.notes

    def exit_code(self) -> int:
        return ExitCode.ERROR if self.problems() else ExitCode.OK

    def checks(self) -> list[dict[str, Any]]:
        """Every check as a plain dict (the `--format json` output)."""
        out: list[dict[str, Any]] = [{"check": "braze.key", "endpoint": self.braze_endpoint, **_plain(self.key)}]
        for r in self.permissions:
            out.append({"check": "braze.permission", "endpoint": r.spec.endpoint, "method": r.spec.method,
                        "permission": r.spec.permission, "required": r.spec.required, "status": r.status,
                        "ok": r.status == GRANTED or not r.spec.required, "http_status": r.http_status,
                        "detail": r.detail, "lost_without": r.spec.lost_without})
        if self.groups is not None:
            out.append({"check": "braze.groups", **_plain(self.groups)})
        if self.channels is not None:
            out.append({"check": "braze.group_channels", **_plain(self.channels)})
        if self.costs is not None:
            out.append({"check": "braze.sweep_cost", "status": "info", "ok": True, "detail": self.cost_text(),
                        "subjects": self.costs[0].subjects,
                        **{c.permissions: {"requests_per_subject": round(c.per_subject, 4),
                                           "first_sweep_requests_per_subject": round(c.first_per_subject, 4),
                                           "requests": c.total(), "first_sweep_requests": c.total(first=True),
                                           "reads": c.note} for c in self.costs}})
        out.append({"check": "ketch", **_plain(self.ketch)})
        out.append({"check": "state", **_plain(self.store)})
        return out


    def granted(self, permission: str) -> bool | None:
        """Whether the key has `permission` (None when it was not probed)."""
        found = next((r for r in self.permissions if r.spec.permission == permission), None)
        return None if found is None else found.status == GRANTED

    def cost_lines(self) -> list[str]:
        """The cost of one full sweep, one line per set of permissions."""
        if self.costs is None:
            return []
        full, partner = self.costs
        has = self.granted("subscription.groups.get")
        mark = "" if has is None else (" (this key has it)" if has else " (this key lacks it)")

        def amount(cost: SweepCost, first: bool) -> str:
            per = cost.first_per_subject if first else cost.per_subject
            total = cost.total(first)
            return f"{per:.3f} a subject" + (f", {total:,} in all" if total is not None else "")

        lines = [f"with subscription.groups.get{mark}: {amount(full, False)}: {full.note}"]
        if partner.first_per_subject != partner.per_subject:
            lines.append(f"with the partner page's eight permissions: later sweeps {amount(partner, False)}, the "
                         f"first {amount(partner, True)}: {partner.note}")
        else:
            lines.append(f"with the partner page's eight permissions: {amount(partner, False)}: {partner.note}")
        return lines

    def cost_text(self) -> str:
        if self.costs is None:
            return ""
        n = self.costs[0].subjects
        size = f"{n:,} subjects (the last full run)" if n is not None else "subjects (no full run yet to size it)"
        return f"Braze read requests of one full sweep of {size}; " + "; ".join(self.cost_lines())


def _plain(outcome: Outcome) -> dict[str, Any]:
    return {"status": outcome.status, "ok": outcome.ok, "detail": outcome.detail}


def run_doctor(cfg: Config, environ: Mapping[str, str] | None = None) -> DoctorReport:
    braze_transport = ketch_transport = None
    endpoint = sanitize_url(cfg.braze.rest_endpoint)
    if cfg.sandbox.enabled:
        from reconcile.pipeline.session import load_sandbox

        pair = load_sandbox(cfg)
        braze_transport, ketch_transport = pair.braze.transport(), pair.ketch.transport()
        endpoint = "in-process sandbox"
    key, permissions, notes = check_braze(cfg, environ, braze_transport)
    groups_get = next((r for r in permissions if r.spec.permission == "subscription.groups.get"), None)
    channels = check_channels_of(cfg, environ, braze_transport) \
        if key.ok and groups_get is not None and groups_get.status == GRANTED else None
    status_get = next((r for r in permissions if r.spec.permission == "subscription.status.get"), None)
    groups = check_groups(cfg, environ, braze_transport) \
        if key.ok and status_get is not None and status_get.status == GRANTED and cfg.mapping.topics else None
    return DoctorReport(endpoint, key, permissions, check_ketch(cfg, ketch_transport), check_store(cfg, environ),
                        notes, channels, groups, sweep_costs(cfg, last_universe(cfg, environ)))


def last_universe(cfg: Config, environ: Mapping[str, str] | None = None) -> int | None:
    """Subjects of the newest full run in the state database (times `universe.slices` when
    a full run reads one slice); None when there is none or the database cannot be read."""
    from reconcile.store.base import parse_url
    from reconcile.store.store import Store

    try:
        with Store.open(parse_url(state_url(cfg, environ))) as store:
            runs = store.list_runs(200)
    except Exception:  # noqa: BLE001 - the state check reports why the database failed
        return None
    count = next((int(r["universe_count"]) for r in runs if r.get("mode") == "full" and r.get("universe_count")), None)
    return None if count is None else count * max(1, cfg.universe.slices)


def check_groups(cfg: Config, environ: Mapping[str, str] | None = None, transport: Any = None) -> Outcome:
    """Each mapped group asked of `/subscription/status/get` for one synthetic external id:
    a 400 refusing the group means Braze does not know it (a typo, another workspace's id),
    and the job would fail on every write to it. A group Braze answers for is known, or at
    least not refused; any other failure leaves the group unchecked, said as such."""
    mapped = list(dict.fromkeys(m.subscription_group_id for m in cfg.mapping.topics))
    probe = f"reconcile-doctor-{secrets.token_hex(8)}"
    refused: list[str] = []
    unchecked: list[str] = []
    with BrazeClient(cfg.braze, braze_api_key(cfg, environ), transport=transport,
                     retry_policy=doctor_retry_policy(cfg)) as client:
        for group in mapped:
            try:
                client.subscription_status_get(group, external_ids=[probe])
            except FatalApiError as exc:
                if exc.status_code == 400:
                    refused.append(f"{group!r} (mapping.topics: {_topics_of(cfg, group)}): {exc.body or exc}")
                else:
                    unchecked.append(f"{group!r}: {exc}")
            except ApiError as exc:
                unchecked.append(f"{group!r}: {exc}")
    if refused:
        return Outcome("unknown group", False,
                       "Braze refused " + "; ".join(refused) + "; fix: copy each group's id from Braze > "
                       "Audience > Subscription Groups of this workspace into mapping.topics")
    known = len(mapped) - len(unchecked)
    return Outcome(OK, True, f"Braze accepts {known} of {len(mapped)} mapped group(s)" + (
        f"; not checked: {'; '.join(unchecked)}" if unchecked else ""))


def _topics_of(cfg: Config, group: str) -> str:
    return ", ".join(f"{m.topic}/{m.channel}" for m in cfg.mapping.topics if m.subscription_group_id == group)


def check_channels_of(cfg: Config, environ: Mapping[str, str] | None = None, transport: Any = None) -> Outcome:
    """Each mapped group's channel against Braze's, read with `/subscription/user/status` for
    up to 50 identities of the identity list (Braze names the channel of the groups they
    have a state in)."""
    from reconcile.engine.capabilities import Capabilities
    from reconcile.engine.sms import channel_mismatches
    from reconcile.clients.braze_channels import group_channels
    from reconcile.pipeline.sources import load_listed

    try:
        listed = load_listed(cfg.universe, None, cfg.identity.braze_key)
    except (ReconcileError, OSError) as exc:
        return Outcome("not checked", True, f"the identity list could not be read for a sample ({exc})")
    ids = listed["identity"].dropna().astype(str).str.strip().head(50).tolist() if len(listed) else []
    if not ids:
        return Outcome("not checked", True, "the identity list is empty: no profile to read group channels from")
    id_field = "email" if cfg.identity.braze_key == "email" else "external_id"
    with BrazeClient(cfg.braze, braze_api_key(cfg, environ), transport=transport,
                     retry_policy=doctor_retry_policy(cfg)) as client:
        try:
            channels = Capabilities().call("subscription.groups.get", lambda: group_channels(client, id_field, ids))
        except ApiError as exc:
            return Outcome("not checked", True, f"/subscription/user/status failed: {exc}")
    wrong = channel_mismatches(cfg, channels or {})
    if wrong:
        return Outcome("mismatch", False, "; ".join(wrong))
    mapped = {m.subscription_group_id for m in cfg.mapping.topics}
    seen = sorted(mapped & set(channels or {}))
    unseen = sorted(mapped - set(channels or {}))
    detail = f"{len(seen)} mapped group(s) match Braze's channel" + (
        f"; not named by the {len(ids)} sampled profile(s): {', '.join(unseen)}" if unseen else "")
    return Outcome(OK, True, detail)


# -- Braze -------------------------------------------------------------------------------
def doctor_retry_policy(cfg: Config) -> RetryPolicy:
    """Fewer and shorter retries than a run: the doctor answers in seconds, not hours."""
    b = cfg.braze
    return RetryPolicy(max_retries=min(b.max_retries, 2), backoff_cap_seconds=min(b.backoff_cap_seconds, 5.0),
                       max_rate_wait_seconds=30.0, max_rate_limited=3)


def check_braze(cfg: Config, environ: Mapping[str, str] | None = None,
                transport: Any = None) -> tuple[Outcome, list[ProbeResult], list[str]]:
    try:
        api_key = braze_api_key(cfg, environ)
    except ConfigError as exc:
        detail = "; ".join(str(p) for p in exc.problems)
        return Outcome(MISSING, False, detail), [], []
    with BrazeClient(cfg.braze, api_key, transport=transport, retry_policy=doctor_retry_policy(cfg)) as client:
        results = probe_braze(client, cfg)
    return _key_outcome(cfg, results), results, _braze_notes(cfg, results)


def _key_outcome(cfg: Config, results: list[ProbeResult]) -> Outcome:
    if any(r.key_refused for r in results):
        return Outcome(UNAUTHORIZED, False,
                       f"Braze answered HTTP 401: the key in {cfg.braze.api_key_env} is wrong, quoted, "
                       f"or not a key of the instance at braze.rest_endpoint; fix the key or the endpoint")
    unreachable = next((r for r in results if r.unreachable), None)
    if unreachable is not None:
        return Outcome(UNREACHABLE, False, f"{unreachable.detail}; check braze.rest_endpoint and the network")
    return Outcome(ACCEPTED, True, f"the key from {cfg.braze.api_key_env} was accepted")


def _braze_notes(cfg: Config, results: list[ProbeResult]) -> list[str]:
    notes = []
    if results and all(r.status == NOT_GRANTED for r in results):
        notes.append("every endpoint answered 403: the key has none of these permissions, or the Braze account "
                     "is inactive (403 Forbidden)")
    return notes


# -- Ketch -------------------------------------------------------------------------------
def probe_identity(cfg: Config) -> tuple[str, str]:
    """A synthetic identity in the configured identity space that no real person has."""
    space = cfg.identity.ketch_space
    if space == "email" or cfg.identity.braze_key == "email":
        return space, PROBE_EMAIL
    return space, f"reconcile-doctor-{secrets.token_hex(8)}"


def check_ketch(cfg: Config, transport: Any = None) -> Outcome:
    from reconcile.clients.ketch import KetchClient

    k = cfg.ketch
    quick = dataclasses.replace(k, max_retries=min(k.max_retries, 2))
    base = "in-process sandbox" if transport is not None else sanitize_url(k.base_url)
    where = f"{base}, organization {k.organization!r}, property {k.property!r}"
    space, value = probe_identity(cfg)
    purposes = {cfg.mapping.email_purpose: cfg.mapping.email_purpose_legal_basis} if cfg.mapping.email_purpose else None
    backend = "auto" if transport is not None else k.http_backend
    client = KetchClient(quick, transport=transport, http_backend=backend)
    try:
        client.run(client.get_consent({space: value}, purposes))
        client.run(client.get_subscriptions({space: value}))
    except NotFound as exc:
        if "organization" in exc.body.lower():
            return Outcome(WRONG_ORG, False, f"{where}: Ketch answered {exc.body!r}; fix ketch.organization")
        return Outcome(REFUSED, False, f"{where}: HTTP 404 {exc.body}; check ketch.base_url and ketch.organization")
    except TransientApiError as exc:
        return Outcome(UNREACHABLE, False, f"{where}: {exc}; check ketch.base_url and the network")
    except ApiError as exc:
        if exc.status_code is None:
            return Outcome(UNREACHABLE, False, f"{where}: {exc}; check ketch.base_url")
        return Outcome(REFUSED, False, f"{where}: {exc}; check the ketch codes")
    except DataError as exc:
        return Outcome(REFUSED, False, f"{where}: the answer was not understood: {exc}; check ketch.base_url")
    finally:
        client.close()
    return Outcome(REACHABLE, True, f"{where}: consent/get and subscriptions/get answered for a synthetic "
                                    f"{space} identity")


# -- state database ----------------------------------------------------------------------
def check_store(cfg: Config, environ: Mapping[str, str] | None = None) -> Outcome:
    from reconcile.store.base import parse_url
    from reconcile.store.store import Store

    secrets_seen: list[str] = []
    try:
        url = state_url(cfg, environ)
        parsed = parse_url(url)
        secrets_seen = [str(parsed.password)] if parsed.password else []
        with Store.open(parsed) as store:
            return Outcome(OK, True, f"{parsed.get_backend_name()} {store.url}: opened, schema up to date")
    except ConfigError as exc:
        return Outcome(FAILED, False, "; ".join(str(p) for p in exc.problems))
    except ReconcileError as exc:
        return Outcome(FAILED, False, redact_text(str(exc), secrets_seen))
    except Exception as exc:  # noqa: BLE001 - any driver or filesystem error is the answer here
        return Outcome(FAILED, False, f"{type(exc).__name__}: {redact_text(str(exc), secrets_seen)}; "
                                      "check state.url / state.url_env")
