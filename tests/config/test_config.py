"""`load_config` / `parse_config`: every problem reported at once, URLs, paths, secrets, hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.config import (
    SANDBOX_BRAZE_KEY,
    Config,
    braze_api_key,
    check_environment,
    load_config,
    parse_config,
    state_url,
)
from reconcile.errors import ConfigError, ExitCode

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_TOML = ROOT / "jobs" / "sandbox.toml"

KETCH = {"organization": "acme", "property": "web", "environment": "production", "jurisdiction": "default"}
MAPPING = {"email_purpose": "email_marketing", "global_control_engaged": "granted",
           "topics": [{"topic": "newsletter", "channel": "email", "subscription_group_id": "sg-news"}]}

# Every REST instance listed in docs/braze-api.md ("Instances").
BRAZE_INSTANCES = [f"https://rest.iad-0{n}.braze.com" for n in range(1, 9)] + [
    "https://rest.us-10.braze.com",
    "https://rest.fra-01.braze.eu",
    "https://rest.fra-02.braze.eu",
    "https://rest.au-01.braze.com",
    "https://rest.id-01.braze.com",
    "https://rest.jp-01.braze.com",
    "https://rest.kr-01.braze.com",
]


def minimal(**sections) -> dict:
    """The smallest valid config (no universe files needed), with `sections` merged in."""
    data = {"braze": {"rest_endpoint": "https://rest.iad-01.braze.com"}, "ketch": dict(KETCH),
            "mapping": dict(MAPPING)}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def problems_of(data: dict, base: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, base)
    got: dict[str, str] = {}
    for p in err.value.problems:
        got[p.key] = got.get(p.key, "") + f"{p.problem} | {p.fix}\n"
    return got


# ----------------------------------------------------------------------------- the shipped job


def test_sandbox_job_parses_and_resolves_paths_against_its_folder():
    cfg = load_config(SANDBOX_TOML)
    assert cfg.path == SANDBOX_TOML.resolve()
    assert cfg.sandbox.enabled is True
    assert [t.subscription_group_id for t in cfg.mapping.topics] == ["sg-newsletter", "sg-promotions",
                                                                     "sg-product-updates", "sg-promotions-sms"]
    assert [t.channel for t in cfg.mapping.topics if t.sms] == ["sms"] and cfg.identity.phone_sources == ("braze",)
    assert cfg.mapping.topics[2].channel is None
    # "../.reconcile/..." is relative to jobs/, not to the working directory
    assert cfg.universe.csv == ROOT / ".reconcile" / "sandbox" / "universe.csv"
    assert cfg.sandbox.state_file == ROOT / ".reconcile" / "sandbox" / "state.json"
    assert cfg.state.url == f"sqlite:///{ROOT / '.reconcile' / 'state.db'}"
    assert cfg.report.dir == ROOT / "reports"
    assert cfg.ketch.requests_per_second == 0.0 and isinstance(cfg.ketch.requests_per_second, float)


# ----------------------------------------------------------------------------- every problem at once


def test_many_mistakes_are_all_reported_with_key_path_and_fix(tmp_path):
    secret_value = "sekrit-braze-key-9f8e7d"
    (tmp_path / "job.toml").write_text(f"""
[bogus_section]
x = 1

[braze]
rest_endpoint = "https://api.example.com"
api_key = "{secret_value}"
timeout_seconds = "fast"

[ketch]
base_url = "http://global.ketchcdn.com/web/v3"
organization = "acme"
property = "web"
environment = "production"
jurisdiction = "default"
colour = "blue"

[identity]
braze_key = "phone"

[mapping]
global_control_engaged = "granted"

[[mapping.topics]]
topic = "newsletter"
subscription_group_id = "sg-1"

[[mapping.topics]]
topic = "promotions"
subscription_group_id = "sg-1"

[guards]
max_unsubscribe_fraction = 1.5
""", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "job.toml")
    exc = err.value
    assert exc.exit_code == ExitCode.ERROR
    by_key = {p.key: p for p in exc.problems}
    expected = {
        "bogus_section": "unknown section",
        "braze.rest_endpoint": "not a Braze REST instance",
        "braze.api_key": "secret values are not allowed",
        "braze.timeout_seconds": "must be float",
        "ketch.base_url": "plain http is allowed only for loopback",
        "ketch.colour": "unknown key",
        "identity.braze_key": "must be 'email' or 'external_id'",
        "mapping.topics[1].subscription_group_id": "mapped twice",
        "guards.max_unsubscribe_fraction": "between 0.0 and 1.0",
    }
    assert set(by_key) == set(expected), exc
    message = str(exc)
    assert f"{len(expected)} problem(s)" in message
    assert str((tmp_path / "job.toml").resolve()) in message
    for key, what in expected.items():
        p = by_key[key]
        assert what in p.problem, p
        assert p.fix.strip(), f"{key} has no fix"
        assert f"  - {key}: " in message
        assert p.fix in message
    # the offending secret is reported by key only, never echoed
    assert secret_value not in message
    assert all(secret_value not in f"{p.problem} {p.fix}" for p in exc.problems)


def test_the_same_mistakes_in_memory_give_the_same_problems(tmp_path):
    got = problems_of(minimal(braze={"rest_endpoint": "http://rest.iad-01.braze.com", "max_retries": 99},
                              universe={"window_days": True}), tmp_path)
    assert set(got) == {"braze.rest_endpoint", "braze.max_retries", "universe.window_days"}
    assert "use https" in got["braze.rest_endpoint"]
    assert "between 0 and 20" in got["braze.max_retries"]
    assert "must be int" in got["universe.window_days"]  # a bool is not an int


@pytest.mark.parametrize("section,value", [("sandbox", "yes"), ("braze", 5), ("guards", ["x"])])
def test_a_section_that_is_not_a_table_is_a_config_problem(tmp_path, section, value):
    got = problems_of({**minimal(), section: value}, tmp_path)
    assert section in got and "must be a table" in got[section]


def test_toml_syntax_error_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[braze\nrest_endpoint = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "not valid TOML" in str(err.value) and str(path) in str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_required_ketch_codes_and_mapping_are_reported(tmp_path):
    got = problems_of({"ketch": {}, "mapping": {}}, tmp_path)
    for key in ("ketch.organization", "ketch.property", "ketch.jurisdiction", "mapping.topics"):
        assert key in got, got
    assert "ketch.environment" not in got  # it has a default


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", ["http://127.0.0.1:9101", "http://localhost:9101", "http://[::1]:9101",
                                 "http://127.0.0.2"])
def test_plain_http_is_allowed_for_loopback(tmp_path, url):
    cfg = parse_config(minimal(braze={"rest_endpoint": url}, ketch={"base_url": url + "/web/v3"}), tmp_path)
    assert cfg.braze.rest_endpoint == url
    assert cfg.ketch.base_url == url + "/web/v3"


@pytest.mark.parametrize("url", ["http://10.0.0.5:9101", "http://rest.iad-01.braze.com", "http://0.0.0.0:80"])
def test_plain_http_is_refused_elsewhere(tmp_path, url):
    got = problems_of(minimal(braze={"rest_endpoint": url}), tmp_path)
    assert "plain http" in got["braze.rest_endpoint"]


@pytest.mark.parametrize("url", BRAZE_INSTANCES)
def test_every_documented_braze_instance_is_accepted(tmp_path, url):
    cfg = parse_config(minimal(braze={"rest_endpoint": url + "/"}), tmp_path)
    assert cfg.braze.rest_endpoint == url  # trailing slash dropped


@pytest.mark.parametrize("url", ["https://braze.com.evil.example", "https://rest.iad-01.braze.co",
                                 "https://notbraze.com", "https://example.com/rest.iad-01.braze.com",
                                 "ftp://rest.iad-01.braze.com", "rest.iad-01.braze.com"])
def test_non_braze_hosts_are_refused(tmp_path, url):
    got = problems_of(minimal(braze={"rest_endpoint": url}), tmp_path)
    assert "braze.rest_endpoint" in got


def test_credentials_in_a_url_are_refused_without_echoing_them(tmp_path):
    url = "https://user:hunter2pass@rest.iad-01.braze.com"
    with pytest.raises(ConfigError) as err:
        parse_config(minimal(braze={"rest_endpoint": url}), tmp_path)
    assert [p.key for p in err.value.problems] == ["braze.rest_endpoint"]
    assert "credentials" in err.value.problems[0].problem
    assert "hunter2pass" not in str(err.value)


def test_password_in_sql_universe_url_is_refused(tmp_path):
    got = problems_of(minimal(universe={"sql": {"url": "postgresql://u:hunter2pass@db/x", "query": "SELECT 1"}}),
                      tmp_path)
    assert "universe.sql.url" in got and "hunter2pass" not in got["universe.sql.url"]


# ----------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    job = tmp_path / "jobs" / "nightly"
    job.mkdir(parents=True)
    (job / "people.csv").write_text("identity\n", encoding="utf-8")
    (tmp_path / "dels.csv").write_text("identity,requested_at\n", encoding="utf-8")
    (job / "job.toml").write_text("""
[braze]
rest_endpoint = "https://rest.fra-01.braze.eu"
[ketch]
organization = "acme"
property = "web"
jurisdiction = "default"
[mapping]
email_purpose = "email_marketing"
global_control_engaged = "granted"
[universe]
csv = "people.csv"
deletions_csv = "../../dels.csv"
[state]
url = "sqlite:///state/reconcile.db"
[report]
dir = "out/reports"
[sandbox]
state_file = "sb/state.json"
""", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "jobs" / "nightly" / "job.toml")
    assert cfg.universe.csv == job / "people.csv"
    assert cfg.universe.deletions_csv == tmp_path / "dels.csv"
    assert cfg.state.url == f"sqlite:///{job / 'state' / 'reconcile.db'}"
    assert cfg.report.dir == job / "out" / "reports"
    assert cfg.sandbox.state_file == job / "sb" / "state.json"


def test_missing_universe_file_is_reported_relative_to_the_config(tmp_path):
    got = problems_of(minimal(universe={"csv": "nope.csv"}), tmp_path)
    assert str(tmp_path / "nope.csv") in got["universe.csv"]


def test_absolute_and_memory_sqlite_urls_are_kept(tmp_path):
    assert parse_config(minimal(state={"url": "sqlite:////var/x.db"}), tmp_path).state.url == "sqlite:////var/x.db"
    assert parse_config(minimal(state={"url": "sqlite:///:memory:"}), tmp_path).state.url == "sqlite:///:memory:"


# ----------------------------------------------------------------------------- environment and secrets


def test_check_environment_wants_the_braze_key_only_outside_the_sandbox(tmp_path):
    live = parse_config(minimal(), tmp_path)
    sandbox = parse_config(minimal(sandbox={"enabled": True}), tmp_path)
    (p,) = check_environment(live, {})
    assert p.key == "braze.api_key_env" and "BRAZE_API_KEY" in p.problem
    assert check_environment(live, {"BRAZE_API_KEY": "k-123"}) == []
    assert check_environment(sandbox, {}) == []


def test_check_environment_reports_every_missing_url_variable(tmp_path):
    cfg = parse_config(minimal(state={"url_env": "STATE_DB"},
                               universe={"sql": {"url_env": "WAREHOUSE", "query": "SELECT 1"}}), tmp_path)
    keys = {p.key: p.problem for p in check_environment(cfg, {"BRAZE_API_KEY": "x"})}
    assert keys == {"state.url_env": "environment variable STATE_DB is not set",
                    "universe.sql.url_env": "environment variable WAREHOUSE is not set"}
    assert check_environment(cfg, {"BRAZE_API_KEY": "x", "STATE_DB": "sqlite://", "WAREHOUSE": "sqlite://"}) == []


def test_braze_api_key_error_names_the_variable_never_a_value(tmp_path):
    cfg = parse_config(minimal(braze={"api_key_env": "ACME_BRAZE_KEY"}), tmp_path)
    unrelated_secret = "value-of-the-wrong-variable-77"
    with pytest.raises(ConfigError) as err:
        braze_api_key(cfg, {"BRAZE_API_KEY": unrelated_secret})
    assert "ACME_BRAZE_KEY" in str(err.value)
    assert err.value.problems[0].key == "braze.api_key_env"
    assert unrelated_secret not in str(err.value)
    assert braze_api_key(cfg, {"ACME_BRAZE_KEY": "the-key"}) == "the-key"
    sandbox = parse_config(minimal(sandbox={"enabled": True}), tmp_path)
    assert braze_api_key(sandbox, {}) == SANDBOX_BRAZE_KEY


def test_state_url_comes_from_the_named_variable(tmp_path):
    cfg = parse_config(minimal(state={"url_env": "STATE_DB"}), tmp_path)
    assert state_url(cfg, {"STATE_DB": "postgresql+psycopg://u:p@h/db"}) == "postgresql+psycopg://u:p@h/db"
    with pytest.raises(ConfigError, match="STATE_DB is not set"):
        state_url(cfg, {})


def test_secrets_never_appear_in_as_dict_or_hash(tmp_path):
    env = {"BRAZE_API_KEY": "braze-secret-aaa111", "RECONCILE_MASK_KEY": "mask-secret-bbb222",
           "STATE_DB": "postgresql+psycopg://u:pg-secret-ccc333@h/db", "WAREHOUSE": "sqlite:///wh-secret-ddd444.db"}
    cfg = parse_config(minimal(state={"url_env": "STATE_DB"},
                               universe={"sql": {"url_env": "WAREHOUSE", "query": "SELECT 1"}}), tmp_path)
    assert sorted(cfg.secret_values(env)) == sorted(env.values())
    blob = json.dumps(cfg.as_dict())
    for value in env.values():
        assert value not in blob
    assert "BRAZE_API_KEY" in blob  # only the variable's name
    assert "path" not in cfg.as_dict()


# ----------------------------------------------------------------------------- hash


def test_hash_is_stable_and_follows_values(tmp_path):
    a = parse_config(minimal(), tmp_path)
    b = parse_config(minimal(), tmp_path)
    assert isinstance(a, Config) and a.hash() == b.hash() and len(a.hash()) == 16
    assert a.hash() == load_config_copy(tmp_path, a).hash()  # where it came from is not part of it
    for changed in (minimal(guards={"max_deletions": 101}),
                    minimal(braze={"rest_endpoint": "https://rest.fra-01.braze.eu"}),
                    minimal(mapping={"topics": [{"topic": "newsletter", "channel": "email",
                                                 "subscription_group_id": "sg-other"}]}),
                    minimal(braze={"rate_limits": {"users_track": {"requests": 10}}})):
        assert parse_config(changed, tmp_path).hash() != a.hash()


def load_config_copy(tmp_path: Path, cfg: Config) -> Config:
    return Config(**{**cfg.__dict__, "path": tmp_path / "somewhere.toml"})


def test_hash_is_stable_across_loads_of_the_same_file():
    assert load_config(SANDBOX_TOML).hash() == load_config(SANDBOX_TOML).hash()


def test_global_control_engaged_is_required_outside_the_sandbox(tmp_path):
    mapping = {k: v for k, v in MAPPING.items() if k != "global_control_engaged"}
    problems = problems_of({**minimal(), "mapping": mapping}, tmp_path)
    assert "mapping.global_control_engaged" in problems
    assert "inverted" in problems["mapping.global_control_engaged"]
    sandbox = parse_config({**minimal(sandbox={"enabled": True}), "mapping": mapping}, tmp_path)
    assert sandbox.mapping.global_control_engaged == "granted"
