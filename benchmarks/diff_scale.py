"""Benchmark: the pure diff + plan over synthetic frames of N subjects.

Run: python benchmarks/diff_scale.py [N ...]   (default 10000 100000 500000)
Prints seconds and peak RSS per size; results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import pandas as pd

from reconcile.config import TopicMapping
from reconcile.engine.diff import Rules, diff
from reconcile.engine.frames import Observed, conform
from reconcile.engine.plan import build_plan

TOPICS = tuple(TopicMapping(f"t{i}", "email", f"g{i}") for i in range(3))


def frames(n: int, seed: int = 1) -> Observed:
    rng = np.random.default_rng(seed)
    keys = pd.Series([f"user{i:07d}@example.com" for i in range(n)], dtype="string")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    universe = conform(pd.DataFrame({"subject_key": keys, "identity": keys, "email": keys,
                                     "deletion_requested": rng.random(n) < 0.001,
                                     "tombstoned": rng.random(n) < 0.0005}), "universe")
    has = rng.random(n) < 0.97
    ketch = conform(pd.DataFrame({"subject_key": keys[has], "has_record": True,
                                  "email_allowed": rng.random(has.sum()) < 0.85,
                                  "global_engaged": rng.random(has.sum()) < 0.02,
                                  "consent_collected_at": t0, "subs_collected_at": t0}), "ketch")
    topics = pd.concat([pd.DataFrame({"subject_key": keys[has], "topic": m.topic, "channel": "email",
                                      "status": np.where(rng.random(has.sum()) < 0.7, "granted", "denied")})
                        for m in TOPICS], ignore_index=True)
    braze = conform(pd.DataFrame({"subject_key": keys, "exists": True, "profile_count": 1,
                                  "email_subscribe": np.where(rng.random(n) < 0.8, "subscribed", "unsubscribed"),
                                  "unsubscribed_at": t0 + pd.Timedelta(days=1), "blocklisted": False,
                                  "email": keys}), "braze")
    groups = pd.concat([pd.DataFrame({"subject_key": keys, "group_id": m.subscription_group_id,
                                      "status": np.where(rng.random(n) < 0.7, "subscribed", "unsubscribed")})
                        for m in TOPICS], ignore_index=True)
    return Observed(universe, ketch, conform(topics, "ketch_topics"), braze, conform(groups, "braze_groups"))


def main(sizes: list[int]) -> None:
    rules = Rules(key_type="email", topics=TOPICS)
    for n in sizes:
        o = frames(n)
        start = time.perf_counter()
        d = diff(o, rules)
        mid = time.perf_counter()
        plan = build_plan(d, o.universe.set_index("subject_key")["email"], rules, plan_fp="bench")
        end = time.perf_counter()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"n={n:>8}  drift rows={len(d):>8}  actions={len(plan.actions):>6}  "
              f"diff={mid - start:6.2f}s  plan={end - mid:6.2f}s  peak RSS={rss:7.0f} MiB", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000, 500_000])
