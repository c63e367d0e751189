"""The reliability tests run on the pipeline tests' sandbox world (simulators over loopback)."""

from __future__ import annotations

from tests.pipeline.conftest import World, pg_world, world  # noqa: F401  (fixtures)
