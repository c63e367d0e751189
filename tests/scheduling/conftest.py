"""The loopback sandbox world of tests/pipeline, for the scheduler's end-to-end tests."""

from tests.pipeline.conftest import World, pg_world, world  # noqa: F401  (fixtures)
