"""Validation of the `[report]` keys that are more than a type (regulations, calendars)."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconcile.errors import ConfigProblem

REGULATIONS = ("can_spam", "tcpa", "ccpa", "gdpr")


def report_problems(rc: Any, *, check_countries: bool = True) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for name in rc.regulations:
        if name not in REGULATIONS:
            problems.append(ConfigProblem("report.regulations", f"unknown regulation {name!r}",
                                          f"use any of {', '.join(REGULATIONS)}"))
    for text in rc.extra_holidays:
        try:
            date.fromisoformat(text)
        except ValueError:
            problems.append(ConfigProblem("report.extra_holidays", f"not an ISO date: {text!r}",
                                          'write dates as "2026-12-24"'))
    try:
        ZoneInfo(rc.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(ConfigProblem("report.timezone", f"unknown time zone {rc.timezone!r}",
                                      'use an IANA name such as "America/New_York" or "UTC"'))
    if rc.retention_months < 1:
        problems.append(ConfigProblem("report.retention_months", "must be at least 1",
                                      "set report.retention_months = 24 (CCPA §7101 keeps records 24 months)"))
    if check_countries:
        problems += _country_problems(rc.holiday_countries)
    return problems


def _country_problems(codes: tuple[str, ...]) -> list[ConfigProblem]:
    import holidays

    supported = holidays.list_supported_countries()
    out = []
    for code in codes:
        country, _, subdiv = code.partition("-")
        if country not in supported:
            out.append(ConfigProblem("report.holiday_countries", f"no holiday calendar for {code!r}",
                                     'use ISO 3166 codes such as "US", "GB", "DE", or "US-CA" for a subdivision'))
        elif subdiv and subdiv not in supported[country]:
            out.append(ConfigProblem("report.holiday_countries", f"{country} has no subdivision {subdiv!r}",
                                     f"use one of {', '.join(supported[country][:12])}..."))
    return out
