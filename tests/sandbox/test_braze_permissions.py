"""The simulated key's permissions, the [sandbox] options and `sandbox serve --permissions`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from reconcile.cli.sandbox_cmds import configure_braze, sandbox_group, serve_banner
from reconcile.config import Config, SandboxConfig, parse_config
from reconcile.errors import ConfigError
from reconcile.sandbox.braze import (
    ALL_PERMISSIONS, DOWNLOADS, PARTNER_PERMISSIONS, PERMISSIONS, BrazeSim, braze_sim_options,
)

AUTH = {"Authorization": "Bearer sandbox-rest-key"}
NOT_PARTNER = {"/email/status", "/email/hard_bounces", "/subscription/user/status", "/users/export/segment"}


def method_of(sim: BrazeSim, path: str) -> str:
    return next(m for m, rx, _, _ in sim._routes if rx.match(path))


def call(sim: BrazeSim, path: str) -> httpx.Response:
    with httpx.Client(transport=sim.transport(), base_url="http://braze.test", headers=AUTH) as c:
        return c.request(method_of(sim, path), path, json={} if method_of(sim, path) == "POST" else None)


def test_partner_permissions_are_the_eight_of_the_partner_page():
    assert PARTNER_PERMISSIONS == {"users.track", "subscription.status.get", "subscription.status.set", "users.delete",
                                   "users.alias.new", "users.export.ids", "email.unsubscribe", "email.blacklist"}
    assert PARTNER_PERMISSIONS < ALL_PERMISSIONS and PERMISSIONS["/users/export/segment"] == "users.export.segment"


def test_every_api_route_has_a_permission():
    sim = BrazeSim()
    api_routes = [rx.pattern.strip("^$") for _, rx, _, _ in sim._routes if not rx.pattern.startswith(f"^{DOWNLOADS}")]
    assert sorted(api_routes) == sorted(PERMISSIONS)


@pytest.mark.parametrize("path", sorted(PERMISSIONS))
def test_each_endpoint_without_its_permission_is_403_access_denied(path: str):
    r = call(BrazeSim(permissions=ALL_PERMISSIONS - {PERMISSIONS[path]}), path)
    assert r.status_code == 403 and r.json() == {"message": "Access Denied"}


@pytest.mark.parametrize("path", sorted(PERMISSIONS))
def test_partner_key_reaches_exactly_the_partner_endpoints(path: str):
    r = call(BrazeSim(permissions="partner"), path)
    assert (r.status_code == 403) == (path in NOT_PARTNER)


def test_unknown_permission_set_name_is_refused():
    with pytest.raises(ValueError, match="'all' or 'partner'"):
        BrazeSim(permissions="admin")


# -- [sandbox] options ------------------------------------------------------------------------
def test_sim_options_follow_the_sandbox_config():
    options = braze_sim_options(SandboxConfig(
        braze_permissions="partner", track_object_limit=50, user_status_shape="documented",
        track_limit_wording="other", segment_export="bucket", segment_export_delay_seconds=5,
        alias_visibility_delay_seconds=300))
    assert options == {"permissions": set(PARTNER_PERMISSIONS), "track_object_limit": 50,
                       "user_status_shape": "documented", "track_limit_wording": "other", "segment_export": "bucket",
                       "segment_export_delay_seconds": 5.0, "alias_visibility_delay_seconds": 300.0,
                       "email_match": "lower"}
    sim = BrazeSim(**options)
    assert sim.permissions == PARTNER_PERMISSIONS and sim.track_object_limit == 50
    assert (sim.track_limit_wording, sim.segment_export, sim.alias_visibility_delay_seconds) == ("other", "bucket", 300)
    defaults = braze_sim_options(SandboxConfig())
    assert defaults == {"permissions": set(ALL_PERMISSIONS), "track_object_limit": 75, "user_status_shape": "users",
                        "track_limit_wording": "documented", "segment_export": "url",
                        "segment_export_delay_seconds": 0.0, "alias_visibility_delay_seconds": 0.0,
                        "email_match": "lower"}


KETCH = {"organization": "o", "property": "p", "jurisdiction": "j"}
MAPPING = {"email_purpose": "email_marketing", "global_control_engaged": "granted"}


def test_config_reads_the_sandbox_keys():
    cfg = parse_config({"ketch": KETCH, "mapping": MAPPING, "sandbox": {
        "enabled": True, "braze_permissions": "partner", "track_object_limit": 50, "user_status_shape": "documented"}},
        Path("."))
    assert (cfg.sandbox.braze_permissions, cfg.sandbox.track_object_limit, cfg.sandbox.user_status_shape) == (
        "partner", 50, "documented")


def test_config_names_each_bad_sandbox_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"ketch": KETCH, "mapping": MAPPING, "sandbox": {
            "enabled": True, "braze_permissions": "root", "track_object_limit": 0, "user_status_shape": "flat"}},
            Path("."))
    keys = {p.key for p in info.value.problems}
    assert {"sandbox.braze_permissions", "sandbox.track_object_limit", "sandbox.user_status_shape"} <= keys


# -- sandbox serve ----------------------------------------------------------------------------
def test_serve_applies_config_and_permissions_flag():
    sim = BrazeSim()
    cfg = Config(sandbox=SandboxConfig(braze_permissions="all", track_object_limit=50, user_status_shape="documented"))
    configure_braze(sim, cfg, "partner")
    assert sim.permissions == PARTNER_PERMISSIONS and sim.track_object_limit == 50
    assert sim.user_status_shape == "documented"
    configure_braze(sim, Config(), None)
    assert sim.permissions == ALL_PERMISSIONS and sim.user_status_shape == "users"


def test_serve_banner_prints_urls_and_the_expected_key():
    text = serve_banner(BrazeSim(api_key="sandbox-rest-key"), "http://127.0.0.1:9101", "http://127.0.0.1:9102",
                        "partner")
    assert "braze: http://127.0.0.1:9101" in text and "ketch: http://127.0.0.1:9102/web/v3" in text
    assert "sandbox-rest-key" in text and "partner" in text and "/_downloads/" in text


def test_serve_help_offers_permissions():
    result = CliRunner().invoke(sandbox_group, ["serve", "--help"])
    assert result.exit_code == 0 and "--permissions [all|partner]" in result.output
