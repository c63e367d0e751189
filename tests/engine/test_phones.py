"""Phone numbers: every valid number, however it is written, reaches E.164; every invalid
one is an exception with a reason; none of those is ever a Braze target.

Valid numbers are libphonenumber's example numbers of many regions and number types,
written the ways people write them (national, international, with spaces, dots, dashes,
brackets, an international prefix); invalid ones are text of every kind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from reconcile.config import parse_config
from reconcile.engine.diff import Rules
from reconcile.engine.frames import conform
from reconcile.engine.phones import normalize_phones, parse_phone
from reconcile.engine.plan import build_plan
from reconcile.engine.sms import sms_addresses
from reconcile.engine.universe import Sources, build_universe

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
EXAMPLES = sorted({(region, phonenumbers.format_number(n, PhoneNumberFormat.E164))
                   for region in sorted(phonenumbers.SUPPORTED_REGIONS) for t in TYPES
                   if (n := phonenumbers.example_number_for_type(region, t)) is not None
                   and phonenumbers.is_valid_number(n)})
SEPARATORS = st.sampled_from([" ", "-", ".", "", "  ", " - "])


@st.composite
def written(draw: st.DrawFn) -> tuple[str, str, str]:
    """(region, the number as someone wrote it, its E.164)."""
    region, e164 = draw(st.sampled_from(EXAMPLES))
    number = phonenumbers.parse(e164)
    style = draw(st.sampled_from(["national", "international", "e164", "rfc3966", "digits", "regrouped", "idd"]))
    if style == "national":
        text = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    elif style == "international":
        text = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    elif style == "e164":
        text = e164
    elif style == "rfc3966":
        text = phonenumbers.format_number(number, PhoneNumberFormat.RFC3966)
    elif style == "idd":  # dialled from abroad with the international prefix 00 (region GB reads it)
        text, region = "00" + e164[1:], "GB"
    else:  # the national digits regrouped with separators: 415 555 2671, 415.555.2671, (415) 555-2671
        digits = re.sub(r"\D", "", phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL))
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(digits) - 1)), max_size=3)))
        parts = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)])]
        text = draw(SEPARATORS).join(parts) if style == "regrouped" else "".join(parts)
        if style == "regrouped" and len(parts) > 1 and draw(st.booleans()):
            text = f"({parts[0]}) " + draw(SEPARATORS).join(parts[1:])
    pad = draw(st.sampled_from(["", " ", "\u00a0", "  "]))
    return region, pad + text + pad, e164


INVALID = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz@._", min_size=1, max_size=20),  # not a number at all
    st.integers(0, 99_999).map(str),                                             # far too short
    st.integers(1, 99).map(lambda n: "+" + str(n)),                              # a country code alone
    st.from_regex(r"\+999[0-9]{6,9}", fullmatch=True),                          # no such country
    st.from_regex(r"\+1(0|1)[0-9]{9}", fullmatch=True),                          # NANP area codes start 2-9
    st.from_regex(r"\+44[0-9]{13,16}", fullmatch=True),                          # too long for the UK
    st.from_regex(r"[0-9]{3}\x00[0-9]{7}", fullmatch=True),                      # a NUL inside
    st.text(alphabet="0123456789", min_size=70, max_size=90),                    # longer than any number
)


@settings(max_examples=400, deadline=None)
@given(written())
def test_every_valid_number_reaches_e164_however_it_is_written(case: tuple[str, str, str]) -> None:
    region, text, e164 = case
    parsed = parse_phone(text, region)
    assert parsed.reason is None, (text, region, parsed.reason)
    assert parsed.e164 == e164 and E164.match(parsed.e164)


@settings(max_examples=300, deadline=None)
@given(INVALID, st.sampled_from(["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU"]))
def test_every_invalid_value_is_refused_with_a_reason(text: str, region: str) -> None:
    parsed = parse_phone(text, region)
    assert parsed.e164 is None and parsed.reason
    assert "phone" in parsed.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["US", "GB", "DE", "MX", "SG"]))
def test_any_text_is_either_a_valid_e164_number_or_refused(text: str, region: str) -> None:
    parsed = parse_phone(text, region)
    assert (parsed.e164 is None) != (parsed.reason is None)
    if parsed.e164 is not None:
        again = phonenumbers.parse(parsed.e164)
        assert E164.match(parsed.e164) and phonenumbers.is_valid_number(again)
        assert phonenumbers.format_number(again, PhoneNumberFormat.E164) == parsed.e164


def test_a_national_number_is_read_in_the_configured_region() -> None:
    assert parse_phone("(415) 555-2671", "US").e164 == "+14155552671"
    assert parse_phone("020 7946 0018", "GB").e164 == "+442079460018"
    assert parse_phone("030 123456", "DE").e164 == "+4930123456"
    assert parse_phone("020 7946 0018", "US").reason is not None  # not a US number


MISSING = st.sampled_from([None, "", "   ", pd.NA])
ENTRY = st.one_of(written().map(lambda c: ("valid", c)), INVALID.map(lambda t: ("invalid", ("US", t, None))),
                  MISSING.map(lambda m: ("missing", ("US", m, None))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, min_size=1, max_size=25))
def test_invalid_numbers_are_exceptions_and_never_braze_targets(tmp_path_factory, entries) -> None:
    """A universe whose phone column holds valid numbers (in their region's national
    formats: the region is per row here through E.164 where it differs), invalid ones and
    missing ones; every subject has a Braze profile and an SMS opt-out to apply."""
    rows, expected = [], {}
    for i, (kind, (region, text, e164)) in enumerate(entries):
        email = f"p{i}@example.com"
        value = text if kind != "valid" or region == "US" else e164  # national formats are the US region's
        rows.append({"identity": email, "phone": value})
        expected[email] = (kind, e164)
    listed = pd.DataFrame(rows).astype({"identity": "string"})
    empty = pd.DataFrame({"identity": pd.Series(dtype="string")})
    lists = pd.DataFrame({"email": pd.Series(dtype="string")})
    frame = pd.DataFrame({"subject_key": pd.Series(dtype="string"), "identity": pd.Series(dtype="string")})
    universe, exceptions = build_universe(Sources(listed, empty, lists, lists, frame, frame), "email", "US")

    refused = set(exceptions["identity"])
    for email, (kind, e164) in expected.items():
        phone = universe.loc[universe["subject_key"] == email, "phone"].iloc[0]
        if kind == "valid":
            assert phone == e164 and email not in refused
        elif kind == "invalid":
            assert pd.isna(phone) and email in refused
            reason = exceptions.loc[exceptions["identity"] == email, "reason"].iloc[0]
            assert reason.startswith("phone ") and ": " in reason
        else:  # a missing number is no number, not an error
            assert pd.isna(phone) and email not in refused

    cfg = _config(tmp_path_factory.mktemp("cfg"))
    profiles = conform(pd.DataFrame({"subject_key": universe["subject_key"], "braze_id": [f"b{i}" for i in
                                     range(len(universe))], "external_id": pd.NA, "email": universe["identity"],
                                     "email_subscribe": "subscribed", "phone": pd.NA}), "braze_profiles")
    targets = sms_addresses(universe, profiles, cfg)
    drift = pd.DataFrame({"subject_key": universe["subject_key"], "identity": universe["identity"],
                          "drift_class": "missed_optout", "field": "group", "action": "group_unsubscribe",
                          "group_id": "sg-sms", "braze_unsubscribed_at": pd.NaT})
    plan = build_plan(drift, universe.set_index("subject_key")["email"], profiles, Rules.from_config(cfg),
                      plan_fp="fp", plan_id="p", sms_targets=targets)
    sent = [(t.id_type.value, t.value) for a in plan.actions for t in a.targets]
    valid = {e164 for kind, e164 in expected.values() if kind == "valid"}
    assert all(id_type == "phone" for id_type, _ in sent)
    assert {value for _, value in sent} == valid
    assert all(E164.match(v) for _, v in sent)
    assert all(len(a.targets) <= 50 for a in plan.actions)


def _config(tmp: Path):
    return parse_config({
        "ketch": {"organization": "acme", "property": "web", "environment": "production", "jurisdiction": "default"},
        "identity": {"phone_sources": ["universe"], "phone_region": "US"},
        "mapping": {"global_control_engaged": "granted",
                    "topics": [{"topic": "news", "channel": "sms", "subscription_group_id": "sg-sms"}]},
        "universe": {"phone_column": "phone"},
    }, tmp)


@pytest.mark.parametrize("values, e164, bad", [
    ([" +1 (415) 555-2671 ", None, "", "415.555.2671"], ["+14155552671", None, None, "+14155552671"], 0),
    (["12", "+999 123 456"], [None, None], 2),
])
def test_normalize_phones_keeps_alignment(values, e164, bad) -> None:
    out, invalid = normalize_phones(pd.Series(values, index=[10 + i for i in range(len(values))]), "US")
    assert [None if pd.isna(v) else v for v in out.tolist()] == e164 and list(out.index) == [10, 11, 12, 13][:len(e164)]
    assert len(invalid) == bad and set(invalid.index) <= set(out.index)


PHONE_TEXT = st.one_of(st.none(), st.sampled_from(["+14155552671", "415.555.2671", "020 7946 0018", "12", "", " "]),
                       st.text(max_size=12))


@given(st.lists(st.tuples(PHONE_TEXT, st.integers(0, 10**6)), max_size=12, unique_by=lambda t: t[1]),
       st.sampled_from(["US", "GB"]))
@settings(max_examples=150)
def test_a_repeated_ask_answers_what_parsing_answers(rows: list[tuple[str | None, int]], region: str) -> None:
    """The last answers are kept and given again; every ask, first or repeated, equals
    parsing each value afresh, for the same values under another index or region too, and
    an answer changed by its caller changes no later answer."""
    values = pd.Series([v for v, _ in rows], index=[i for _, i in rows], dtype="string")
    fresh = [parse_phone(v, region).e164 if v and v.strip() else None for v in values.fillna("").str.strip()]
    for ask in (values, values.copy(), values.set_axis([i + 1 for _, i in rows])):
        out, invalid = normalize_phones(ask, region)
        assert list(out.index) == list(ask.index)
        assert [None if pd.isna(v) else v for v in out.tolist()] == fresh
        assert set(invalid.index) == {i for i, v in zip(ask.index, fresh) if v is None and pd.notna(ask[i])
                                      and ask[i].strip()}
        out[:] = "+10000000000"
        invalid["reason"] = "changed by the caller"
    other = "GB" if region == "US" else "US"
    again, _ = normalize_phones(values, other)
    assert [None if pd.isna(v) else v for v in again.tolist()] == \
        [parse_phone(v, other).e164 if v and v.strip() else None for v in values.fillna("").str.strip()]
