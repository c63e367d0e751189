"""The normal form email addresses are matched by, and the look-alike check.

Two identities are the same subject only when their **mailbox keys** are equal:

* surrounding whitespace trimmed;
* the local part (before the last ``@``) lower-cased **in ASCII only** (``A``-``Z`` to
  ``a``-``z``): Braze and Ketch compare addresses case-insensitively, but a non-ASCII
  character is kept as it is: no Unicode case folding (``É`` stays ``É``), no ``ß`` -> ``ss``,
  no ``ſ`` (U+017F LONG S) -> ``s``, no ``K`` (U+212A KELVIN SIGN) -> ``k``, no compatibility
  normalisation (fullwidth ``ｕ`` stays). Such characters make a different mailbox, so a
  request for ``uſer@example.com`` never reaches ``user@example.com``;
* the domain lower-cased in ASCII and, when it holds non-ASCII characters, written as its
  IDNA 2008 A-label (``münchen.de`` -> ``xn--mnchen-3ya.de``), so both spellings of one
  domain meet. A domain IDNA 2008 refuses (a Kelvin sign, a compatibility character, a
  non-NFC or upper-case non-ASCII label) is a malformed address, rejected with the reason.

The **compatibility form** of a key (NFKC, Unicode case folding, NFKC again, on both parts,
the domain in its Unicode form) is what a careless comparison would merge. It is never used
to match; `look_alikes` uses it to find a key that differs from another subject's key only
by such characters, so that identity can be quarantined instead of acted on.

The `idna` package implements IDNA 2008 (RFC 5891-5893: contextual and bidi rules, the
code-point tables); Python's own ``encodings.idna`` is IDNA 2003, whose nameprep step folds
case and compatibility characters, the very merges this module exists to avoid.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

import idna

_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})


class MailboxError(ValueError):
    """An address with no mailbox key; the message is the reason shown to the operator."""


def ascii_lower(text: str) -> str:
    """`text` with A-Z lower-cased and every other character as it is."""
    return text.translate(_ASCII_LOWER)


def mailbox_key(address: str) -> str:
    """The matching key of one address (see the module doc); MailboxError when it has none."""
    value = address.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise MailboxError("malformed email address")
    domain = ascii_lower(domain)
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise MailboxError(f"email domain is not a valid internationalised domain name (IDNA 2008: {exc})") \
                from None
    return f"{ascii_lower(local)}@{domain}"


def key_or_none(address: object) -> str | None:
    """`mailbox_key`, or None for a missing value or an address without one."""
    if address is None or not isinstance(address, str) or not address.strip():
        return None
    try:
        return mailbox_key(address)
    except MailboxError:
        return None


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def compat_form(key: str) -> str:
    """What a careless comparison makes of a key: NFKC and Unicode case folding of both parts."""
    local, _, domain = key.rpartition("@")
    try:
        shown_domain = idna.decode(domain) if "xn--" in domain else domain
    except (idna.IDNAError, UnicodeError):
        shown_domain = domain
    return f"{_fold(local)}@{_fold(shown_domain)}"


def look_alikes(keys: Iterable[str]) -> dict[str, str]:
    """Among distinct mailbox keys, each one to quarantine -> the compatibility form it shares
    with another key. A key is quarantined when another key has the same compatibility form
    and this key is not already in that form (``uſer@x`` beside ``user@x``: only the first;
    two keys both off the form: both). Plain ASCII keys are their own form and never collide
    with each other."""
    groups: dict[str, list[str]] = {}
    for key in set(keys):
        if key.isascii() and "xn--" not in key:
            groups.setdefault(key, []).append(key)
            continue
        groups.setdefault(compat_form(key), []).append(key)
    out: dict[str, str] = {}
    for form, members in groups.items():
        if len(members) > 1:
            out.update({k: form for k in members if k != form})
    return out
