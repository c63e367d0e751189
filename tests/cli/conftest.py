"""Reuse the loopback `world` fixture of tests/pipeline/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconcile.cli.main import cli
from tests.pipeline.conftest import KEY, TOPICS, world  # noqa: F401  (the fixture; the key the simulator accepts)


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
def job(world) -> Job:  # noqa: F811  (the fixture imported above)
    path = world.tmp / "job.toml"
    path.write_text(job_toml(world), encoding="utf-8")
    return Job(world, path)
