"""Rendering a (masked) report document: HTML and Markdown from Jinja2 templates, JSON.

The HTML is one self-contained file: inline CSS, charts as inline SVG drawn here, no
script, and a Content-Security-Policy that forbids the page every request (`default-src
'none'`), so even a mistake in a template cannot make a browser fetch anything.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from reconcile.reports.charts import report_charts
from reconcile.reports.humanize import dash, human_duration

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
BRIEF_CHARS = 400


def _ts(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def _day(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return value.strftime("%Y-%m-%d") if isinstance(value, datetime) else str(value)[:10]


def _brief(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= BRIEF_CHARS else text[: BRIEF_CHARS - 1] + "…"


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


class Verbatim(str):
    """Text a Markdown template prints as it is: the inside of a fenced code block, where a
    Markdown viewer shows HTML as text."""


def md_text(value: Any) -> Any:
    """A value printed into Markdown: `&`, `<` and `>` as HTML entities, so a hostile value
    (an actor name, an identity shown with --reveal, an error text) never becomes markup in
    a viewer that renders the HTML Markdown allows; Markdown viewers show the characters."""
    if value is None or isinstance(value, (Verbatim, int, float)):
        return value
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: Any) -> Verbatim:
    return Verbatim(str(value).replace("```", "'''"))


def _env(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("reconcile.reports", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=None if autoescape else md_text,
    )
    env.filters.update(ts=_ts, brief=_brief, cell=_cell, day=_day, dash=dash, duration=human_duration, code=_code)
    return env


_HTML = _env(True)
_TEXT = _env(False)


def html(doc: dict[str, Any]) -> str:
    return _HTML.get_template("report.html.j2").render(doc=doc, charts=report_charts(doc["trends"]), csp=Markup(CSP))


def index_html(idx: dict[str, Any], charts: dict[str, Any]) -> str:
    return _HTML.get_template("index.html.j2").render(idx=idx, charts=charts, csp=Markup(CSP))


def markdown(doc: dict[str, Any]) -> str:
    return _TEXT.get_template("report.md.j2").render(doc=doc)


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str)
