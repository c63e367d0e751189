"""The demo's report as a compliance officer opens it: headless Chromium at 1280x900.

The verdict, the breached count and the table of contents are inside the first viewport;
no table is wider than the page at 1280 px (report and index); the deadline filter
narrows the table to breached requests without any script."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reports.chromium import Browser, chromium_path

pytestmark = pytest.mark.slow
WIDTH, HEIGHT = 1280, 900


@pytest.fixture
def browser(tmp_path: Path):
    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def _open(browser: Browser, page: Path) -> str:
    session = browser.open_page("about:blank")
    browser.set_viewport(session, WIDTH, HEIGHT)
    browser.events.clear()
    browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
    browser.wait_event("Page.loadEventFired")
    return session


FIRST_SCREEN = """(() => {
  const box = (s) => { const e = document.querySelector(s); if (!e) return null;
    const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, text: e.textContent.trim(),
    bg: getComputedStyle(e).backgroundColor, level: e.dataset.level || null}; };
  return {verdict: box('#verdict-badge'), breached: box('#breached-count'), toc: box('nav#toc'),
          tocLinks: [...document.querySelectorAll('nav#toc a')].map(a => a.getAttribute('href')),
          chartsTop: document.querySelector('#trends').getBoundingClientRect().top,
          detailTop: document.querySelector('#sla').getBoundingClientRect().top,
          innerHeight: window.innerHeight, innerWidth: window.innerWidth};
})()"""

OVERFLOW = """(() => ({
  page: document.documentElement.scrollWidth,
  wide: [...document.querySelectorAll('table')].map(t => ({id: t.id, right: t.getBoundingClientRect().right,
          scroll: t.scrollWidth, client: t.clientWidth, parent: t.parentElement.clientWidth}))
        .filter(t => t.right > window.innerWidth || t.scroll > t.client + 1 || t.scroll > t.parent + 1),
  tables: document.querySelectorAll('table').length,
  cells: [...document.querySelectorAll('td, th')].filter(c => c.scrollWidth > c.clientWidth + 1).length,
}))()"""


def test_the_verdict_breached_count_and_contents_are_on_the_first_screen(demo_history, browser) -> None:
    doc = demo_history.doc(demo_history.demo_run)
    session = _open(browser, demo_history.report(demo_history.demo_run, "html"))
    dom = browser.evaluate(session, FIRST_SCREEN)
    assert dom["innerWidth"] == WIDTH and dom["innerHeight"] == HEIGHT
    v = doc["verdict"]
    assert v["breached"] > 0 and v["level"] == "not_in_compliance"  # the demo seeds opt-outs months old
    assert dom["verdict"]["text"] == "Not in compliance" and dom["verdict"]["level"] == "not_in_compliance"
    assert dom["verdict"]["bg"] == "rgb(180, 35, 24)"  # red, although the run itself applied cleanly
    assert doc["outcome"]["status"] == "applied"
    assert dom["breached"]["text"] == str(v["breached"])
    for part in ("verdict", "breached", "toc"):
        assert 0 <= dom[part]["top"] and dom[part]["bottom"] <= HEIGHT, (part, dom[part])
    assert {"#trends", "#sla", "#ccpa", "#changes", "#drift", "#actions", "#summary"} <= set(dom["tocLinks"])
    assert dom["toc"]["bottom"] <= dom["chartsTop"] < dom["detailTop"]  # verdict, contents, charts, detail


def test_no_table_is_wider_than_the_page_at_1280(demo_history, browser) -> None:
    h = demo_history
    for page in (h.report(h.demo_run, "html"), h.report(h.plan_run, "html"), h.folder / "reports" / "index.html"):
        session = _open(browser, page)
        dom = browser.evaluate(session, OVERFLOW)
        assert dom["tables"] >= 1
        assert dom["page"] <= WIDTH, (page.name, dom)
        assert dom["wide"] == [], (page.name, dom["wide"])
        assert dom["cells"] == 0, page.name


FILTER = """(() => {
  const visible = () => [...document.querySelectorAll('#sla-table tbody tr.req')]
      .filter(r => r.offsetParent !== null).map(r => r.dataset.sla);
  const all = visible();
  document.getElementById('f-breached').click(); const breached = visible();
  document.getElementById('f-late').click(); const late = visible();
  document.getElementById('f-all').click();
  return {all, breached, late, scripts: document.scripts.length};
})()"""


def test_the_deadline_table_filters_to_breached_and_nearing_without_script(demo_history, browser) -> None:
    doc = demo_history.doc(demo_history.demo_run)
    session = _open(browser, demo_history.report(demo_history.demo_run, "html"))
    dom = browser.evaluate(session, FILTER)
    assert dom["scripts"] == 0
    assert len(dom["all"]) == len(doc["sla"]["requests"]) > len(dom["breached"])
    assert dom["breached"] and set(dom["breached"]) == {"breached"}
    assert len(dom["breached"]) == doc["verdict"]["breached"]
    assert set(dom["late"]) <= {"breached", "nearing"} and len(dom["late"]) == (
        doc["verdict"]["breached"] + doc["verdict"]["nearing"])


def test_the_index_lists_every_run_with_links_and_charts(demo_history, browser) -> None:
    h = demo_history
    session = _open(browser, h.folder / "reports" / "index.html")
    dom = browser.evaluate(session, """(() => ({
      rows: [...document.querySelectorAll('#runs-table tbody tr')].map(r => r.cells[1].textContent.trim()),
      links: [...document.querySelectorAll('#runs-table a')].map(a => a.getAttribute('href')),
      points: document.querySelectorAll('#chart-open svg circle.point').length,
    }))()""")
    assert dom["rows"] == [h.plan_run, h.rerun, h.demo_run]
    assert f"{h.demo_run}.html" in dom["links"] and f"{h.plan_run}.html" in dom["links"]
    assert dom["points"] == 3
    assert browser.requested_urls() == [(h.folder / "reports" / "index.html").as_uri()]
