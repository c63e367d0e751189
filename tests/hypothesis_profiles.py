"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (loaded by tests/conftest.py before any
test module builds its settings):

* `ci` (the default, and what `.ci/run` and `scripts/test.sh` select): derandomised, so every
  run of a given checkout draws the same examples (seeded from each test's own source), with
  no example database, so nothing a previous run found on this machine changes the run;
* `explore` (`bash scripts/explore.sh`): random examples, `EXPLORE_FACTOR` times as many per
  test, with the local example database (`.hypothesis/`) replaying what failed before.
  A failure prints the `@example(...)` to pin: add it to the test so `ci` keeps checking it.

Tests give their budget as `examples(n)`, the number `ci` runs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = ("ci", "explore")
EXPLORE_FACTOR = 10
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci") or "ci"
if PROFILE not in PROFILES:
    raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r} is not a profile of this project ({', '.join(PROFILES)})")

# too_slow measures the machine, not the code: on a loaded runner it would fail a run at random
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True,
                          max_examples=100 * EXPLORE_FACTOR)
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """The number of examples a property test runs: `n` under `ci`, `EXPLORE_FACTOR` x `n` under `explore`."""
    return n * EXPLORE_FACTOR if PROFILE == "explore" else n
