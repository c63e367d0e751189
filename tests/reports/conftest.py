"""A demo history made the way a user makes it: `reconcile demo`, then `reconcile run`, then
a fresh population and `reconcile plan`, each a separate process in one folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoHistory:
    folder: Path
    job: Path
    db: Path
    demo_run: str
    rerun: str
    plan_run: str

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
        done = subprocess.run([sys.executable, "-m", "reconcile", "-q", "--config", str(self.job), *args],
                              cwd=self.folder, capture_output=True, text=True, env=env, timeout=600)
        if check and done.returncode not in (0, 2):
            raise AssertionError(f"reconcile {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def report(self, run_id: str, ext: str = "json") -> Path:
        return self.folder / "reports" / f"{run_id}.{ext}"

    def doc(self, run_id: str) -> dict:
        return json.loads(self.report(run_id).read_text())


def _run_id(done: subprocess.CompletedProcess[str]) -> str:
    return re.search(r"^run (\S+): ", done.stdout + done.stderr, re.M).group(1)


@pytest.fixture(scope="session")
def demo_history(tmp_path_factory) -> DemoHistory:
    folder = tmp_path_factory.mktemp("demo")
    (folder / "jobs").mkdir()
    job = folder / "jobs" / "sandbox.toml"
    shutil.copy(ROOT / "jobs" / "sandbox.toml", job)
    h = DemoHistory(folder, job, folder / ".reconcile" / "state.db", "", "", "")
    h.demo_run = _run_id(h.cli("demo", "--subjects", "800"))
    h.rerun = _run_id(h.cli("run"))
    h.cli("sandbox", "seed", "--subjects", "800", "--drift", "0.1", "--seed", "11")  # as many as the demo: no shrink verdict
    h.plan_run = _run_id(h.cli("plan"))
    return h
