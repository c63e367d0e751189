"""Property-based fuzzing of what the job reads: config files, CSV and Parquet universes,
deletions files and API answers. Each either parses or fails with the product's own clear
error (ConfigError, DataError, FatalApiError), never a traceback from deeper down; a
source that fails never lets a destructive action through."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from reconcile.clients import braze_results as br
from reconcile.clients import ketch_parse as kp
from reconcile.config import check_file, load_config
from reconcile.config.model import UniverseConfig
from reconcile.engine.times import parse_time
from reconcile.engine.universe import Sources, build_universe
from reconcile.pipeline.sources import load_deletions, load_listed
from reconcile.errors import ConfigError, DataError, ReconcileError

FUZZ = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["", "\x00", "\r\n", "2015-13-45", "https://x\r\n.y", "native"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)
toml_keys = st.sampled_from(["rest_endpoint", "base_url", "timeout_seconds", "max_body_bytes", "full_since",
                             "http_backend", "api_key_env", "topics", "organization", "csv", "slices", "enabled",
                             "max_deletions", "url", "reveal", "unknown_key"])
sections = st.sampled_from(["braze", "ketch", "identity", "mapping", "universe", "guards", "policy", "state",
                            "report", "sandbox", "apply", "bogus"])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and abs(v) < 2**63:
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return repr(v)
    return json.dumps(str(v))


@FUZZ
@given(st.dictionaries(sections, st.dictionaries(toml_keys, scalars, max_size=5), max_size=6),
       st.binary(max_size=40))
def test_any_config_file_loads_or_names_its_problems(tables: dict, junk: bytes) -> None:
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in body.items())
                   for name, body in tables.items())
    with tempfile.TemporaryDirectory() as tmp:
        for content in (text.encode(), junk, text.encode() + junk):
            path = Path(tmp) / "job.toml"
            path.write_bytes(content)
            try:
                load_config(path, {})
            except ConfigError as exc:
                assert exc.problems and all(p.key and p.fix for p in exc.problems)
            except UnicodeDecodeError:
                pass  # not UTF-8: the CLI reports it as an unreadable file
            else:
                pass
            try:
                for problem in check_file(path, {}):
                    assert problem.key and problem.fix
            except UnicodeDecodeError:
                pass


cells = st.one_of(st.text(max_size=40), st.emails(), st.sampled_from(["", "+1@evil.com", "a\x00@x.com", "x" * 300]))


@FUZZ
@given(st.lists(cells, max_size=30), st.sampled_from(["email", "external_id"]), st.sampled_from(["csv", "parquet"]),
       st.booleans())
def test_any_universe_file_is_read_refused_or_its_rows_rejected(values: list[str], key_type: str, fmt: str,
                                                               swap: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"u.{fmt}"
        column = "identity" if not swap else "other"
        frame = pd.DataFrame({column: pd.Series(values, dtype="string"), "updated_at": "2026-01-01"})
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
        cfg = UniverseConfig(**{fmt: path})
        try:
            listed = load_listed(cfg, None, key_type)
        except DataError as exc:
            assert str(path) in str(exc) or "universe" in str(exc)
            return
        empty = pd.DataFrame({"identity": pd.Series(dtype="string")})
        keys = pd.DataFrame({"subject_key": pd.Series(dtype="string"), "identity": pd.Series(dtype="string")})
        universe, exceptions = build_universe(
            Sources(listed, empty, pd.DataFrame({"email": pd.Series(dtype="string")}),
                    pd.DataFrame({"email": pd.Series(dtype="string")}), keys, keys), key_type)
        assert len(universe) <= len(listed) and len(exceptions) <= len(listed)
        assert not universe["deletion_requested"].any()
        for shown in exceptions["identity"]:
            assert "\x00" not in shown and len(shown) < 400


times = st.one_of(st.text(max_size=25), st.sampled_from(["0", "12", "1/2", "now", "2026-02-30", "", "1772366400",
                                                          "2026-03-01T12:00:00Z", "2026-03-01 13:00:00+01:00"]))


@FUZZ
@given(st.lists(st.tuples(cells, times), max_size=20),
       st.sampled_from([["identity", "requested_at"], ["requested_at", "identity"], ["email", "canonical_right_code"],
                        ["x", "y"]]))
@example(rows=[("0@0.0", "0"), ("0@0.1", "0")], columns=["identity", "requested_at"])  # dateutil read '0' as a date
@example(rows=[("a@example.com", "1/2"), ("a@example.com", "2026-03-01T12:00:00Z")], columns=["identity", "requested_at"])
@example(rows=[("a@example.com", "12"), ("b@example.com", "now")], columns=["identity", "requested_at"])
def test_any_deletions_file_is_read_or_refused_and_only_valid_identities_are_deleted(rows, columns) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deletions.csv"
        pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
        try:
            dels = load_deletions(UniverseConfig(deletions_csv=path), "email")
        except DataError as exc:
            assert "deletions" in str(exc)
            return
        empty = pd.DataFrame({"identity": pd.Series(dtype="string")})
        keys = pd.DataFrame({"subject_key": pd.Series(dtype="string"), "identity": pd.Series(dtype="string")})
        universe, exceptions = build_universe(
            Sources(empty, dels, pd.DataFrame({"email": pd.Series(dtype="string")}),
                    pd.DataFrame({"email": pd.Series(dtype="string")}), keys, keys), "email")
        from reconcile.engine.identity import normalize
        valid, _ = normalize(universe["identity"], "email")
        assert len(valid) == len(universe)  # every subject to delete has a valid address
        if "requested_at" not in columns:
            return
        # every time the plan may see was read by the explicit formats, never guessed
        written = pd.read_csv(path, dtype="string", keep_default_na=False)["requested_at"]
        readable = {parse_time(v) for v in written} - {None}
        asked = universe.loc[universe["deletion_requested"], "deletion_requested_at"].dropna()
        assert {t.to_pydatetime() for t in asked} <= readable
        # and a row whose time is not one is quarantined, named by file, row and column
        reasons = " ".join(exceptions["reason"])
        for row, value in enumerate(written, start=1):
            if value.strip() and parse_time(value) is None:
                assert f"{path}: row {row}, column 'requested_at': " in reasons, (row, value)


ENDPOINTS = ["/users/track", "/users/delete", "/email/blocklist", "/subscription/status/set"]


@FUZZ
@given(json_values, st.sampled_from(ENDPOINTS))
def test_any_braze_answer_parses_or_raises_a_product_error(body, endpoint: str) -> None:
    answer = br.Answer(200, body, br.body_message(body, json.dumps(body, default=str)), endpoint)
    assert isinstance(br.confirms(endpoint, body), bool)
    assert isinstance(br.body_message(body), str)
    for call in (lambda: br.export_users(answer), lambda: br.email_rows(body, endpoint, "unsubscribed_at"),
                 lambda: br.status_map(body, endpoint, ["a@x.com"], True),
                 lambda: br.user_status_page(body, endpoint, "email", ["a@x.com"]), lambda: br.page_size(answer),
                 lambda: br.answer_errors(body)):
        try:
            call()
        except ReconcileError as exc:
            assert str(exc)


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps(v, default=str).encode()), st.binary(max_size=60)))
def test_any_ketch_answer_parses_or_raises_a_product_error(content: bytes) -> None:
    try:
        body = kp.load_body(content, "consent/get")
    except ReconcileError as exc:
        assert str(exc)
        return
    for parse in (kp.parse_consent, kp.parse_subscriptions):
        try:
            parse(body if isinstance(body, dict) or body is None else None)
        except ReconcileError as exc:
            assert str(exc)
    assert kp.error_in_body(body) is None or isinstance(kp.error_in_body(body), str)
