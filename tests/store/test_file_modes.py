"""The SQLite state database and its folder are created private (0600/0700) whatever the
umask, and an existing wider file is reported; driven through the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from reconcile.cli.main import cli


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _config(tmp_path, db) -> str:
    """The shipped sandbox job with its state database at `db`."""
    shipped = (Path(__file__).resolve().parents[2] / "jobs" / "sandbox.toml").read_text()
    text = shipped.replace('"../.reconcile/', f'"{tmp_path}/.reconcile/').replace('"../reports"', f'"{tmp_path}/r"')
    text = text.replace('url = "sqlite:///../.reconcile/state.db"', f'url = "sqlite:///{db}"')
    assert str(db) in text
    path = tmp_path / "job.toml"
    path.write_text(text)
    return str(path)


def test_a_new_state_database_and_folder_are_private_and_a_wide_one_is_reported(tmp_path) -> None:
    db = tmp_path / "state" / "deep" / "reconcile.db"
    cfg = _config(tmp_path, db)
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(cli, ["--config", cfg, "runs", "list"], catch_exceptions=False)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700 and _mode(db.parent.parent) == 0o700
    for extra in ("-wal", "-journal", "-shm"):
        if os.path.exists(str(db) + extra):
            assert _mode(str(db) + extra) & 0o077 == 0

    os.chmod(db, 0o644)
    again = CliRunner().invoke(cli, ["--config", cfg, "runs", "list"], catch_exceptions=False)
    assert again.exit_code == 0
    assert "readable or writable by others (mode 0644)" in again.output and f"chmod 0600 {db}" in again.output
    assert _mode(db) == 0o644  # reported, not changed behind the operator's back
