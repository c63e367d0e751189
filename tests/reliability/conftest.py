"""The reliability tests run on the engine tests' sandbox world (simulators over loopback)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("engine_world", Path(__file__).parents[1] / "engine" / "conftest.py")
engine_world = importlib.util.module_from_spec(_spec)
sys.modules["engine_world"] = engine_world
_spec.loader.exec_module(engine_world)

World = engine_world.World
world = engine_world.world
pg_world = engine_world.pg_world
