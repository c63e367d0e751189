"""Business days: Monday to Friday, less the holidays of the configured countries
(from the maintained `holidays` library) and any extra dates from the config.

Dates are local dates in the configured time zone; a timestamp is turned into one with
`local_date`. Every function is pure: the calendar is built from its inputs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def _country_days(code: str, year: int) -> frozenset[date]:
    import holidays

    country, _, subdiv = code.partition("-")
    return frozenset(holidays.country_holidays(country, subdiv=subdiv or None, years=year))


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
        """Business days d with start < d <= end; negative when `end` is before `start`."""
        if end < start:
            return -self.business_days_between(end, start)
        return sum(1 for i in range(1, (end - start).days + 1) if self.is_business_day(start + timedelta(days=i)))

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
