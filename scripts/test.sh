#!/usr/bin/env bash
# The project's test command, run from the repository root inside the activated venv:
#   bash scripts/test.sh [pytest args...]
# PostgreSQL tests need RECONCILE_TEST_PG_URL (see scripts/pg-test-server.sh).
# Property tests run under the derandomised Hypothesis profile `ci` (tests/hypothesis_profiles.py):
# the same examples every run. Random exploration: scripts/explore.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
# Two workers (pytest-xdist), one per core of the CI machine; RECONCILE_TEST_WORKERS=0 runs
# in one process.
python -m pytest -q -n "${RECONCILE_TEST_WORKERS:-2}" --durations=25 "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "scripts/test.sh: ERROR: pytest collected no tests (exit code 5)" >&2
fi
exit "$rc"
