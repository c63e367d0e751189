"""Screenshots of a compliance report's first screen and of the report index, for README.md.

Runs `reconcile demo` twice in a scratch folder (the packaged sandbox job: two seeded
populations, two runs in one history), then loads the first run's HTML report and the
folder's index.html in headless Chromium at 1280x900 and writes the PNGs:

    docs/images/report-first-screen.png   the report as it opens (the verdict, the contents)
    docs/images/report-index.png          reports/index.html (drift over time, every run)

Rerunnable: every run starts from a fresh scratch folder.

    python scripts/screenshots.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reports.chromium import Browser, chromium_path  # noqa: E402

WIDTH, HEIGHT = 1280, 900


def demo_runs(folder: Path, times: int = 2) -> list[Path]:
    """Run the demo `times` times in `folder`; the HTML report of each run, in order."""
    exe = Path(sys.executable).with_name("reconcile")
    reports = []
    for n in range(times):
        args = [str(exe), "demo", "--seed", str(7 + n)] + (["--fresh"] if n == 0 else [])
        done = subprocess.run(args, cwd=folder, capture_output=True, text=True)
        if done.returncode not in (0, 2, 4):
            raise SystemExit(f"reconcile demo failed ({done.returncode}):\n{done.stderr}")
        line = next(x for x in done.stdout.splitlines() if x.startswith("report: "))
        reports.append(Path(line.removeprefix("report: ")).with_suffix(".html"))
    return reports


def shoot(browser: Browser, page: Path, out: Path) -> None:
    session = browser.open_page("about:blank")
    browser.set_viewport(session, WIDTH, HEIGHT)
    browser.events.clear()
    browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
    browser.wait_event("Page.loadEventFired")
    browser.screenshot(session, out)
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="run the demo in this folder and keep it")
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit("chromium is not installed")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="reconcile-screens-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        reports = demo_runs(folder)
        images = ROOT / "docs" / "images"
        images.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            browser = Browser(Path(profile))
            try:
                shoot(browser, reports[0], images / "report-first-screen.png")
                shoot(browser, reports[0].with_name("index.html"), images / "report-index.png")
            finally:
                browser.close()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
