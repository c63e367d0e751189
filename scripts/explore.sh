#!/usr/bin/env bash
# On-demand random exploration of the property tests, run from the repository root inside the
# activated venv:
#   bash scripts/explore.sh [pytest args...]
# The test command (scripts/test.sh, and so CI) runs them derandomised: the same examples every
# run. Here they draw new random examples, 10 times as many per test (tests/hypothesis_profiles.py),
# and the local example database (.hypothesis/) replays what failed before. A failure prints the
# `@example(...)` to pin in the test, so the test command keeps checking that case.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HYPOTHESIS_PROFILE=explore python -m pytest -q -m hypothesis "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "scripts/explore.sh: ERROR: pytest collected no property tests (exit code 5)" >&2
fi
exit "$rc"
