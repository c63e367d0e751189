"""Benchmark: Braze requests ÷ the true floor of a correct read, and ÷ the batch-fill bound.

Run: python benchmarks/braze_requests.py [--subjects 10000] [--key-types email external_id]
                                         [--cases a b c d] [--detail] [--out FILE.json]
     PYTHONPATH=/tmp/before python benchmarks/braze_requests.py   # an older tree's job, the same floor

Per key type (email keys with Ketch space email; external_id keys with Ketch space
account_id), a seeded population (3 % drift, seed 1, three mapped email groups) and a full
reconciliation (plan + apply + verify) against the in-process sandbox, in four cases:

  a  first run, the partner page's eight permissions, empty state store
  b  a later run one day after a, same state store and sandbox, the eight permissions
  c  first run, all permissions
  d  a later run one day after c, all permissions

Rate limits of the client and the simulator are lifted: only the number of requests is
measured, and it does not depend on load. Requests are counted per endpoint from the
simulator's call log (403 answers included), split into the plan phase and the
apply + verify phase.

The true floor (what a correct read cannot do without) is computed from the sandbox's
truth, not from the requests the job sent: the profiles holding each address when the
phase starts (the phase's end for verify), the subjects of the run's universe, the state
store's profile cache at the start of the run, and what the run wrote. G is the number of
mapped groups; "/50" means ceil(count / 50), one request per 50 identifiers.

All permissions (`subscription.groups.get`). One `/subscription/user/status` request
lists every profile of 50 addresses or external ids with all its group states, so no
`/subscription/status/get` is needed; `email_subscribe` is not in that answer, so each
profile with an external id is exported by it, 50 a request; a profile without one can be
read only by exporting its address (one `email_address` a request), which also returns the
address's other profiles.

  email keys, plan    user/status   U/50             U: the universe's addresses
                      export ids    X/50             X: external ids of profiles at addresses of U
                                                     where no profile lacks one
                      export email  A                A: addresses of U holding a profile without one
  email keys, verify  user/status   (P + S)/50       P: subjects whose profiles were written (global
                      export ids    X(P)/50          state, deletion, alias profile); S: subjects whose
                      export email  A(P)             group state was written; X, A at the end of the run
  external_id, plan   export ids    B/50 + X(L)/50   B: the universe's ids from the identity list,
                      user/status   B'/50 + L/50     deletions, open drift and tombstones; B': those
                                                     with a profile; L: addresses on Braze's lists no
                                                     profile of B holds (read by email: their profiles'
                                                     external ids join the universe, X(L))
  external_id, verify export ids    P/50,  user/status S/50

The eight permissions (the partner path). Group states come from `status/get`, one group
a request, by address (the answer speaks for the most recently updated profile), and by
external id for every profile of an address several profiles share. An address's profiles
are found by exporting the address alone, or, when the state store's cache holds them
(all with an external id, enumerated within the refresh cycle of `braze.profile_cache_days`:
each address once a cycle, spread evenly over it, see engine/profiles.py), by exporting the
cached external ids, 50 a request. A key without an optional permission learns it from one
refused request per run.

  email keys, plan    export ids    C/50             C: cached external ids of the cache-readable
                      export email  U - R            addresses R of U (cached, all with an
                      status/get    G x (H/50 + M/50)  external id, refresh point not passed)
                      user/status   1 (refused)      H: addresses of U with a profile; M: external
                                                     ids at addresses of U held by two or more
  email keys, verify  export ids    X(P ∩ R')/50     R': P's addresses read this run from the
                      export email  |P - R'|         cache or enumerated with external ids only;
                      status/get    per written group g: S_g/50 + M(S_g)/50
  external_id, plan   export ids    B/50 + C(L)/50, export email L - R(L)
                      status/get    G x (B' + X(L))/50  (the subjects with a profile)
                      user/status   1 (refused)
  external_id, verify export ids    P/50, status/get per written group S_g/50

Both paths: the unsubscribe list max(1, rows in the window / 500); the hard-bounce list the
same (one refused request without `email.hard_bounces`), and again in verify for the last
day only when an address was blocklisted and the list is readable. Writes are not reads:
their floor is the batch-fill bound.

The batch-fill bound (kept beside the floor) counts, per phase, the distinct identifiers
the job itself sent to each endpoint: ceil(distinct / 50) for batched reads (per group for
`status/get`), one per address exported alone, max(1, rows / 500) per list read, and
ceil(distinct changes / 50) per write endpoint (per group and state for
`subscription/status/set`; `users/track` per 75 objects). It measures how full the batches
are, not whether they are needed.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from reconcile.config import DEFAULT_RATE_LIMITS, parse_config
from reconcile.engine.identity import email_keys
try:
    from reconcile.engine.profiles import refresh_due
except ImportError:  # a tree from before the slice refresh (PYTHONPATH=...): every entry trusted for a whole cycle
    def refresh_due(keys: pd.Series, last_seen: pd.Series, now: datetime, cycle_days: float) -> Any:
        seen = pd.to_datetime(last_seen, utc=True, errors="coerce", format="ISO8601")
        return ((seen < pd.Timestamp(now) - timedelta(days=cycle_days)) | seen.isna()).to_numpy()
from reconcile.models.plan import ActionKind
from reconcile.pipeline import run as pipeline
from reconcile.pipeline.session import SandboxPair, open_session, utc_now
from reconcile.sandbox.braze import PARTNER_PERMISSIONS, BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.population import seed_population

TOPICS = [{"topic": "newsletter", "channel": "email", "subscription_group_id": "sg-news"},
          {"topic": "promotions", "channel": "email", "subscription_group_id": "sg-promo"},
          {"topic": "product_updates", "subscription_group_id": "sg-product"}]
FULL_SINCE = "2015-01-01"
LISTS = {"/email/unsubscribes": ("unsubscribes", "unsubscribed_at"),  # path -> simulator table, time field
         "/email/hard_bounces": ("hard_bounces", "hard_bounced_at")}
GOAL_ALL, GOAL_PARTNER = 1.1, 1.0
CASES = {"a": ("first run, 8 permissions", "partner", 0), "b": ("a day later, 8 permissions", "partner", 1),
         "c": ("first run, all permissions", "all", 0), "d": ("a day later, all permissions", "all", 1)}
PROFILE_KINDS = {ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE, ActionKind.DELETE,
                 ActionKind.ALIAS_OPTOUT}
GROUP_KINDS = {ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GROUP_SUBSCRIBE}
READS = ("/users/export/ids", "/subscription/user/status", "/subscription/status/get", *LISTS)


def per50(n: int) -> int:
    return math.ceil(n / 50)


def config(folder: Path, key_type: str) -> Any:
    unlimited = {name: {"requests": 10**9, "per_seconds": 1} for name in DEFAULT_RATE_LIMITS}
    return parse_config({
        "sandbox": {"enabled": True, "state_file": str(folder / "sandbox.json")},
        "braze": {"rate_limits": unlimited},
        "ketch": {"organization": "acme", "property": "web", "environment": "production",
                  "jurisdiction": "default", "concurrency": 16, "requests_per_second": 0},
        "identity": {"ketch_space": "email" if key_type == "email" else "account_id", "braze_key": key_type},
        "mapping": {"email_purpose": "email_marketing", "blocklist_control": "do_not_contact",
                    "global_control_engaged": "granted", "topics": TOPICS},
        "universe": {"csv": str(folder / "universe.csv"), "deletions_csv": str(folder / "deletions.csv"),
                     "full_since": FULL_SINCE},
        "guards": {"max_unsubscribe_fraction": 1.0, "max_deletions": 100000, "max_deletion_fraction": 1.0},
        "apply": {"consistency_delay_seconds": 0},
        "state": {"url": f"sqlite:///{folder / 'state.db'}"},
        "report": {"dir": str(folder / "reports")},
    }, folder)


# -- the sandbox's truth -------------------------------------------------------------------------
def profiles_now(sim: BrazeSim) -> pd.DataFrame:
    """Every profile holding an address: email_key, external_id (NA when none), braze_id."""
    sim.tick()
    with sim.lock:
        rows = [(p.email, p.external_id, p.braze_id) for p in sim.db.profiles.values() if p.email]
    df = pd.DataFrame(rows, columns=["email", "external_id", "braze_id"]).astype("string")
    return df.assign(email_key=email_keys(df["email"]))


def list_rows(sim: BrazeSim, start: date, end: date) -> dict[str, list[str]]:
    """The addresses of each address list inside [start, end] (dates inclusive, UTC)."""
    lo, hi = start.isoformat(), end.isoformat()
    return {path: [r["email"] for r in getattr(sim.db, table).values() if lo <= r[stamp][:10] <= hi]
            for path, (table, stamp) in LISTS.items()}


@dataclass
class Addresses:
    """Per address key: its profiles' external ids, and whether one of them has none."""

    xids: dict[str, set[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    xidless: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, profiles: pd.DataFrame) -> "Addresses":
        out = cls()
        for key, xid in zip(profiles["email_key"], profiles["external_id"]):
            if key is pd.NA or key is None:
                continue
            out.counts[key] = out.counts.get(key, 0) + 1
            if xid is pd.NA or xid is None:
                out.xidless.add(key)
            else:
                out.xids.setdefault(key, set()).add(str(xid))
        return out

    def held(self, keys: set[str]) -> set[str]:
        return {k for k in keys if self.counts.get(k)}

    def ids(self, keys: set[str]) -> set[str]:
        return {x for k in keys for x in self.xids.get(k, ())}

    def shared_ids(self, keys: set[str]) -> set[str]:
        return {x for k in keys if self.counts.get(k, 0) >= 2 for x in self.xids.get(k, ())}


def cache_readable(cache: pd.DataFrame, keys: set[str], now: datetime, days: float,
                   truth: Addresses) -> tuple[set[str], set[str]]:
    """(addresses the partner path may read from the cache: cached, every profile with an
    external id, refresh point not passed, every cached profile still there; their cached
    external ids, moved ones included)."""
    mine = cache[cache["email_key"].isin(keys)]
    if not len(mine):
        return set(), set()
    due = refresh_due(mine["email_key"], mine["last_seen_at"], now, days)
    bad = set(mine.loc[due | mine["external_id"].isna().to_numpy(), "email_key"])
    usable = mine[~mine["email_key"].isin(bad).to_numpy()]
    ids = set(usable["external_id"].astype(str))
    still = {k for k, grp in usable.groupby("email_key")
             if set(grp["external_id"].astype(str)) <= truth.xids.get(k, set())}
    return still, ids


# -- floors --------------------------------------------------------------------------------------
@dataclass
class RunFacts:
    """What a floor needs of one run (see the module doc)."""

    key_type: str
    permissions: str
    groups: int
    universe: pd.DataFrame  # subject_key, identity
    base_ids: set[str]  # external_id keys: identities from the list, deletions, open drift, tombstones
    before: pd.DataFrame  # profiles at the run's start
    after: pd.DataFrame  # profiles at the run's end
    cache: pd.DataFrame  # the profile cache at the run's start
    now: datetime
    cache_days: float
    lists_plan: dict[str, list[str]]
    lists_verify: dict[str, list[str]]
    hard_bounces: bool  # readable with this key
    written_profiles: set[str]
    written_groups: dict[str, set[str]]
    blocklisted: bool


def pages(rows: int) -> int:
    return max(1, math.ceil(rows / 500))


def plan_floor(f: RunFacts) -> dict[str, int]:
    truth = Addresses.of(f.before)
    out: dict[str, int] = defaultdict(int)
    out["/email/unsubscribes"] = pages(len(f.lists_plan["/email/unsubscribes"]))
    out["/email/hard_bounces"] = pages(len(f.lists_plan["/email/hard_bounces"])) if f.hard_bounces else 1
    if f.key_type == "email":
        keys = set(f.universe["subject_key"].astype(str))
        if f.permissions == "all":
            whole = keys - truth.xidless
            out["/subscription/user/status"] = per50(len(keys))
            out["/users/export/ids"] = per50(len(truth.ids(whole))) + len(keys & truth.xidless)
            return dict(out)
        readable, cached_ids = cache_readable(f.cache, keys, f.now, f.cache_days, truth)
        out["/users/export/ids"] = per50(len(cached_ids)) + len(keys - readable)
        held = truth.held(keys)
        out["/subscription/status/get"] = f.groups * (per50(len(held)) + per50(len(truth.shared_ids(held))))
        out["/subscription/user/status"] = 1
        return dict(out)
    ids = set(f.universe["identity"].astype(str))
    base = ids & f.base_ids
    with_xid = f.before[f.before["external_id"].notna()]
    found = base & set(with_xid["external_id"].astype(str))
    held_keys = set(with_xid.loc[with_xid["external_id"].isin(found), "email_key"].dropna())
    listed = set(f.lists_plan["/email/unsubscribes"]) | (set(f.lists_plan["/email/hard_bounces"])
                                                         if f.hard_bounces else set())
    lone = set(email_keys(pd.Series(sorted(listed), dtype="string")).dropna()) - held_keys
    lone_ids = truth.ids(lone) - found
    if f.permissions == "all":
        out["/users/export/ids"] = per50(len(base)) + per50(len(lone_ids))
        out["/subscription/user/status"] = per50(len(found)) + per50(len(lone))
        return dict(out)
    readable, cached_ids = cache_readable(f.cache, lone, f.now, f.cache_days, truth)
    out["/users/export/ids"] = per50(len(base)) + per50(len(cached_ids)) + len(lone - readable)
    out["/subscription/status/get"] = f.groups * per50(len(found | lone_ids))
    out["/subscription/user/status"] = 1
    return dict(out)


def verify_floor(f: RunFacts) -> dict[str, int]:
    truth = Addresses.of(f.after)
    out: dict[str, int] = defaultdict(int)
    if f.blocklisted and f.hard_bounces:
        out["/email/hard_bounces"] = pages(len(f.lists_verify["/email/hard_bounces"]))
    P = f.written_profiles
    grouped = set().union(*f.written_groups.values()) if f.written_groups else set()
    if f.key_type == "external_id":
        if P:
            out["/users/export/ids"] = per50(len(P))
        if f.permissions == "all" and grouped:
            out["/subscription/user/status"] = per50(len(grouped))
        elif grouped:
            out["/subscription/status/get"] = sum(per50(len(s)) for s in f.written_groups.values())
        return dict(out)
    if f.permissions == "all":
        whole = P - truth.xidless
        if P | grouped:
            out["/subscription/user/status"] = per50(len(P | grouped))
        out["/users/export/ids"] = per50(len(truth.ids(whole))) + len(P & truth.xidless)
        return {k: v for k, v in out.items() if v}
    before = Addresses.of(f.before)
    # read this run from the cache or enumerated with external ids only, and not deleted since
    readable = {k for k in P if truth.counts.get(k) and k not in truth.xidless
                and truth.xids.get(k) == before.xids.get(k) and k not in before.xidless}
    out["/users/export/ids"] = per50(len(truth.ids(readable))) + len(P - readable)
    for keys in f.written_groups.values():
        held = truth.held(keys)
        out["/subscription/status/get"] += per50(len(held)) + per50(len(truth.shared_ids(held)))
    return {k: v for k, v in out.items() if v}


# -- the batch-fill bound of what the job sent ----------------------------------------------------
def identifiers(call: dict[str, Any]) -> tuple[str, list[str], int]:
    """(what the request reads or writes, its items, the per-request limit)."""
    path, body, query = call["path"], call.get("body") or {}, call.get("query") or {}
    if path == "/users/export/ids":
        if "external_ids" in body:
            return "by external_id", body["external_ids"], 50
        return "by email", [body.get("email_address", "")], 1  # one email_address a request (braze-api.md §1)
    if path in ("/subscription/status/get", "/subscription/user/status"):
        kind = "email[]" if "email[]" in query else "external_id[]"
        group = (query.get("subscription_group_id") or [""])[0]
        return f"{group} {kind[:-2]}".strip(), query.get(kind, []), 50
    if path == "/subscription/status/set":
        ids = body.get("external_id") or body.get("email") or []
        return f"{body.get('subscription_group_id')} {body.get('subscription_state')}", ids, 50
    if path == "/users/track":
        objs = [o for a in ("attributes", "events", "purchases") for o in body.get(a) or []]
        return "", [json.dumps(o, sort_keys=True) for o in objs], 75
    if path == "/users/delete":
        key = next(k for k in body if k not in ("prioritization",))
        return key, [json.dumps(i, sort_keys=True) for i in body[key]], 50
    if path in ("/email/blocklist", "/email/status"):
        emails = body.get("email")
        return "", [emails] if isinstance(emails, str) else list(emails or []), 50
    if path == "/users/alias/new":
        return "", [json.dumps(a, sort_keys=True) for a in body.get("user_aliases") or []], 50
    return "", [], 1


def batch_fill(calls: list[dict[str, Any]], rows: dict[str, list[str]]) -> dict[str, int]:
    """Per endpoint: the batch-fill bound of one phase's calls."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for call in calls:
        what, ids, limit = identifiers(call)
        entry = groups.setdefault((call["path"], what), [set(), limit])
        entry[0].update(ids)
    out: dict[str, int] = defaultdict(int)
    for (path, _what), (ids, limit) in groups.items():
        out[path] += pages(len(rows[path])) if path in LISTS else math.ceil(len(ids) / limit)
    return dict(out)


# -- one run -------------------------------------------------------------------------------------
def run_once(folder: Path, key_type: str, permissions: str, seed: bool, subjects: int, day: int) -> dict[str, Any]:
    cfg = config(folder, key_type)
    if seed:
        braze, ketch = BrazeSim(), KetchSim(organization="acme")
        seed_population(cfg, braze, ketch, subjects=subjects, drift=0.03, seed=1, now=utc_now())
        SandboxPair(braze, ketch, cfg.sandbox.state_file).save()
    offset = timedelta(days=day)

    def clock() -> datetime:
        return datetime.now(timezone.utc) + offset

    with open_session(cfg, {}, clock=clock) as rt:
        sim = rt.sandbox.braze
        sim.permissions = set(PARTNER_PERMISSIONS) if permissions == "partner" else None
        for name, window in list(sim.limiter.windows.items()):
            sim.limiter.set_limit(name, 10**9, window.seconds)
        today = rt.clock().date()
        lists_plan = list_rows(sim, date.fromisoformat(FULL_SINCE), today + timedelta(days=1))
        before, cache, now = profiles_now(sim), rt.store.braze_profiles(), rt.clock()
        base = _base_ids(cfg, rt.store) if key_type == "external_id" else set()
        rec = pipeline.recorder(rt, "full")
        rec.start()
        planned = pipeline.make_plan(rt, rec, "full")
        n_plan = len(sim.calls)
        result = pipeline.apply_planned(rt, rec, planned)
        lists_verify = list_rows(sim, today - timedelta(days=1), today + timedelta(days=1))
        after, calls = profiles_now(sim), list(sim.calls)
    written_profiles: set[str] = set()
    written_groups: dict[str, set[str]] = {}
    blocklisted = False
    for action in planned.plan.actions:
        for key in action.drift_keys:
            if action.kind in PROFILE_KINDS:
                written_profiles.add(key.subject_key)
            elif action.kind in GROUP_KINDS and key.group_id:
                written_groups.setdefault(key.group_id, set()).add(key.subject_key)
        blocklisted |= action.kind is ActionKind.BLOCKLIST
    facts = RunFacts(key_type, permissions, len(TOPICS), planned.obs.observed.universe[["subject_key", "identity"]],
                     base, before, after, cache, now, cfg.braze.profile_cache_days, lists_plan, lists_verify,
                     permissions == "all", written_profiles, written_groups, blocklisted)
    phases = {"plan": (calls[:n_plan], plan_floor(facts), batch_fill(calls[:n_plan], lists_plan)),
              "apply+verify": (calls[n_plan:], verify_floor(facts), batch_fill(calls[n_plan:], lists_verify))}
    endpoints: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "floor": 0, "fill": 0, "refused": 0})
    detail = []
    for phase, (mine, floor, fill) in phases.items():
        count: dict[str, int] = defaultdict(int)
        for call in mine:
            count[call["path"]] += 1
            endpoints[call["path"]]["refused"] += call["status"] >= 400
        for path in sorted(set(count) | set(floor) | set(fill)):
            writes = path not in READS
            row = {"requests": count.get(path, 0), "floor": fill.get(path, 0) if writes else floor.get(path, 0),
                   "fill": fill.get(path, 0)}
            detail.append((phase, path, row["requests"], row["floor"], row["fill"]))
            for k, v in row.items():
                endpoints[path][k] += v
    exports = {phase: {"by email": sum(1 for c in mine if c["path"] == "/users/export/ids"
                                       and "email_address" in (c.get("body") or {})),
                       "by external_id": sum(1 for c in mine if c["path"] == "/users/export/ids"
                                             and "external_ids" in (c.get("body") or {}))}
               for phase, (mine, _floor, _fill) in phases.items()}
    status = getattr(result.status, "value", result.status)
    observed = planned.obs.observed
    return {"endpoints": dict(endpoints), "detail": detail, "exports": exports, "plan_requests": n_plan,
            "universe": len(observed.universe),
            "profiles": int(observed.braze["exists"].fillna(True).sum()), "status": str(status),
            "drift": sum(result.counts.values()), "actions": result.actions_planned,
            "verified": result.verified, "unverified": result.unverified}


def _base_ids(cfg: Any, store: Any) -> set[str]:
    """External ids of the identity list, the deletions, open drift and tombstones."""
    ids: set[str] = set()
    for path in (cfg.universe.csv, cfg.universe.deletions_csv):
        if path is not None and Path(path).exists():
            ids |= set(pd.read_csv(path, dtype=str)["identity"].dropna().str.strip())
    ids |= {str((d.get("detail") or {}).get("identity") or d["subject_key"]) for d in store.open_drift()}
    ids |= {str(t["identity"]) for t in store.tombstones()}
    return ids


def ratio(requests: int, bound: int) -> str:
    return f"{requests / bound:.3f}" if bound else ("-" if not requests else "inf")


def table(key_type: str, case: str, r: dict[str, Any], detail: bool) -> str:
    label, permissions, _day = CASES[case]
    lines = [f"{key_type} keys, case {case} ({label})", "",
             "| endpoint | requests | floor | ratio | batch-fill bound |", "|---|---:|---:|---:|---:|"]
    total = [0, 0, 0]
    for path in sorted(r["endpoints"]):
        e = r["endpoints"][path]
        total = [total[0] + e["requests"], total[1] + e["floor"], total[2] + e["fill"]]
        refused = f" ({e['refused']} refused)" if e["refused"] else ""
        lines.append(f"| {path} | {e['requests']:,}{refused} | {e['floor']:,} | {ratio(e['requests'], e['floor'])} "
                     f"| {e['fill']:,} |")
    lines.append(f"| **all** | **{total[0]:,}** | **{total[1]:,}** | **{ratio(total[0], total[1])}** "
                 f"| **{total[2]:,}** ({ratio(total[0], total[2])}) |")
    goal = GOAL_ALL if permissions == "all" else GOAL_PARTNER
    met = total[0] <= goal * total[1] + 1e-9
    lines.append(f"\nrequests ÷ floor {ratio(total[0], total[1])}, goal <= {goal}: {'met' if met else 'not met'}; "
                 f"requests ÷ batch-fill bound {ratio(total[0], total[2])}")
    lines.append(f"\nrun: status {r['status']}, universe {r['universe']:,}, subjects with a profile {r['profiles']:,}, "
                 f"drift items {r['drift']}, actions {r['actions']}, verified {r['verified']}, unverified "
                 f"{r['unverified']}, plan-phase requests {r['plan_requests']:,}; /users/export/ids "
                 + "; ".join(f"{phase}: {n['by external_id']:,} by external_id, {n['by email']:,} by email_address"
                             for phase, n in r["exports"].items()))
    if detail:
        lines += ["", "| phase | endpoint | requests | floor | batch-fill bound |", "|---|---|---:|---:|---:|"]
        lines += [f"| {p} | {path} | {n:,} | {fl:,} | {fi:,} |" for p, path, n, fl, fi in r["detail"]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {}
    for key_type in args.key_types:
        folders: dict[str, tempfile.TemporaryDirectory[str]] = {}
        try:
            for case in args.cases:
                _label, permissions, day = CASES[case]
                first = {"b": "a", "d": "c"}.get(case)
                if first is not None and first not in folders:
                    folders[first] = tempfile.TemporaryDirectory()
                    run_once(Path(folders[first].name), key_type, permissions, True, args.subjects, 0)
                home = folders.setdefault(first or case, tempfile.TemporaryDirectory())
                r = run_once(Path(home.name), key_type, permissions, first is None, args.subjects, day)
                results[f"{key_type}/{case}"] = r
                print(table(key_type, case, r, args.detail), flush=True)
                print()
        finally:
            for folder in folders.values():
                folder.cleanup()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10000)
    parser.add_argument("--key-types", nargs="+", default=["email", "external_id"], choices=["email", "external_id"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", help="write the numbers as JSON")
    parser.add_argument("--detail", action="store_true", help="print requests, floor and bound per phase")
    main(parser.parse_args())
