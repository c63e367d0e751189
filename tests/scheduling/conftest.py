"""The loopback sandbox world of tests/engine, for the scheduler's end-to-end tests."""

from tests.engine.conftest import World, pg_world, world  # noqa: F401  (fixtures)
