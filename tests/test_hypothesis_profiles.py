"""The property tests' profiles (tests/hypothesis_profiles.py): the test command runs the same
examples every time; `scripts/explore.sh` draws new ones, ten times as many."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = '''
import os, sys
import hypothesis_profiles
from hypothesis import given, settings, strategies as st
from hypothesis_profiles import examples

drawn = []

@settings(max_examples=examples(20))
@given(st.text(max_size=8), st.integers())
def test_probe(text, number):
    drawn.append(repr((text, number)))

def test_record():
    test_probe()
    with open(os.environ["PROBE_OUT"], "a", encoding="utf-8") as out:
        out.write("\\n".join(drawn) + "\\n--\\n")
'''


def _draws(tmp_path: Path, profile: str | None, name: str) -> list[str]:
    probe = tmp_path / "probe_test.py"
    probe.write_text(PROBE.replace("def test_probe", "def _probe").replace("test_probe()", "_probe()"),
                     encoding="utf-8")
    out = tmp_path / f"{name}.txt"
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    env.update(PROBE_OUT=str(out), PYTHONPATH=str(ROOT / "tests"))
    if profile:
        env["HYPOTHESIS_PROFILE"] = profile
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           "-c", os.devnull, str(probe)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text(encoding="utf-8").split("\n--\n")[0].splitlines()


def test_the_ci_profile_draws_the_same_examples_every_run_and_explore_ten_times_as_many_new_ones(tmp_path) -> None:
    first, second = _draws(tmp_path, None, "default1"), _draws(tmp_path, "ci", "ci2")
    assert first == second and len(first) >= 10  # the default is `ci`: derandomised, no example database
    explore1, explore2 = _draws(tmp_path, "explore", "e1"), _draws(tmp_path, "explore", "e2")
    assert explore1 != explore2  # new examples every run
    assert len(explore1) > 5 * len(first)


def test_the_test_command_and_ci_select_the_ci_profile_and_the_exploration_command_explore() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    explore = (ROOT / "scripts" / "explore.sh").read_text(encoding="utf-8")
    assert "export HYPOTHESIS_PROFILE=ci" in ci and ci.index("HYPOTHESIS_PROFILE=ci") < ci.index("bash scripts/test.sh")
    assert 'export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"' in test
    assert "HYPOTHESIS_PROFILE=explore python -m pytest" in explore and "-m hypothesis" in explore


def test_an_unknown_profile_is_refused_not_ignored(tmp_path) -> None:
    env = {**os.environ, "HYPOTHESIS_PROFILE": "fast", "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([sys.executable, "-c", "import hypothesis_profiles"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "HYPOTHESIS_PROFILE='fast' is not a profile" in done.stderr
