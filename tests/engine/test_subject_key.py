"""`subject_key` (one value) keys and rejects exactly as `normalize` (a column) does."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.engine.identity import normalize, subject_key

LOCAL = st.text(alphabet=st.sampled_from("aZ09.+-_!ſKßé\u00a0 \t\u200b"), min_size=0, max_size=12)
DOMAIN = st.sampled_from(["x.com", "EXAMPLE.org", "bücher.de", "x", "-a.com", "a..b", "xn--bcher-kva.de", "ß.de"])
addresses = st.builds(lambda local, domain, pad: f"{pad}{local}@{domain}{pad}", LOCAL, DOMAIN,
                      st.sampled_from(["", " ", "\t"]))
values = st.one_of(st.none(), addresses, st.emails(), st.text(max_size=40),
                   st.sampled_from(["", " ", "+1@evil.com", "a\x00@x.com", "x" * 300, "a" * 65 + "@x.com",
                                    "id 1", "id\u00a01", "ü" * 500, "Kate@Example.COM"]))


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(values, min_size=1, max_size=8))
@example(["uſer@x.com", "user@x.com", "straße@x.com", "Kelvin\u212a@x.com"])
@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_one_value_is_keyed_and_rejected_as_its_column_is(key_type, raw):
    valid, _invalid = normalize(pd.Series(raw, dtype="object"), key_type)
    by_column = {i: valid.loc[i, "subject_key"] if i in valid.index else None for i in range(len(raw))}
    assert {i: subject_key(v, key_type) for i, v in enumerate(raw)} == by_column
