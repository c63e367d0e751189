"""The HTML report in real headless Chromium: it renders its summary, SLA table and
charts, and the page asks the network for nothing (DevTools' request log)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconcile.reports.build import write_report
from reconcile.store.store import Store
from tests.reports.chromium import Browser, chromium_path
from tests.reports.seed import report_config, seed_history

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path: Path):
    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


DOM_CHECKS = """(() => {
  const q = (s) => document.querySelector(s);
  const rows = [...document.querySelectorAll('#sla-table tbody tr')];
  return {
    summary: q('#summary h2') && q('#summary h2').textContent,
    status: q('#run-status') && q('#run-status').textContent,
    slaRows: rows.length,
    breached: rows.filter(r => r.classList.contains('sla-breached')).length,
    breachedColor: rows.length ? getComputedStyle(rows.find(r => r.classList.contains('sla-breached')).cells[0]).backgroundColor : null,
    openCriticalPoints: document.querySelectorAll('#chart-open-critical svg circle.point').length,
    openCriticalLine: !!q('#chart-open-critical svg polyline.series'),
    ttrBars: document.querySelectorAll('#chart-time-to-remediate svg rect.bar').length,
    ttrWidth: q('#chart-time-to-remediate svg').getBoundingClientRect().width,
    scripts: document.scripts.length,
  };
})()"""


def test_the_html_report_renders_in_chromium_and_requests_nothing(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'reconcile.db'}"
    with Store.open(url) as store:
        ids = seed_history(store)
        html = write_report(store, ids["overridden"], report_config(tmp_path, url)).with_suffix(".html")
    session = browser.open_page(html.as_uri())
    dom = browser.evaluate(session, DOM_CHECKS)
    assert dom["summary"] == "Run details" and dom["status"] == "applied"
    assert dom["slaRows"] == 2 and dom["breached"] == 1 and dom["breachedColor"] == "rgb(253, 226, 225)"
    assert dom["openCriticalPoints"] == 3 and dom["openCriticalLine"]
    assert dom["ttrBars"] == 16 and dom["ttrWidth"] > 300
    assert dom["scripts"] == 0
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert browser.requested_urls() == [html.as_uri()]
    violations = [e for e in browser.events if e.get("method") == "Log.entryAdded"
                  and "Content Security Policy" in e["params"]["entry"].get("text", "")]
    assert violations == []


def test_the_request_log_would_see_a_fetch(browser: Browser, tmp_path: Path) -> None:
    """The check above can fail: a page that loads an image shows it in the same log."""
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    browser.open_page(page.as_uri())
    assert "http://127.0.0.1:9/pixel.png" in browser.requested_urls()
