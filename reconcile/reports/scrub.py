"""Masking a report: every identity, wherever it appears.

`reconcile.reports.masking.mask_all` masks values under identity keys and email addresses inside
free text. An external id echoed inside free text (a Braze error naming a user) is not an
email, so it is found here by exact match against every identity the report names: each
word of every other string that equals a known identity (case-insensitively) is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from reconcile.reports.masking import IDENTITY_KEY, mask, mask_all

WORD = re.compile(r"[^\s,;:()<>\[\]{}\"'=/|`]+")
PRIVATE_KEY = "_identities"


def known_identities(value: Any, identity: bool = False) -> set[str]:
    """Every non-empty string under an identity key, anywhere in `value`."""
    if isinstance(value, str):
        return {value.strip()} if identity and value.strip() else set()
    if isinstance(value, Mapping):
        out: set[str] = set()
        for k, v in value.items():
            out |= known_identities(v, identity or (isinstance(k, str) and bool(IDENTITY_KEY.match(k))))
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*(known_identities(v, identity) for v in value)) if value else set()
    return set()


def _mask_words(value: Any, known: frozenset[str], key: bytes, identity: bool = False) -> Any:
    if isinstance(value, str):
        if identity or not known:
            return value
        return WORD.sub(lambda m: mask(m.group(0), key) if m.group(0).casefold() in known else m.group(0), value)
    if isinstance(value, Mapping):
        return {k: _mask_words(v, known, key, identity or (isinstance(k, str) and bool(IDENTITY_KEY.match(k))))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_words(v, known, key, identity) for v in value]
    return value


def masked_report(doc: dict[str, Any], key: bytes, extra: Iterable[str] = ()) -> dict[str, Any]:
    """`doc` with every identity masked (see the module docstring)."""
    known = frozenset(i.casefold() for i in known_identities(doc) | set(extra) if len(i) >= 3)
    return mask_all(_mask_words(doc, known, key), key)


def prepared(doc: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """Drop the private identity list; mask unless `key` is None (revealed)."""
    extra = doc.pop(PRIVATE_KEY, ())
    return doc if key is None else masked_report(doc, key, extra)
