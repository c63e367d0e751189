"""Identity normalisation: raw identities in, subject keys and rejected rows out.

A subject key is what matching uses: for emails the trimmed, case-folded address; for
external ids the trimmed string. The trimmed original is kept for API calls. Invalid
identities are never dropped silently: they come back with a reason.
"""

from __future__ import annotations

import pandas as pd

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
MAX_EMAIL_LENGTH = 254
MAX_EXTERNAL_ID_BYTES = 987  # Braze EXTERNAL_USER_ID_TOO_LARGE


def normalize(raw: pd.Series, key_type: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw identities into (valid, invalid).

    valid: columns subject_key, identity (trimmed original), index aligned with `raw`.
    invalid: columns identity (as given), reason.
    """
    text = raw.astype("string")
    trimmed = text.str.strip()
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")
    reason = reason.mask(text.isna() | (trimmed == ""), "empty identity")
    if key_type == "email":
        bad_shape = ~trimmed.fillna("").str.match(EMAIL_PATTERN)
        reason = reason.mask(reason.isna() & bad_shape, "malformed email address")
        too_long = trimmed.fillna("").str.len() > MAX_EMAIL_LENGTH
        reason = reason.mask(reason.isna() & too_long, f"email longer than {MAX_EMAIL_LENGTH} characters")
        key = trimmed.str.casefold()
    else:
        too_long = trimmed.fillna("").str.encode("utf-8").str.len() > MAX_EXTERNAL_ID_BYTES
        reason = reason.mask(reason.isna() & too_long, f"external_id longer than {MAX_EXTERNAL_ID_BYTES} bytes")
        has_space = trimmed.fillna("").str.contains(r"\s", regex=True)
        reason = reason.mask(reason.isna() & has_space, "external_id contains whitespace")
        key = trimmed
    ok = reason.isna()
    valid = pd.DataFrame({"subject_key": key[ok], "identity": trimmed[ok]})
    invalid = pd.DataFrame({"identity": text[~ok].fillna(""), "reason": reason[~ok]})
    return valid, invalid


def email_key(value: str | None) -> str | None:
    """The matching key of one email (trimmed, case-folded), or None."""
    if value is None:
        return None
    v = str(value).strip()
    return v.casefold() if v else None
