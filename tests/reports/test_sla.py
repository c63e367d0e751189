"""Deadline ageing in business days: weekends, configured holidays, a month end, a DST change."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from reconcile.reports.calendar import BusinessCalendar, add_months
from reconcile.reports.sla import SlaPolicy, age_item

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
PLAIN = BusinessCalendar()
US = BusinessCalendar(("US",), frozenset({date(2026, 12, 24)}), "America/New_York")


def item(cls: str = "missed_optout", source: datetime | None = None, first: datetime | None = None, **extra):
    return {"id": 1, "subject_key": "s", "drift_class": cls, "field": "g", "status": "open",
            "ketch_collected_at": source, "first_seen_at": first or source, **extra}


@pytest.mark.parametrize("start, end, days", [
    (date(2026, 3, 6), date(2026, 3, 7), 0),    # Friday -> Saturday
    (date(2026, 3, 6), date(2026, 3, 9), 1),    # Friday -> Monday
    (date(2026, 3, 7), date(2026, 3, 9), 1),    # Saturday -> Monday
    (date(2026, 3, 2), date(2026, 3, 16), 10),  # two weeks
    (date(2026, 3, 9), date(2026, 3, 6), -1),
])
def test_business_days_skip_weekends(start: date, end: date, days: int) -> None:
    assert PLAIN.business_days_between(start, end) == days


def test_library_and_configured_holidays_are_not_business_days() -> None:
    assert not US.is_business_day(date(2026, 11, 26))  # Thanksgiving, from `holidays`
    assert not US.is_business_day(date(2026, 12, 24))  # configured extra date
    assert not US.is_business_day(date(2026, 12, 25))
    # Mon 21 Dec: Tue 22, Wed 23 count; Thu 24 (extra), Fri 25 (Christmas), the weekend do not
    assert US.business_days_between(date(2026, 12, 21), date(2026, 12, 28)) == 3
    assert US.add_business_days(date(2026, 12, 21), 10) == date(2027, 1, 7)  # 1 Jan is a holiday too
    assert PLAIN.add_business_days(date(2026, 12, 21), 10) == date(2027, 1, 4)


def test_a_deadline_across_a_month_end() -> None:
    assert PLAIN.add_business_days(date(2026, 4, 24), 10) == date(2026, 5, 8)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2026, 3, 15), -24) == date(2024, 3, 15)


def test_can_spam_ten_business_days_across_a_dst_change_in_new_york() -> None:
    """US clocks go forward on Sunday 8 March 2026; local dates, not 24-hour steps, count."""
    policy = SlaPolicy(("can_spam",), BusinessCalendar((), frozenset(), "America/New_York"))
    source = datetime(2026, 3, 6, 23, 30, tzinfo=NY)  # Friday evening local, Saturday in UTC
    aged = age_item(item(source=source.astimezone(UTC)), policy, datetime(2026, 3, 10, tzinfo=UTC))
    assert aged["due_at"] == datetime(2026, 3, 21, 0, 0, tzinfo=NY)  # end of Friday 20 March, local
    assert aged["due_at"].utcoffset().total_seconds() == -4 * 3600  # EDT by then
    late = age_item(item(source=source.astimezone(UTC), corrected_at=datetime(2026, 3, 21, 3, 59, tzinfo=UTC)),
                    policy, datetime(2026, 3, 30, tzinfo=UTC))
    assert late["sla"] == "met" and late["business_days_to_done"] == 10  # 23:59 Friday local
    later = age_item(item(source=source.astimezone(UTC), corrected_at=datetime(2026, 3, 21, 4, 0, tzinfo=UTC)),
                     policy, datetime(2026, 3, 30, tzinfo=UTC))
    assert later["sla"] == "breached"


def test_open_items_near_their_deadline_are_flagged_and_overdue_ones_breached() -> None:
    policy = SlaPolicy(("can_spam",), PLAIN, near_days=2)
    source = datetime(2026, 3, 2, 10, tzinfo=UTC)  # due at the end of Monday 16 March
    assert age_item(item(source=source), policy, datetime(2026, 3, 10, tzinfo=UTC))["sla"] == "open"
    near = age_item(item(source=source), policy, datetime(2026, 3, 12, 12, tzinfo=UTC))
    assert near["sla"] == "nearing" and near["business_days_left"] == 2 and near["business_days_open"] == 8
    assert age_item(item(source=source), policy, datetime(2026, 3, 17, tzinfo=UTC))["sla"] == "breached"


def test_the_strictest_configured_deadline_wins() -> None:
    source = datetime(2026, 1, 30, 12, tzinfo=UTC)
    deletion = item("missed_deletion", source=None, first=source)
    gdpr_ccpa = age_item(deletion, SlaPolicy(("ccpa", "gdpr"), PLAIN), source)
    assert gdpr_ccpa["regulation"] == "gdpr" and gdpr_ccpa["due_at"] == datetime(2026, 3, 1, tzinfo=UTC)
    ccpa = age_item(deletion, SlaPolicy(("ccpa",), PLAIN), source)
    assert ccpa["due_at"] == datetime(2026, 3, 17, tzinfo=UTC)  # 45 calendar days
    optout = age_item(item(source=source), SlaPolicy(("ccpa", "can_spam"), PLAIN), source)
    assert optout["regulation"] == "can_spam"
    assert age_item(item(source=source), SlaPolicy(("gdpr",), PLAIN), source)["sla"] == "no deadline"


def test_the_clock_source_is_named() -> None:
    first = datetime(2026, 3, 2, tzinfo=UTC)
    policy = SlaPolicy(("ccpa",), PLAIN)
    assert age_item(item(source=first), policy, first)["source"] == "ketch_collected_at"
    unknown = age_item(item(source=None, first=first), policy, first)
    assert unknown["source"] == "first_seen" and "unknown" in unknown["source_label"]
    requested = item("missed_deletion", first=first, detail={"requested_at": "2026-02-20T08:00:00+00:00"})
    aged = age_item(requested, policy, first)
    assert aged["source"] == "deletion_request" and aged["source_at"] == datetime(2026, 2, 20, 8, tzinfo=UTC)


def _counted_day_by_day(cal: BusinessCalendar, start: date, end: date) -> int:
    from datetime import timedelta

    if end < start:
        return -_counted_day_by_day(cal, end, start)
    return sum(1 for i in range(1, (end - start).days + 1) if cal.is_business_day(start + timedelta(days=i)))


@pytest.mark.hypothesis  # its property runs inside: `scripts/explore.sh` selects it
def test_business_days_between_matches_counting_day_by_day():
    from datetime import timedelta

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis_profiles import examples

    days = st.dates(min_value=date(2019, 1, 1), max_value=date(2030, 12, 31))
    calendars = st.builds(BusinessCalendar, st.sampled_from([(), ("US",), ("DE-BY", "FR"), ("GB",)]),
                          st.frozensets(days, max_size=6))

    @settings(max_examples=examples(300), deadline=None)
    @given(calendars, days, st.integers(min_value=-900, max_value=900))
    def check(cal: BusinessCalendar, start: date, span: int) -> None:
        end = start + timedelta(days=span)
        assert cal.business_days_between(start, end) == _counted_day_by_day(cal, start, end)

    check()


def test_sms_opt_outs_age_against_the_tcpa_and_email_ones_against_can_spam() -> None:
    policy = SlaPolicy(("can_spam", "tcpa"), PLAIN, sms_groups=frozenset({"g-sms"}))
    source = datetime(2026, 3, 2, tzinfo=UTC)
    sms = age_item(item(source=source, field="group:g-sms"), policy, source)
    email = age_item(item(source=source, field="group:g-news"), policy, source)
    glob = age_item(item(source=source, field="email_subscribe"), policy, source)
    assert (sms["channel"], sms["regulation"]) == ("sms", "tcpa") and "TCPA SMS opt-out" in sms["deadline"]
    assert (email["channel"], email["regulation"]) == ("email", "can_spam")
    assert (glob["channel"], glob["regulation"]) == ("email", "can_spam")
    # with CAN-SPAM alone an SMS opt-out has no deadline; with the TCPA alone an email one has none
    assert age_item(item(source=source, field="group:g-sms"), SlaPolicy(("can_spam",), PLAIN,
                    sms_groups=frozenset({"g-sms"})), source)["sla"] == "no deadline"
    assert age_item(item(source=source, field="group:g-news"), SlaPolicy(("tcpa",), PLAIN,
                    sms_groups=frozenset({"g-sms"})), source)["sla"] == "no deadline"
