"""Business days: Monday to Friday, less the holidays of the configured countries
(from the maintained `holidays` library) and any extra dates from the config.

Dates are local dates in the configured time zone; a timestamp is turned into one with
`local_date`. Every function is pure: the calendar is built from its inputs only.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def _country_days(code: str, year: int) -> frozenset[date]:
    import holidays

    country, _, subdiv = code.partition("-")
    return frozenset(holidays.country_holidays(country, subdiv=subdiv or None, years=year))


@lru_cache(maxsize=256)
def _weekday_holidays(countries: tuple[str, ...], extra: frozenset[date], year: int) -> tuple[date, ...]:
    """The year's holidays (configured countries and extra dates) that fall on a weekday, sorted."""
    days = {d for d in extra if d.year == year}
    for code in countries:
        days |= {d for d in _country_days(code, year) if d.year == year}
    return tuple(sorted(d for d in days if d.weekday() < 5))


def _weekdays_after(start: date, end: date) -> int:
    """Days d with start < d <= end that are Monday to Friday (end >= start)."""
    weeks, rest = divmod((end - start).days, 7)
    first = start.weekday()
    return weeks * 5 + sum(1 for i in range(1, rest + 1) if (first + i) % 7 < 5)


@dataclass(frozen=True)
class BusinessCalendar:
    countries: tuple[str, ...] = ()
    extra: frozenset[date] = field(default_factory=frozenset)
    tz: str = "UTC"

    @classmethod
    def from_config(cls, rc: object) -> BusinessCalendar:
        return cls(tuple(getattr(rc, "holiday_countries", ())),
                   frozenset(date.fromisoformat(d) for d in getattr(rc, "extra_holidays", ())),
                   getattr(rc, "timezone", "UTC"))

    def is_holiday(self, day: date) -> bool:
        return day in self.extra or any(day in _country_days(code, day.year) for code in self.countries)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and not self.is_holiday(day)

    def add_business_days(self, start: date, n: int) -> date:
        """The n-th business day after `start` (`start` itself never counts)."""
        day, left = start, n
        while left > 0:
            day += timedelta(days=1)
            if self.is_business_day(day):
                left -= 1
        return day

    def business_days_between(self, start: date, end: date) -> int:
        """Business days d with start < d <= end; negative when `end` is before `start`.
        Weekdays are counted arithmetically and holidays by bisecting each year's sorted
        weekday holidays, so the cost does not grow with the span."""
        if end < start:
            return -self.business_days_between(end, start)
        off = 0
        for year in range(start.year, end.year + 1):
            days = _weekday_holidays(self.countries, self.extra, year)
            off += bisect_right(days, end) - bisect_right(days, start)
        return _weekdays_after(start, end) - off

    def local_date(self, ts: datetime) -> date:
        return ts.astimezone(ZoneInfo(self.tz)).date()

    def end_of_day(self, day: date) -> datetime:
        """The first instant after `day` ends, in the calendar's zone (aware)."""
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.tz))


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to that month's last day (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))
