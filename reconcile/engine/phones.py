"""Phone numbers: raw values in, E.164 numbers and rejected values (with a reason) out.

Braze addresses SMS subscription groups by phone in E.164 (`+14155550123`), and
semantics §1 compares phone numbers in E.164. Numbers arrive as people type them: national
formats with spaces, dots, dashes and brackets (`(415) 555-0123`), trunk prefixes
(`020 7946 0018`), international prefixes (`00 44 20 7946 0018`), extensions. Parsing and
validating them against each country's numbering plan is what Google's libphonenumber
does, through the maintained `phonenumbers` port: its per-region metadata (lengths,
valid ranges, trunk and international prefixes) is far more than a hand-written pattern
could keep right. A number without a country code is read in `region` (the configured
`identity.phone_region`).

A number that does not parse, or parses to no valid number of its country, is rejected
with the reason, never guessed: it goes to the run's exceptions and is never written
to Braze.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd
import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from reconcile.engine.identity import CONTROL_PATTERN, shown

MAX_PHONE_CHARS = 64  # longer text is not a phone number (and is not parsed)
_CONTROL = re.compile(CONTROL_PATTERN)

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no valid country code (give +<country code>, or set "
                                               "identity.phone_region for national numbers)",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def region_supported(region: str) -> bool:
    """True for an ISO 3166 region code libphonenumber knows (`US`, `GB`, `DE`, ...)."""
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


@dataclass(frozen=True)
class Parsed:
    """One value's outcome: the E.164 number, or the reason it is refused."""

    e164: str | None
    reason: str | None


def parse_phone(value: object, region: str) -> Parsed:
    """`value` as E.164 (national numbers read in `region`), or why it cannot be."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
        return Parsed(None, "empty phone number")
    text = str(value).strip()
    if not text:
        return Parsed(None, "empty phone number")
    if _CONTROL.search(text):
        return Parsed(None, "phone number contains a control or invisible character")
    if len(text) > MAX_PHONE_CHARS:
        return Parsed(None, f"phone number longer than {MAX_PHONE_CHARS} characters")
    try:
        number = phonenumbers.parse(text, region.upper())
    except NumberParseException as exc:
        return Parsed(None, f"malformed phone number: {_PARSE_REASONS.get(exc.error_type, 'cannot be parsed')}")
    if not phonenumbers.is_valid_number(number):
        region_code = phonenumbers.region_code_for_country_code(number.country_code or 0)
        where = region_code if region_code not in (None, "ZZ", "001") else f"+{number.country_code}"
        return Parsed(None, f"invalid phone number: not a number of {where}'s numbering plan")
    return Parsed(phonenumbers.format_number(number, PhoneNumberFormat.E164), None)


_MEMO_SIZE = 2
_memo: OrderedDict[tuple[str, int, bytes], tuple[pd.Series, pd.DataFrame]] = OrderedDict()
_memo_lock = threading.Lock()


def normalize_phones(raw: pd.Series, region: str) -> tuple[pd.Series, pd.DataFrame]:
    """(E.164 numbers aligned with `raw`, NA where missing or refused; refused rows as
    identity (shown form), reason, indexed like `raw`). A missing value (NA, empty) is no
    phone, not an error. Each distinct value is parsed once.

    A run asks this of the same profiles several times (its SMS addresses, its subjects'
    numbers, its exceptions) and libphonenumber costs about 50 µs a number, so the last
    two answers are kept, keyed by a digest of the values with their index. Each caller
    gets its own copy."""
    text = raw.astype("string")
    key = (region, len(text), _digest(text))
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
            return hit[0].copy(), hit[1].copy()
    out, invalid = _normalize(text, region)
    with _memo_lock:
        _memo[key] = (out, invalid)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return out.copy(), invalid.copy()


def _digest(text: pd.Series) -> bytes:
    hashed = pd.util.hash_pandas_object(text, index=True, categorize=False)
    return hashlib.blake2b(hashed.to_numpy().tobytes(), digest_size=16).digest()


def _normalize(text: pd.Series, region: str) -> tuple[pd.Series, pd.DataFrame]:
    values = text.str.strip().fillna("").to_numpy(dtype=object)
    parsed = {v: parse_phone(v, region) for v in set(values.tolist()) if v}
    e164 = [parsed[v].e164 if v else None for v in values.tolist()]
    reasons = [parsed[v].reason if v else None for v in values.tolist()]
    out = pd.Series(e164, index=text.index, dtype="string")
    bad = pd.Series([r is not None for r in reasons], index=text.index)
    invalid = pd.DataFrame({"identity": text[bad].fillna("").map(shown).astype("string"),
                            "reason": pd.Series(reasons, index=text.index, dtype="string")[bad]})
    return out, invalid
