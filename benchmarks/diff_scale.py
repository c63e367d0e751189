"""Benchmark: the pure diff + plan over synthetic frames of N subjects x 4 mapped groups,
against a plain pandas outer merge of the same frames measured in the same process.

Run: python benchmarks/diff_scale.py [--drift F] [--no-merge] [N ...]   (default 10000 100000 1000000)

Two kinds of synthetic frames:
- random states (the default): Ketch and Braze states drawn independently, ~2 drift items
  a subject, far more than a real workspace;
- `--drift F` (e.g. 0.03): Braze in step with Ketch except for a fraction F of subjects,
  whose Braze states (global, groups, profile existence) are drawn at random.

Each size runs in its own process (`--one N` runs a single size in this process), so the
peak RSS printed is that size's own. Prints wall seconds for the merge, diff and plan, the
diff ÷ merge and (diff + plan) ÷ merge ratios, the same in process CPU seconds (steadier
when other work shares the machine), peak RSS and the 1-minute load average; results are
recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from reconcile.config import TopicMapping
from reconcile.engine.diff import Rules, diff
from reconcile.engine.frames import Observed, conform
from reconcile.engine.plan import build_plan

GROUPS = 4
TOPICS = tuple(TopicMapping(f"t{i}", "email", f"g{i}") for i in range(GROUPS))


def frames(n: int, seed: int = 1, drift: float | None = None) -> Observed:
    """Synthetic frames: random states (`drift` None), or Braze in step with Ketch except
    for a fraction `drift` of subjects (drawn at random there)."""
    rng = np.random.default_rng(seed)
    keys = ("user" + pd.Series(np.arange(n)).astype("string").str.zfill(8) + "@example.com").astype("string")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    doomed_del = rng.random(n) < 0.001
    doomed_tomb = rng.random(n) < 0.0005
    universe = conform(pd.DataFrame({"subject_key": keys, "identity": keys, "email": keys,
                                     "deletion_requested": doomed_del, "tombstoned": doomed_tomb}), "universe")
    has = rng.random(n) < 0.97
    allowed = rng.random(n) < 0.85
    engaged = rng.random(n) < 0.02
    ketch = conform(pd.DataFrame({"subject_key": keys[has], "has_record": True, "email_allowed": allowed[has],
                                  "global_engaged": engaged[has], "consent_collected_at": t0,
                                  "subs_collected_at": t0}), "ketch")
    granted = [rng.random(n) < 0.7 for _ in TOPICS]
    topics = pd.concat([pd.DataFrame({"subject_key": keys[has], "topic": m.topic, "channel": "email",
                                      "status": np.where(g[has], "granted", "denied")})
                        for m, g in zip(TOPICS, granted)], ignore_index=True)
    random_state = rng.random(n) < 0.8
    random_groups = [rng.random(n) < 0.7 for _ in TOPICS]
    exists = np.ones(n, dtype=bool)
    if drift is None:
        subscribed, group_on = random_state, random_groups
    else:
        off = rng.random(n) < drift  # the subjects whose Braze state is out of step
        stop = engaged | ~allowed
        subscribed = np.where(off, random_state, has & ~stop)
        group_on = [np.where(off, r, has & g & ~engaged) for r, g in zip(random_groups, granted)]
        exists = off | ~(doomed_del | doomed_tomb)  # in step: deleted subjects are gone from Braze
    state = np.where(subscribed, "subscribed", "unsubscribed")
    k = keys[exists].reset_index(drop=True)
    st = state[exists]
    braze = conform(pd.DataFrame({"subject_key": keys, "exists": exists, "profile_count": exists.astype(int),
                                  "email_subscribe": pd.Series(state).where(exists),
                                  "email_subscribe_min": pd.Series(state).where(exists),
                                  "unsubscribed_at": t0 + pd.Timedelta(days=1), "blocklisted": False,
                                  "email": keys}), "braze")
    profiles = conform(pd.DataFrame({"subject_key": k, "braze_id": "b" + pd.Series(np.flatnonzero(exists)).astype(str),
                                     "email": k, "email_subscribe": st}), "braze_profiles")
    groups = pd.concat([pd.DataFrame({"subject_key": k, "group_id": m.subscription_group_id,
                                      "status": np.where(on[exists], "subscribed", "unsubscribed")})
                        for m, on in zip(TOPICS, group_on)], ignore_index=True)
    return Observed(universe, ketch, conform(topics, "ketch_topics"), braze, conform(groups, "braze_groups"),
                    profiles)


def plain_merge(o: Observed) -> pd.DataFrame:
    """The floor: one outer merge of the same frames (subjects x groups), nothing else."""
    base = o.universe.merge(o.ketch, on="subject_key", how="outer").merge(o.braze, on="subject_key", how="outer")
    topics = o.ketch_topics.assign(group_id="g" + o.ketch_topics["topic"].str[1:])
    per_group = o.braze_groups.merge(topics, on=["subject_key", "group_id"], how="outer")
    return per_group.merge(base, on="subject_key", how="outer")


def one(n: int, drift: float | None, merge: bool = True) -> None:
    rules = Rules(key_type="email", topics=TOPICS)
    o = frames(n, drift=drift)
    emails = o.universe.set_index("subject_key")["email"]

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    merge_s = merge_c = float("nan")
    if merge:
        w0, c0 = clock()
        merged = plain_merge(o)
        w1, c1 = clock()
        merge_s, merge_c = w1 - w0, c1 - c0
        del merged  # freeing the merged frame is in neither timing
    w2, c2 = clock()
    d = diff(o, rules)
    w3, c3 = clock()
    plan = build_plan(d, emails, o.braze_profiles, rules, plan_fp="bench", plan_id="bench")
    w4, c4 = clock()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    diff_s, plan_s, diff_c, plan_c = w3 - w2, w4 - w3, c3 - c2, c4 - c3
    mode = "random" if drift is None else f"drift {drift:g}"
    print(f"n={n:>9}  mode={mode:<11}  drift rows={len(d):>9}  actions={len(plan.actions):>7}  "
          f"merge={merge_s:6.2f}s  diff={diff_s:6.2f}s  plan={plan_s:6.2f}s  "
          f"diff/merge={diff_s / merge_s:4.2f}  (diff+plan)/merge={(diff_s + plan_s) / merge_s:4.2f}  "
          f"cpu: merge={merge_c:6.2f}s diff={diff_c:6.2f}s plan={plan_c:6.2f}s "
          f"(diff+plan)/merge={(diff_c + plan_c) / merge_c:4.2f}  "
          f"peak RSS={rss:7.0f} MiB  load={os.getloadavg()[0]:.2f}", flush=True)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--drift", type=float, default=None,
                   help="fraction of subjects whose Braze state is out of step (default: random states)")
    p.add_argument("--one", action="store_true", help="run the given single size in this process")
    p.add_argument("--no-merge", action="store_true",
                   help="diff + plan only (for sizes where the merged frame does not fit in memory)")
    args = p.parse_args(argv)
    if args.one:
        (n,) = args.sizes
        one(n, args.drift, merge=not args.no_merge)
        return
    extra = ([] if args.drift is None else ["--drift", str(args.drift)]) + (["--no-merge"] if args.no_merge else [])
    for n in args.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(n), *extra], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
