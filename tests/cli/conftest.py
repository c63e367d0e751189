"""Reuse the loopback `world` fixture of tests/engine/conftest.py (loaded by file path, not edited)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "engine" / "conftest.py"
_NAME = "_reconcile_engine_world"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


engine = _load()
world = engine.world  # the fixture: Braze and Ketch simulators served on loopback
KEY = engine.KEY  # the Braze REST key the simulator accepts
TOPICS = engine.TOPICS


import pytest  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402

from reconcile.cli.main import cli  # noqa: E402


def job_toml(w) -> str:
    """A job config pointing at the world's loopback simulators; paths relative to w.tmp."""
    return w.toml()


class Job:
    """A seeded world plus its job file, and a way to run the CLI against it."""

    def __init__(self, w, path: Path):
        self.world, self.path = w, path

    def seed(self, subjects: int = 120, drift: float = 0.2, seed: int = 3):
        truth = self.world.seed(self.world.config(), subjects=subjects, drift=drift, seed=seed)
        return truth

    def append(self, toml: str) -> None:
        """Add sections to the job file (each section may appear only once in TOML)."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write("\n" + toml + "\n")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, ["--config", str(self.path), *args],
                             env={"BRAZE_API_KEY": KEY, **(env or {})}, catch_exceptions=False)


@pytest.fixture
def job(world) -> Job:
    path = world.tmp / "job.toml"
    path.write_text(job_toml(world), encoding="utf-8")
    return Job(world, path)
