"""Hostile values are refused where they enter, with an error naming the field and never
echoing a secret: identities (control characters, huge fields, '+1@evil.com'), config
URLs with CR/LF, impossible dates, unusable proxies, and API keys with line breaks."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pandas as pd
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.config import BrazeConfig, braze_api_key, check_file, parse_config, proxy_problems
from reconcile.engine.identity import SHOWN_CHARS, normalize
from reconcile.errors import ConfigError
from reconcile.redact import QueryFilter, SecretFilter, install_query_filter, redact_queries, redact_text

KETCH = {"organization": "acme", "property": "web", "environment": "production", "jurisdiction": "default"}
MAPPING = {"email_purpose": "email_marketing", "global_control_engaged": "granted"}
KEY = "braze-key\nX-Injected: 1"


def minimal(**sections: dict) -> dict:
    data = {"braze": {"rest_endpoint": "https://rest.iad-01.braze.com"}, "ketch": dict(KETCH), "mapping": dict(MAPPING)}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def problems(data: dict, tmp_path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path)
    return {p.key: f"{p.problem} | {p.fix}" for p in err.value.problems}


# == identities ===============================================================================
@pytest.mark.parametrize("value,reason", [
    ("a\x00b@example.com", "control"), ("a\rb@example.com", "control"), ("ann@exa\x1bmple.com", "control"),
    ("a\u202eb@example.com", "invisible"), ("a\u200b@example.com", "invisible"),
    ("+1@evil.com", "starts with '+'"), ("+@evil.com", "starts with '+'"),
    ("a..b@example.com", "malformed"), (".a@example.com", "malformed"), ("a@-example.com", "malformed"),
    ('"a b"@example.com', "malformed"), ("a<b>@example.com", "malformed"), ("a@example", "malformed"),
    ("x" * 65 + "@example.com", "local part longer than 64"), ("x" * 10_000_000 + "@example.com", "longer than 254"),
])
def test_hostile_emails_are_rejected_with_a_reason(value: str, reason: str) -> None:
    valid, invalid = normalize(pd.Series([value, "ok@example.com"]), "email")
    assert valid["identity"].tolist() == ["ok@example.com"]
    assert reason in invalid["reason"].iloc[0]
    shown = invalid["identity"].iloc[0]
    assert len(shown) <= SHOWN_CHARS + 40 and not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in shown)


@pytest.mark.parametrize("value, key", [
    ("ann+1@example.com", "ann+1@example.com"), ("o'brien@example.ie", "o'brien@example.ie"),
    ("josé@exämple.de", "josé@xn--exmple-cua.de"), ("A.B-C_d@sub.example.co.uk", "a.b-c_d@sub.example.co.uk"),
    ("  Ann@Example.com  ", "ann@example.com"), ("JOSÉ@EXäMPLE.de", "josÉ@xn--exmple-cua.de")])
def test_ordinary_addresses_are_kept(value: str, key: str) -> None:
    valid, invalid = normalize(pd.Series([value]), "email")
    assert len(invalid) == 0 and valid["subject_key"].iloc[0] == key


@pytest.mark.parametrize("value", ["id\x00", "id\x7f1", "a" * 988, "a b"])
def test_hostile_external_ids_are_rejected(value: str) -> None:
    valid, invalid = normalize(pd.Series([value, "user-1"]), "external_id")
    assert valid["identity"].tolist() == ["user-1"] and len(invalid) == 1


# == config values ============================================================================
@pytest.mark.parametrize("section,key,value", [
    ("braze", "rest_endpoint", "https://rest.iad-01.braze.com\r\nX-Evil: 1"),
    ("braze", "rest_endpoint", "https://rest.iad-01.braze.com\n"),
    ("ketch", "base_url", "https://global.ketchcdn.com/web/v3\r\n"),
    ("ketch", "base_url", "https://global.ketch\tcdn.com/web/v3"),
])
def test_urls_with_line_breaks_or_control_characters_are_refused(tmp_path: Path, section: str, key: str,
                                                                  value: str) -> None:
    got = problems(minimal(**{section: {key: value}}), tmp_path)
    assert "line break" in got[f"{section}.{key}"]


@pytest.mark.parametrize("value", ["2015-13-45", "2015-02-30", "yesterday", ""])
def test_an_impossible_full_since_is_refused_at_load(tmp_path: Path, value: str) -> None:
    got = problems(minimal(universe={"full_since": value}), tmp_path)
    assert "not a calendar date" in got["universe.full_since"] and "2010-01-01" in got["universe.full_since"]


def test_config_check_reports_a_bad_date_a_bad_url_and_a_key_with_a_line_break(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('[braze]\nrest_endpoint = "https://rest.iad-01.braze.com\\r\\n"\n'
                    '[ketch]\norganization = "a"\nproperty = "b"\njurisdiction = "c"\n'
                    '[mapping]\nemail_purpose = "m"\nglobal_control_engaged = "granted"\n'
                    '[universe]\nfull_since = "2015-13-45"\n')
    found = check_file(path, {"BRAZE_API_KEY": KEY})
    keys = {p.key for p in found}
    assert {"braze.rest_endpoint", "universe.full_since", "braze.api_key_env"} <= keys
    assert all("Injected" not in str(p) for p in found)


def test_a_key_with_a_line_break_is_refused_naming_the_variable_never_the_value() -> None:
    from reconcile.config import Config
    cfg = Config(braze=BrazeConfig(api_key_env="MY_BRAZE_KEY"))
    with pytest.raises(ConfigError) as err:
        braze_api_key(cfg, {"MY_BRAZE_KEY": KEY})
    assert "MY_BRAZE_KEY" in str(err.value) and "control character" in str(err.value)
    assert "braze-key" not in str(err.value) and "Injected" not in str(err.value)
    assert braze_api_key(cfg, {"MY_BRAZE_KEY": "braze-key-1234\n"}) == "braze-key-1234\n"  # a trailing newline is trimmed


def test_the_braze_client_refuses_a_key_with_a_line_break_without_showing_it() -> None:
    with pytest.raises(ValueError) as err:
        BrazeClient(BrazeConfig(rest_endpoint="http://127.0.0.1:9"), "abc\ndef-key")
    assert "control character" in str(err.value) and "def-key" not in str(err.value)


def test_the_secret_filter_masks_the_escaped_key_in_an_http_library_trace() -> None:
    record = logging.LogRecord("httpcore.http11", logging.DEBUG, __file__, 1, "send_request_headers.failed exception=%r",
                               (ValueError("Illegal header value b'Bearer abc\\ndef-key'"),), None)
    SecretFilter(["abc\ndef-key"]).filter(record)
    assert "def-key" not in record.getMessage() and "***" in record.getMessage()


@pytest.mark.parametrize("value,bad", [("https://proxy.corp:3128", True), ("socks5://127.0.0.1:1080", True),
                                       ("http://u:p@[bad", True), ("http://proxy.corp:3128", False)])
@pytest.mark.parametrize("backend", ["native", "auto", "aiohttp"])
def test_a_proxy_the_aiohttp_path_cannot_use_is_a_clear_error(value: str, bad: bool, backend: str) -> None:
    found = proxy_problems(backend, {"HTTPS_PROXY": value})
    assert bool(found) is bad
    if bad:
        assert found[0].key == "ketch.http_backend" and "HTTPS_PROXY" in str(found[0]) and "httpx" in found[0].fix
    assert proxy_problems("httpx", {"HTTPS_PROXY": value}) == []


def test_native_is_read_as_aiohttp(tmp_path: Path) -> None:
    cfg = parse_config(minimal(ketch={"http_backend": "native"}), tmp_path)
    assert cfg.ketch.http_backend == "aiohttp"


# == redaction ================================================================================
def test_escaped_forms_of_a_key_are_scrubbed() -> None:
    secret = 'k3y"\\\n\x00/+ &é'
    texts = [secret, repr(secret), repr(secret.encode()), f"Illegal header value b'Bearer {secret!r}'"]
    import json
    from urllib.parse import quote, quote_plus
    texts += [json.dumps(secret), quote(secret, safe=""), quote_plus(secret)]
    for text in texts:
        out = redact_text(text, [secret])
        assert "k3y" not in out, (text, out)


def test_query_strings_are_masked_in_every_logged_url() -> None:
    line = ('HTTP Request: GET https://rest.iad-01.braze.com/subscription/status/get?subscription_group_id=g1'
            '&email%5B%5D=ann%40example.com&external_id=u1&limit=50&offset=100 "HTTP/1.1 200 OK"')
    out = redact_queries(line)
    assert "ann" not in out and "u1" not in out and "***" in out
    assert "subscription_group_id=g1" in out and "limit=50" in out and "offset=100" in out


def test_the_runtime_filters_mask_httpx_request_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    install_query_filter(root.handlers)
    handler.addFilter(SecretFilter(["sekret-key-1"]))
    logger = logging.getLogger("httpx")
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    try:
        logger.info('HTTP Request: %s %s "%s"', "GET",
                    httpx.URL("https://rest.iad-01.braze.com/users/export/ids?email_address=bob@example.com"),
                    "HTTP/1.1 200 OK")
        logging.getLogger("reconcile.x").warning("see https://h.example/x?email=carol@example.com&key=sekret-key-1")
    finally:
        for target in (handler, logger):
            for f in [f for f in target.filters if isinstance(f, QueryFilter)]:
                target.removeFilter(f)
    text = stream.getvalue()
    assert "bob" not in text and "carol" not in text and "sekret" not in text and text.count("***") >= 2
