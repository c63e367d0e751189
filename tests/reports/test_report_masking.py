"""Every report format, for a run with masking on, holds no identity in clear, and no
masked token can be recomputed from what the reports contain."""

from __future__ import annotations

import csv
import hashlib
import io
import hmac
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.reports.masking import mask_key, mask_key_path
from reconcile.reports.build import FORMATS, report_doc, write
from reconcile.reports.history import Selection
from reconcile.reports.tables import safe_cell, to_csv
from reconcile.store.store import Store
from tests.reports.seed import ANN, EXT, IDENTITIES, report_config, seed_history

AS_OF = datetime(2026, 3, 13, 12, 0, tzinfo=timezone.utc)
TOKEN = re.compile(r"#([0-9a-f]{10})\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def hashed(identity: str, key: bytes) -> str:
    return hmac.new(key, identity.strip().casefold().encode(), hashlib.sha256).hexdigest()[:10]


@pytest.fixture
def written(store: Store, store_url: str, tmp_path: Path) -> tuple[list[Path], bytes, str]:
    ids = seed_history(store)
    cfg = report_config(tmp_path, store_url)
    paths: list[Path] = []
    for name in ("applied", "overridden"):
        doc = report_doc(store, cfg, Selection(run_id=ids[name]), AS_OF, mask_key(cfg))
        paths += write(doc, cfg.report.dir, f"r-{name}", FORMATS)
    doc = report_doc(store, cfg, Selection(job="nightly"), AS_OF, mask_key(cfg))
    paths += write(doc, cfg.report.dir, "r-job", FORMATS)
    return paths, mask_key(cfg), str(mask_key_path(cfg))


def test_no_email_and_no_external_id_in_clear_in_any_format(written) -> None:
    paths, _, _ = written
    assert {p.suffix for p in paths} == {".html", ".json", ".md", ".csv"}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for clear in IDENTITIES:
            assert clear not in text and clear.casefold() not in text.casefold(), (path.name, clear)
        for found in EMAIL.findall(text):
            assert re.search(r"\*\*\*@", text[max(0, text.find(found) - 4): text.find(found) + len(found)]), found
        assert not re.search(r"\bext-\d", text), path.name


def test_a_token_cannot_be_recomputed_from_the_reports(written) -> None:
    paths, key, key_path = written
    blob = "\n".join(p.read_text(encoding="utf-8") for p in paths)
    tokens = set(TOKEN.findall(blob))
    assert hashed(ANN, key) in tokens and hashed(EXT, key) in tokens
    assert key.decode() not in blob and key_path not in blob
    candidates = set(re.findall(r"[0-9A-Za-z:_.-]{6,}", blob)) | {"cfg-1", "reconcile:cfg-1", ""}
    for candidate in candidates:
        assert hashed(ANN, candidate.encode()) not in tokens, candidate
    assert all(p.stat().st_mode & 0o077 == 0 for p in paths)


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://127.0.0.1\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx",
                                  "  =1+1"])
def test_csv_cells_that_look_like_formulas_are_text(cell: str) -> None:
    out = safe_cell(cell)
    assert out.startswith("'") and out[1:] == cell
    rows = list(csv.reader(io.StringIO(to_csv([{"a": cell, "n": -3}], ["a", "n"]), newline="")))
    assert rows[1] == ["'" + cell, "-3"]


def test_ordinary_cells_are_untouched() -> None:
    assert [safe_cell(v) for v in ("id#abc", "a-b", 5, None, True)] == ["id#abc", "a-b", 5, "", "true"]
