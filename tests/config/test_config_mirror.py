"""`[ledger] mirror` and `mirror_audit_fraction`: defaults and clear errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.config import parse_config
from reconcile.errors import ConfigError
from tests.config.test_config import minimal

HOOK = {"enabled": True, "bearer_token_env": "KETCH_WEBHOOK_TOKEN"}


def _problems(ledger: dict) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(minimal(ledger=ledger), Path('.'))
    return [(p.key, p.problem, p.fix) for p in err.value.problems]


def test_the_mirror_is_off_by_default_and_audits_a_thirtieth() -> None:
    cfg = parse_config(minimal(ledger=HOOK), Path('.'))
    assert cfg.ledger.mirror is False and cfg.ledger.mirror_audit_fraction == pytest.approx(1 / 30)
    cfg = parse_config(minimal(ledger={**HOOK, "mirror": True, "mirror_audit_fraction": 0.1}), Path("."))
    assert cfg.ledger.mirror is True and cfg.ledger.mirror_audit_fraction == 0.1


def test_the_mirror_needs_the_ledger() -> None:
    (field, problem, fix), = _problems({"mirror": True})
    assert field == "ledger.mirror" and "not enabled" in problem and "ledger.enabled = true" in fix


@pytest.mark.parametrize("value", [0, -0.5, 1.5, "often", True])
def test_a_bad_audit_fraction_names_the_field(value) -> None:
    (field, problem, fix), = _problems({**HOOK, "mirror": True, "mirror_audit_fraction": value})
    assert field == "ledger.mirror_audit_fraction" and "ledger.mirror_audit_fraction = " in fix
    assert problem


def test_the_mirror_settings_change_the_config_hash() -> None:
    plain = parse_config(minimal(ledger=HOOK), Path('.'))
    mirrored = parse_config(minimal(ledger={**HOOK, "mirror": True}), Path("."))
    assert plain.hash() != mirrored.hash()
