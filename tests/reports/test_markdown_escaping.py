"""The Markdown report never carries raw HTML from hostile values: the actor of --reveal and
of guard overrides, identities shown with --reveal, reasons. Driven through the CLI."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Job
from tests.pipeline.conftest import world  # noqa: F401  (the loopback simulators)

HOSTILE = '<img src=x onerror="alert(1)">'


def test_the_markdown_report_escapes_html_from_actor_and_identities(world, tmp_path: Path) -> None:  # noqa: F811
    w = world
    path = w.tmp / "job.toml"
    path.write_text(w.toml(), encoding="utf-8")
    job = Job(w, path)
    job.seed(subjects=30, drift=0.0)
    (w.tmp / "deletions.csv").write_text(f"identity\n{HOSTILE}@example.com\n<script>x</script>\n")
    ran = job.cli("run", "--actor", HOSTILE)
    assert ran.exit_code == 4, ran.output  # the malformed deletion requests are rejected: partial
    for fmt_args in (["report", "--format", "md", "--reveal", "--actor", HOSTILE, "--out", str(tmp_path / "r.md")],
                     ["runs", "show", "latest", "--reveal"]):
        result = job.cli(*fmt_args)
        assert result.exit_code == 0, result.output
        text = (tmp_path / "r.md").read_text() if "report" in fmt_args else result.stdout
        assert "<img" not in text and "<script" not in text, text
        assert "&lt;img" in text or "&lt;script" in text
