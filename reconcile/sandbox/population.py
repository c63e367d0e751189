"""A synthetic population for the sandbox: subjects in sync, plus realistic drift.

`seed_population` fills a BrazeSim and a KetchSim from one config's mapping, writes the
universe and deletion-request files the config points at, and returns the truth: which
subjects were given which drift, so tests and the demo can check what a run finds.
All data is synthetic (example.com addresses); the generator is deterministic per seed.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconcile.config import Config

# Every drift class a sandbox can show at seed time, plus the identity traps.
INJECTED = ("missed_optout_group", "missed_optout_global", "missed_deletion", "braze_newer_optout",
            "missed_optin", "no_consent_record", "unmatched", "ambiguous_identity", "missed_blocklist",
            "case_variant", "malformed", "missed_optout_sms", "sms_stop")
SMS_KINDS = ("missed_optout_sms", "sms_stop")  # only when an SMS topic is mapped


AREA_CODES = (201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225, 228)


def phone_of(i: int) -> str:
    """A synthetic US number in E.164 for person `i` (exchange 555 of a few area codes;
    180,000 distinct numbers, then they repeat)."""
    n = i % (len(AREA_CODES) * 9000)
    return f"+1{AREA_CODES[n // 9000]}555{1000 + n % 9000:04d}"


@dataclass
class SeedTruth:
    subjects: int = 0
    injected: dict[str, list[str]] = field(default_factory=dict)  # kind -> identities as listed

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.injected.items()}


@dataclass
class _Person:
    i: int
    email: str
    external_id: str
    allowed: bool
    engaged: bool
    topics: dict[str, str]  # group_id -> granted|denied
    collected: datetime
    listed_as: str | None = None
    phone: str | None = None


class _Seeder:
    def __init__(self, cfg: Config, braze: Any, ketch: Any, rng: random.Random, now: datetime):
        self.cfg, self.braze, self.ketch, self.rng, self.now = cfg, braze, ketch, rng, now
        self.email_keys = cfg.identity.braze_key == "email"
        self.sms = [m.subscription_group_id for m in cfg.mapping.topics if m.sms]
        self.space = cfg.identity.ketch_space
        self.listed: list[dict[str, str]] = []
        self.deletions: list[dict[str, str]] = []

    def person(self, i: int) -> _Person:
        groups = [m.subscription_group_id for m in self.cfg.mapping.topics]
        topics = {g: ("granted" if self.rng.random() < 0.7 else "denied") for g in groups}
        collected = self.now - timedelta(days=self.rng.randint(30, 400), seconds=self.rng.randint(0, 86399))
        return _Person(i, f"user{i:06d}@example.com", f"u{i:06d}", self.rng.random() < 0.85,
                       self.rng.random() < 0.03, topics, collected, phone=phone_of(i) if self.sms else None)

    def key_value(self, p: _Person) -> str:
        return p.email if self.space == "email" else p.external_id

    def put_ketch(self, p: _Person, topic_override: dict[str, str] | None = None,
                  controls: dict[str, str] | None = None) -> None:
        m = self.cfg.mapping
        at = int(p.collected.timestamp())
        if m.email_purpose:
            self.ketch.set_consent(self.space, self.key_value(p), {m.email_purpose: p.allowed}, at)
        topics: dict[str, dict[str | None, str]] = {}
        status = {**p.topics, **(topic_override or {})}
        for t in m.topics:
            topics.setdefault(t.topic, {})[t.channel] = status[t.subscription_group_id]
        ctl = {m.global_control: "granted" if p.engaged else "denied", **(controls or {})}
        self.ketch.set_subscriptions(self.space, self.key_value(p), topics, ctl, at)

    def braze_states(self, p: _Person) -> tuple[str, dict[str, str]]:
        global_state = "subscribed" if p.allowed and not p.engaged else "unsubscribed"
        if global_state == "subscribed" and self.rng.random() < 0.3:
            global_state = "opted_in"
        groups = {g: "subscribed" if s == "granted" and not p.engaged else "unsubscribed" for g, s in p.topics.items()}
        return global_state, groups

    def put_braze(self, p: _Person, global_state: str, groups: dict[str, str], *, unsub_at: datetime | None = None,
                  email: str | None = None) -> None:
        self.braze.add_profile(external_id=p.external_id, email=email or p.email, email_subscribe=global_state,
                               groups=groups, created_at=p.collected - timedelta(days=30), updated_at=p.collected,
                               phone=p.phone)
        if global_state == "unsubscribed":
            self.braze.add_unsubscribe(email or p.email, unsub_at or p.collected - timedelta(days=1))

    def list_row(self, p: _Person, identity: str | None = None) -> None:
        ident = identity or (p.email if self.email_keys else p.external_id)
        row = {"identity": ident}
        if not self.email_keys:
            row["email"] = p.email
        self.listed.append(row)


def _inject(s: _Seeder, p: _Person, kind: str) -> str:
    """Give person `p` one kind of drift; returns the identity as listed."""
    g, groups = s.braze_states(p)
    gid = next(iter(p.topics), None)
    ident = p.email if s.email_keys else p.external_id
    if kind == "missed_optout_group" and gid:
        p.engaged = False
        p.topics[gid] = "denied"
        g, groups = s.braze_states(p)
        groups[gid] = "subscribed"
    elif kind == "missed_optout_global":
        p.allowed, p.engaged = False, False
        g, groups = "subscribed", s.braze_states(p)[1]
    elif kind == "braze_newer_optout":
        p.allowed, p.engaged = True, False
        p.topics = {k: "granted" for k in p.topics}
        s.put_ketch(p)
        s.put_braze(p, "unsubscribed", {k: "unsubscribed" for k in p.topics}, unsub_at=s.now - timedelta(days=2))
        s.list_row(p)
        return ident
    elif kind == "missed_optout_sms" and s.sms:  # the topic's SMS channel denied, its email channel not
        p.engaged = False
        p.topics = {k: ("denied" if k in s.sms else "granted") for k in p.topics}
        g, groups = s.braze_states(p)
        groups.update({k: "subscribed" for k in s.sms})
    elif kind == "sms_stop" and s.sms:  # Ketch granted SMS; the number texted STOP (Braze keeps no time)
        p.engaged = False
        p.topics = {k: "granted" for k in p.topics}
        g, groups = s.braze_states(p)
        s.put_ketch(p)
        s.put_braze(p, g, groups)
        s.braze.sms_stop(p.phone, s.sms)
        s.list_row(p)
        return ident
    elif kind == "missed_optin" and gid:
        # an opt-out of known time (on the unsubscribe list) older than Ketch's grant: an
        # opt-out of unknown time is never resubscribed
        p.allowed, p.engaged, p.collected = True, False, s.now - timedelta(days=1)
        p.topics[gid] = "granted"
        g, groups = s.braze_states(p)
        groups[gid] = "unsubscribed"
        s.put_ketch(p)
        s.put_braze(p, "unsubscribed", groups, unsub_at=s.now - timedelta(days=10))
        s.list_row(p, ident)
        return ident
    elif kind == "no_consent_record":
        s.put_braze(p, "subscribed", groups)
        s.list_row(p)
        return ident
    elif kind == "unmatched":
        p.allowed = False
        s.put_ketch(p)
        s.list_row(p)
        return ident
    elif kind in ("missed_deletion", "ambiguous_identity"):
        s.put_ketch(p)
        s.put_braze(p, g, groups)
        if kind == "ambiguous_identity":
            s.braze.add_profile(external_id=None, email=p.email.upper(), email_subscribe="subscribed")
        s.deletions.append({"identity": ident, "requested_at": (s.now - timedelta(days=3)).isoformat()})
        return ident
    elif kind == "missed_blocklist" and s.cfg.mapping.blocklist_control:
        s.put_ketch(p, controls={s.cfg.mapping.blocklist_control: s.cfg.mapping.global_control_engaged})
        s.put_braze(p, g, groups)
        s.list_row(p)
        return ident
    elif kind == "case_variant" and s.email_keys:
        ident = f"  {p.email.upper()} "
        p.topics = {k: "denied" for k in p.topics}
        g, groups = s.braze_states(p)
        groups = {k: "subscribed" for k in groups}
    elif kind == "malformed":
        s.listed.append({"identity": f"user{p.i:06d}-at-example.com", **({} if s.email_keys else {"email": ""})})
        return f"user{p.i:06d}-at-example.com"
    s.put_ketch(p)
    s.put_braze(p, g, groups)
    s.list_row(p, ident)
    return ident


def seed_population(cfg: Config, braze: Any, ketch: Any, *, subjects: int, drift: float, seed: int,
                    now: datetime, out_dir: Path | None = None) -> SeedTruth:
    """Seed both simulators; write the universe CSV and deletions CSV named in `cfg.universe`."""
    rng = random.Random(seed)
    s = _Seeder(cfg, braze, ketch, rng, now)
    for m in cfg.mapping.topics:
        braze.add_group(m.subscription_group_id, channel=m.channel or "email")
    kinds = [k for k in INJECTED if (k != "missed_blocklist" or cfg.mapping.blocklist_control)
             and (k != "case_variant" or s.email_keys) and (k not in SMS_KINDS or s.sms)]
    n_drift = max(len(kinds), round(subjects * drift)) if drift > 0 else 0
    drifted = set(rng.sample(range(subjects), min(n_drift, subjects)))
    truth = SeedTruth(subjects=subjects)
    for n, i in enumerate(sorted(drifted)):
        kind = kinds[n % len(kinds)]
        truth.injected.setdefault(kind, []).append(_inject(s, s.person(i), kind))
    for i in range(subjects):
        if i in drifted:
            continue
        p = s.person(i)
        s.put_ketch(p)
        g, groups = s.braze_states(p)
        s.put_braze(p, g, groups)
        if rng.random() < 0.97 or g != "unsubscribed":  # a few are found only through Braze's unsubscribe list
            s.list_row(p)
    _write(cfg.universe.csv, s.listed, ["identity"] + ([] if s.email_keys else ["email"]))
    _write(cfg.universe.deletions_csv, s.deletions, ["identity", "requested_at"])
    return truth


def _write(path: Path | None, rows: list[dict[str, str]], columns: list[str]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def summarize(truth: SeedTruth) -> str:
    c = Counter(truth.counts())
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
