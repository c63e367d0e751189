"""Benchmark: the pure diff + plan over synthetic frames of N subjects, against a plain
pandas outer merge of the same frames measured in the same process.

Run: python benchmarks/diff_scale.py [N ...]   (default 10000 100000 1000000)
Prints seconds, the diff ÷ merge ratio and peak RSS per size; results are recorded in
benchmarks/RESULTS.md.
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
    state = np.where(rng.random(n) < 0.8, "subscribed", "unsubscribed")
    braze = conform(pd.DataFrame({"subject_key": keys, "exists": True, "profile_count": 1,
                                  "email_subscribe": state, "email_subscribe_min": state,
                                  "unsubscribed_at": t0 + pd.Timedelta(days=1), "blocklisted": False,
                                  "email": keys}), "braze")
    profiles = conform(pd.DataFrame({"subject_key": keys, "braze_id": "b" + pd.Series(np.arange(n)).astype(str),
                                     "email": keys, "email_subscribe": state}), "braze_profiles")
    groups = pd.concat([pd.DataFrame({"subject_key": keys, "group_id": m.subscription_group_id,
                                      "status": np.where(rng.random(n) < 0.7, "subscribed", "unsubscribed")})
                        for m in TOPICS], ignore_index=True)
    return Observed(universe, ketch, conform(topics, "ketch_topics"), braze, conform(groups, "braze_groups"),
                    profiles)


def plain_merge(o: Observed) -> pd.DataFrame:
    """The floor: one outer merge of the same frames (subjects x groups), nothing else."""
    base = o.universe.merge(o.ketch, on="subject_key", how="outer").merge(o.braze, on="subject_key", how="outer")
    topics = o.ketch_topics.assign(group_id="g" + o.ketch_topics["topic"].str[1:])
    per_group = o.braze_groups.merge(topics, on=["subject_key", "group_id"], how="outer")
    return per_group.merge(base, on="subject_key", how="outer")


def main(sizes: list[int]) -> None:
    rules = Rules(key_type="email", topics=TOPICS)
    for n in sizes:
        o = frames(n)
        t0 = time.perf_counter()
        merged = plain_merge(o)
        t1 = time.perf_counter()
        del merged
        d = diff(o, rules)
        t2 = time.perf_counter()
        plan = build_plan(d, o.universe.set_index("subject_key")["email"], o.braze_profiles, rules,
                          plan_fp="bench", plan_id="bench")
        t3 = time.perf_counter()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"n={n:>8}  drift rows={len(d):>8}  actions={len(plan.actions):>6}  merge={t1 - t0:6.2f}s  "
              f"diff={t2 - t1:6.2f}s ({(t2 - t1) / (t1 - t0):4.2f}x merge)  plan={t3 - t2:6.2f}s  "
              f"diff+plan={(t3 - t1) / (t1 - t0):4.2f}x merge  peak RSS={rss:7.0f} MiB", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000, 1_000_000])
