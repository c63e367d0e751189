"""Identity normalisation: raw identities in, subject keys and rejected rows out.

A subject key is what matching uses: for emails the mailbox key of models/mailbox.py (trimmed,
ASCII-lower-cased, the domain as its IDNA A-label; non-ASCII characters of the local part kept
as they are, so look-alike addresses stay distinct subjects); for external ids the trimmed
string. The trimmed original is kept for API calls. Invalid identities are never dropped
silently: they come back with a reason.

What an email address must look like (RFC 5321/5322 dot-atom, with RFC 6531's UTF-8):

* no control or invisible formatting characters anywhere (NUL, CR/LF, tab, DEL, C1
  controls, zero-width and bidi-override characters): they reach the APIs and the reports
  as they are, and an address holding one is a corrupted or hostile value, not a person;
* at most 254 characters, the local part at most 64;
* local part: one or more atoms of letters, digits, non-ASCII letters and
  ``!#$%&'*+-/=?^_`{|}~`` joined by single dots; no leading, trailing or doubled dot;
  quoted local parts (``"a b"@x.com``) are valid RFC syntax but are refused here: no
  consumer mailbox uses them and they carry characters the APIs treat specially;
* domain: two or more labels of letters, digits and hyphens (no hyphen first or last);
* **a local part starting with ``+`` is refused**. ``+`` is legal atext, but everywhere
  it is used it separates a mailbox from a subaddress tag (``ann+news@x.com`` reaches
  ``ann``); ``+1@evil.com`` names a tag and no mailbox. In an identity column it is a phone
  number or a placeholder typed into the wrong field, and writing consent for it
  (or deleting by it) acts on nobody the customer knows. ``ann+1@x.com`` is accepted.

External ids: at most 987 bytes (Braze's limit), no whitespace or control characters.

A rejected identity is kept for the exceptions list in a bounded, printable form
(`shown`): control characters escaped, at most `SHOWN_CHARS` characters, so a 10 MB field
or a NUL never reaches the state store or a report raw.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from reconcile.models.mailbox import MailboxError, key_or_none, mailbox_key

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_EXTERNAL_ID_BYTES = 987  # Braze EXTERNAL_USER_ID_TOO_LARGE
SHOWN_CHARS = 256

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\U0010ffff]"
_LABEL = r"[A-Za-z0-9\u00a0-\U0010ffff](?:[A-Za-z0-9\u00a0-\U0010ffff\-]*[A-Za-z0-9\u00a0-\U0010ffff])?"
EMAIL_PATTERN = rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+$"
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]"
_CONTROL = re.compile(CONTROL_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_SPACE = re.compile(r"\s")


def shown(value: str) -> str:
    """A rejected value as it may be stored and printed: control characters escaped, bounded."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        value[:SHOWN_CHARS * 2])
    if len(value) > SHOWN_CHARS or len(text) > SHOWN_CHARS:
        return f"{text[:SHOWN_CHARS]}... ({len(value)} characters)"
    return text


def normalize(raw: pd.Series, key_type: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw identities into (valid, invalid).

    valid: columns subject_key, identity (trimmed original), index aligned with `raw`.
    invalid: columns identity (as given, in its `shown` form), reason.
    """
    text = raw.astype("string")
    trimmed = text.str.strip()
    plain = trimmed.fillna("")
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")

    def reject(mask: pd.Series, why: str) -> None:
        nonlocal reason
        reason = reason.mask(reason.isna() & mask, why)

    reject(text.isna() | (plain == ""), "empty identity")
    reject(plain.str.contains(CONTROL_PATTERN, regex=True), "contains a control or invisible character")
    if key_type == "email":
        reject(plain.str.len() > MAX_EMAIL_LENGTH, f"email longer than {MAX_EMAIL_LENGTH} characters")
        reject(~plain.str.match(EMAIL_PATTERN), "malformed email address")
        local = plain.str.rsplit("@", n=1).str[0]
        reject(local.str.len() > MAX_LOCAL_LENGTH, f"email local part longer than {MAX_LOCAL_LENGTH} characters")
        reject(local.str.startswith("+"), "email local part starts with '+' (a subaddress tag with no mailbox)")
        key, why = _mailbox_keys(plain)
        reason = reason.mask(reason.isna() & why.notna(), why)
    else:
        byte_length = plain.str.encode("utf-8").str.len()  # type: ignore[misc]  # pandas-stubs: .str.len() of str only
        reject(byte_length > MAX_EXTERNAL_ID_BYTES, f"external_id longer than {MAX_EXTERNAL_ID_BYTES} bytes")
        reject(plain.str.contains(r"\s", regex=True), "external_id contains whitespace")
        key = trimmed
    ok = reason.isna()
    valid = pd.DataFrame({"subject_key": key[ok], "identity": trimmed[ok]})
    bad = text[~ok].fillna("")
    invalid = pd.DataFrame({"identity": bad.map(shown, na_action="ignore").astype("string"), "reason": reason[~ok]})
    return valid, invalid


def _mailbox_keys(plain: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(mailbox key, reason when there is none) per address; plain ASCII is lower-cased in
    one vectorised pass, only non-ASCII addresses go through `mailbox_key` one by one."""
    key = plain.str.lower().to_numpy(dtype=object, copy=True)  # exact for ASCII text
    why = np.full(len(plain), None, dtype=object)
    for pos in _non_ascii(plain):
        try:
            key[pos] = mailbox_key(plain.iloc[pos])
        except MailboxError as exc:
            key[pos], why[pos] = None, str(exc)
    return pd.Series(key, index=plain.index, dtype="string"), pd.Series(why, index=plain.index, dtype="string")


def _non_ascii(text: pd.Series) -> np.ndarray:
    ascii_only = text.map(str.isascii, na_action="ignore").astype("boolean").fillna(True).to_numpy(dtype=bool)
    return np.flatnonzero(~ascii_only)


def subject_key(value: str | None, key_type: str) -> str | None:
    """One identity's subject key by `normalize`'s rules (None where `normalize` rejects it),
    for a caller holding a single value (a webhook message): a one-row `normalize` costs
    thousands of times more."""
    text = (value or "").strip()
    if not text or _CONTROL.search(text):
        return None
    if key_type != "email":
        too_long = len(text.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES
        return None if too_long or _SPACE.search(text) else text
    local = text.rsplit("@", 1)[0]
    if len(text) > MAX_EMAIL_LENGTH or not _EMAIL.match(text) or len(local) > MAX_LOCAL_LENGTH \
            or local.startswith("+"):
        return None
    return text.lower() if text.isascii() else key_or_none(text)


def email_key(value: str | None) -> str | None:
    """The matching key of one email (models/mailbox.py), or None."""
    return key_or_none(value)


def email_keys(values: pd.Series) -> pd.Series:
    """`email_key` of each value (NA where there is none), vectorised for ASCII addresses."""
    keys, _why = _mailbox_keys(values.astype("string").str.strip())
    return keys.mask(keys == "", pd.NA)
