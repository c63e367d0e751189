"""Outside the sandbox, `config check` says where the generated masking key lives."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconcile.cli.main import cli

JOB = ('[state]\nurl = "sqlite:///{db}"\n[ketch]\norganization = "o"\nproperty = "p"\njurisdiction = "j"\n'
       '[mapping]\nemail_purpose = "email"\nglobal_control_engaged = "granted"\n{extra}')


def check(tmp_path: Path, env: dict[str, str], extra: str = "") -> str:
    config = tmp_path / "job.toml"
    config.write_text(JOB.format(db=tmp_path / "state.db", extra=extra))
    out = CliRunner().invoke(cli, ["--config", str(config), "config", "check"], env=env)
    assert out.exit_code == 0, out.output
    return out.output


def test_without_the_variable_the_generated_key_file_is_named(tmp_path: Path) -> None:
    out = check(tmp_path, {"BRAZE_API_KEY": "k"})
    assert "note: report.mask_key_env: RECONCILE_MASK_KEY is not set" in out
    assert f"{tmp_path / 'mask.key'} (mode 0600)" in out
    assert not (tmp_path / "mask.key").exists()


def test_with_the_variable_or_in_the_sandbox_there_is_no_note(tmp_path: Path) -> None:
    assert "note:" not in check(tmp_path, {"BRAZE_API_KEY": "k", "RECONCILE_MASK_KEY": "s3cret-key"})
    assert "note:" not in check(tmp_path, {}, "[sandbox]\nenabled = true\n")
