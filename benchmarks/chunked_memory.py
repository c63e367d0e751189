"""Benchmark: peak memory of diff + plan for N subjects read whole or in parts.

Run: python benchmarks/chunked_memory.py N [CHUNK]   (one size per process, so peak RSS is its own)
Each part's frames are generated as a read would return them (the mapped groups of
diff_scale.TOPICS, Braze in step with Ketch except for 3 % of subjects), diffed, and only
the drift subjects' state is kept, as `pipeline.observe_and_diff` does; then one plan is
built from all the drift. With parts, each part is also serialized as the part journal
saves it (part_journal.PartResult.dump): its time and size are printed apart.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diff_scale import TOPICS  # noqa: E402

from reconcile.engine.diff import Rules, diff  # noqa: E402
from reconcile.engine.frames import Observed, conform  # noqa: E402
from reconcile.engine.plan import build_plan  # noqa: E402
from reconcile.pipeline.parts import STATE, PartResult, seen_of  # noqa: E402


def frames(n: int, prefix: str, seed: int, drift: float = 0.03) -> Observed:
    """Frames of n subjects in step, except `drift` of them opted out in Ketch and still
    subscribed in Braze."""
    rng = np.random.default_rng(seed)
    keys = pd.Series([f"{prefix}{i:07d}@example.com" for i in range(n)], dtype="string")
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    universe = conform(pd.DataFrame({"subject_key": keys, "identity": keys, "email": keys}), "universe")
    allowed = rng.random(n) < 0.85
    off = rng.random(n) < drift
    ketch = conform(pd.DataFrame({"subject_key": keys, "has_record": True, "email_allowed": allowed & ~off,
                                  "consent_collected_at": t0, "subs_collected_at": t0}), "ketch")
    state = np.where(allowed, "subscribed", "unsubscribed")
    braze = conform(pd.DataFrame({"subject_key": keys, "exists": True, "profile_count": 1, "email_subscribe": state,
                                  "email_subscribe_min": state, "blocklisted": False, "email": keys}), "braze")
    profiles = conform(pd.DataFrame({"subject_key": keys, "braze_id": keys, "email": keys,
                                     "email_subscribe": state}), "braze_profiles")
    granted = {m.topic: rng.random(n) < 0.7 for m in TOPICS}
    topics = pd.concat([pd.DataFrame({"subject_key": keys, "topic": m.topic, "channel": "email",
                                      "status": np.where(granted[m.topic], "granted", "denied")}) for m in TOPICS])
    groups = pd.concat([pd.DataFrame({"subject_key": keys, "group_id": m.subscription_group_id,
                                      "status": np.where(granted[m.topic], "subscribed", "unsubscribed")})
                        for m in TOPICS])
    return Observed(universe, ketch, conform(topics, "ketch_topics"), braze, conform(groups, "braze_groups"), profiles)


def main(n: int, chunk: int) -> None:
    rules = Rules(key_type="email", topics=TOPICS)
    start = time.perf_counter()
    drifts, kept, universes = [], [], []
    journal_s, journal_bytes = 0.0, 0
    for i, offset in enumerate(range(0, n, chunk)):
        part = frames(min(chunk, n - offset), f"p{i}-", seed=i + 1)
        drift = diff(part, rules)
        drifts.append(drift)
        kept.append(part.subset(set(drift["subject_key"])) if chunk < n else part)
        universes.append(part.universe)
        if chunk < n:
            t = time.perf_counter()
            saved = PartResult(seen_of(part.universe, part.ketch, part.braze), drift, pd.DataFrame(),
                               {name: getattr(kept[-1], name) for name in STATE}, "bench").dump()
            journal_s += time.perf_counter() - t
            journal_bytes += len(saved)
        del part
    universe = pd.concat(universes, ignore_index=True)
    drift = pd.concat(drifts, ignore_index=True)
    profiles = conform(pd.concat([k.braze_profiles for k in kept], ignore_index=True), "braze_profiles")
    plan = build_plan(drift, universe.set_index("subject_key")["email"], profiles, rules, plan_fp="bench",
                      plan_id="bench")
    seconds = time.perf_counter() - start - journal_s
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"n={n:>9} chunk={chunk:>9} drift rows={len(drift):>9} actions={len(plan.actions):>6} "
          f"time={seconds:7.1f}s peak RSS={rss:7.0f} MiB journal={journal_s:5.1f}s {journal_bytes / 2**20:6.1f} MiB",
          flush=True)


if __name__ == "__main__":
    size = int(sys.argv[1])
    main(size, int(sys.argv[2]) if len(sys.argv) > 2 else size)
