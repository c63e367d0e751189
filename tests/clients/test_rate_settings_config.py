"""The rate settings in the config: export_fast_mode, read_concurrency, budget_share and
ketch.max_requests_per_second, with their defaults and their problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.config import parse_config
from reconcile.errors import ConfigError


def config(tmp_path: Path, braze: dict[str, Any] | None = None, ketch: dict[str, Any] | None = None):
    return parse_config({
        "sandbox": {"enabled": True},
        "braze": braze or {},
        "ketch": {"organization": "acme", "property": "web", "jurisdiction": "default", **(ketch or {})},
        "mapping": {"email_purpose": "email_marketing"},
        "universe": {"csv": "universe.csv"},
    }, tmp_path)


def test_defaults(tmp_path: Path):
    cfg = config(tmp_path)
    assert cfg.braze.export_fast_mode == "auto" and cfg.braze.read_concurrency == 4
    assert cfg.braze.budget_share == 0.5
    assert cfg.ketch.requests_per_second == 20 and cfg.ketch.max_requests_per_second == 500  # a cautious start


@pytest.mark.parametrize("value", ["auto", True, False])
def test_export_fast_mode_values(tmp_path: Path, value):
    assert config(tmp_path, {"export_fast_mode": value}).braze.export_fast_mode == value


def test_settings_are_read(tmp_path: Path):
    cfg = config(tmp_path, {"read_concurrency": 8, "budget_share": 1}, {"max_requests_per_second": 900})
    assert cfg.braze.read_concurrency == 8 and cfg.braze.budget_share == 1.0
    assert cfg.ketch.max_requests_per_second == 900


@pytest.mark.parametrize("braze, key", [
    ({"export_fast_mode": "fast"}, "braze.export_fast_mode"),
    ({"export_fast_mode": 1}, "braze.export_fast_mode"),
    ({"budget_share": 0}, "braze.budget_share"),
    ({"budget_share": 1.5}, "braze.budget_share"),
    ({"read_concurrency": 0}, "braze.read_concurrency"),
    ({"read_concurrency": 100}, "braze.read_concurrency"),
])
def test_problems_name_the_key(tmp_path: Path, braze, key):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, braze)
    assert key in str(info.value)


def test_a_negative_ceiling_is_a_problem(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, ketch={"max_requests_per_second": -1})
    assert "ketch.max_requests_per_second" in str(info.value)
