"""The Ketch Web API simulator answers as docs/ketch-api.md describes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconcile.sandbox.core import SimRequest
from reconcile.sandbox.ketch import KetchSim, identity_key

T0 = 1_700_000_000


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def post(sim: KetchSim, path: str, body: Any, version: str = "v3") -> httpx.Response:
    with httpx.Client(transport=sim.transport(), base_url="http://ketch.test") as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http.post(f"/web/{version}{path}", content=content, headers={"Content-Type": "application/json"})


def req(ids: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"organizationCode": "acme", "propertyCode": "web", "environmentCode": "production",
            "jurisdictionCode": "caccpa", "identities": ids, **extra}


@pytest.fixture
def sim() -> KetchSim:
    s = KetchSim(clock=FakeClock())
    s.set_consent("email", "Jane@Example.com", {"email_mktg": True, "analytics": False}, T0 - 100,
                  legal_basis={"email_mktg": "consent_optin"})
    s.set_subscriptions("email", "jane@example.com", {"news": {"email": "granted", "sms": "denied"}},
                        {"global_unsubscribe": "denied"}, T0 - 50)
    return s


# -- reads -----------------------------------------------------------------------------------
def test_consent_get_echoes_request_and_answers_string_booleans(sim: KetchSim) -> None:
    r = post(sim, "/consent/acme/get", req({"email": "jane@example.com"}))
    assert r.status_code == 200
    body = r.json()
    assert body["organizationCode"] == "acme" and body["propertyCode"] == "web"
    assert body["environmentCode"] == "production" and body["jurisdictionCode"] == "caccpa"
    assert body["identities"] == {"email": "jane@example.com"}
    assert body["purposes"] == {"email_mktg": {"allowed": "true", "legalBasisCode": "consent_optin"},
                                "analytics": {"allowed": "false"}}
    assert body["collectedAt"] == T0 - 100


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_both_api_versions_serve_the_same_paths(sim: KetchSim, version: str) -> None:
    r = post(sim, "/subscriptions/acme/get", req({"email": "jane@example.com"}), version)
    assert r.status_code == 200
    assert r.json()["topics"] == {"news": {"email": {"status": "granted"}, "sms": {"status": "denied"}}}
    assert r.json()["controls"] == {"global_unsubscribe": {"status": "denied"}}
    assert r.json()["collectedAt"] == T0 - 50


def test_unknown_identity_answers_204_by_default(sim: KetchSim) -> None:
    for path in ("/consent/acme/get", "/subscriptions/acme/get"):
        r = post(sim, path, req({"email": "nobody@example.com"}))
        assert r.status_code == 204 and r.content == b""


def test_empty_object_style_answers_braces() -> None:
    sim = KetchSim(empty_style="empty_object")
    for path in ("/consent/acme/get", "/subscriptions/acme/get"):
        r = post(sim, path, req({"email": "nobody@example.com"}))
        assert r.status_code == 200 and r.json() == {}


def test_identity_with_only_subscriptions_has_no_consent() -> None:
    sim = KetchSim()
    sim.set_subscriptions("email", "a@x.com", {"news": {None: "granted"}}, {}, T0)
    assert post(sim, "/consent/acme/get", req({"email": "a@x.com"})).status_code == 204
    assert post(sim, "/subscriptions/acme/get", req({"email": "a@x.com"})).status_code == 200


def test_bare_purpose_shape() -> None:
    sim = KetchSim(purpose_shape="bare")
    sim.set_consent("email", "a@x.com", {"p1": True, "p2": False}, T0)
    assert post(sim, "/consent/acme/get", req({"email": "a@x.com"})).json()["purposes"] == {"p1": "true", "p2": "false"}


def test_flat_topic_shape_collapses_channels_most_restrictively() -> None:
    sim = KetchSim(topic_shape="flat")
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted", "sms": "denied"},
                                               "promo": {"email": "granted"}}, {}, T0)
    topics = post(sim, "/subscriptions/acme/get", req({"email": "a@x.com"})).json()["topics"]
    assert topics == {"news": {"status": "denied"}, "promo": {"status": "granted"}}


def test_channel_less_topic_is_served_flat_in_channel_shape() -> None:
    sim = KetchSim()
    sim.set_subscriptions("email", "a@x.com", {"core": {None: "granted"}}, {}, T0)
    assert post(sim, "/subscriptions/acme/get", req({"email": "a@x.com"})).json()["topics"] == {
        "core": {"status": "granted"}}


# -- identity matching ---------------------------------------------------------------------------
def test_email_matches_case_insensitively_after_trimming(sim: KetchSim) -> None:
    r = post(sim, "/consent/acme/get", req({"email": "  JANE@EXAMPLE.COM "}))
    assert r.status_code == 200
    assert r.json()["identities"] == {"email": "  JANE@EXAMPLE.COM "}


def test_non_email_values_match_exactly() -> None:
    sim = KetchSim()
    sim.set_consent("account_id", "AbC", {"p": True}, T0)
    assert post(sim, "/consent/acme/get", req({"account_id": "AbC"})).status_code == 200
    assert post(sim, "/consent/acme/get", req({"account_id": "abc"})).status_code == 204
    assert identity_key("account_id", " x ") == ("account_id", " x ")
    assert identity_key("email", " A@B.c ") == ("email", "a@b.c")


def test_any_identity_pair_matches(sim: KetchSim) -> None:
    r = post(sim, "/consent/acme/get", req({"account_id": "42", "email": "jane@example.com"}))
    assert r.status_code == 200 and r.json()["purposes"]["email_mktg"]["allowed"] == "true"


def test_update_links_every_identity_of_the_request(sim: KetchSim) -> None:
    body = req({"email": "jane@example.com", "account_id": "42"},
               purposes={"sms": {"allowed": "false", "legalBasisCode": "consent_optin"}}, collectedAt=T0)
    assert post(sim, "/consent/acme/update", body).status_code == 200
    got = post(sim, "/consent/acme/get", req({"account_id": "42"})).json()
    assert got["purposes"]["sms"] == {"allowed": "false", "legalBasisCode": "consent_optin"}
    assert got["purposes"]["email_mktg"]["allowed"] == "true"  # merged, not replaced


# -- writes ------------------------------------------------------------------------------------
def test_consent_update_sets_purposes_and_request_collected_at(sim: KetchSim) -> None:
    body = req({"email": "new@x.com"}, purposes={"email_mktg": {"allowed": "false", "legalBasisCode": "consent_optin"}},
               collectedAt=T0 + 5)
    r = post(sim, "/consent/acme/update", body)
    assert r.status_code == 200 and r.json()["purposes"]["email_mktg"]["allowed"] == "false"
    assert sim.consent_of("email", "NEW@x.com") == {"purposes": {"email_mktg": False}, "collected_at": T0 + 5}


def test_update_without_collected_at_uses_the_clock() -> None:
    sim = KetchSim(clock=FakeClock(T0 + 77.9))
    post(sim, "/consent/acme/update", req({"email": "a@x.com"}, purposes={"p": "true"}))
    assert sim.consent_of("email", "a@x.com") == {"purposes": {"p": True}, "collected_at": T0 + 77}


def test_subscriptions_update_accepts_channel_and_flat_topics(sim: KetchSim) -> None:
    body = req({"email": "jane@example.com"}, collectedAt=T0 + 9,
               topics={"news": {"email": {"status": "denied"}}, "core": {"status": "granted"}},
               controls={"global_unsubscribe": {"status": "granted", "impact": 1}})
    assert post(sim, "/subscriptions/acme/update", body).status_code == 200
    assert sim.subscriptions_of("email", "jane@example.com") == {
        "topics": {"news": {"email": "denied", "sms": "denied"}, "core": {None: "granted"}},
        "controls": {"global_unsubscribe": "granted"}, "collected_at": T0 + 9}


@pytest.mark.parametrize("path,body,needle", [
    ("/consent/acme/update", req({"email": "a@x.com"}, purposes={"p": {"allowed": True}}), "purposes.p.allowed"),
    ("/consent/acme/update", req({"email": "a@x.com"}, purposes={"p": "granted"}), "purposes.p.allowed"),
    ("/subscriptions/acme/update", req({"email": "a@x.com"}, topics={"t": {"email": {"status": "on"}}}), "topics.t.email"),
    ("/subscriptions/acme/update", req({"email": "a@x.com"}, controls={"c": {"status": "yes"}}), "controls.c"),
    ("/consent/acme/get", req({}), "identities"),
    ("/consent/acme/get", {"organizationCode": "acme"}, "identities"),
    ("/consent/acme/get", req({"email": ""}), "identities"),
    ("/consent/acme/get", req({"email": "a@x.com"}, organizationCode="other"), "organizationCode"),
    ("/consent/acme/update", req({"email": "a@x.com"}, collectedAt="yesterday"), "collectedAt"),
    ("/rights/acme/invoke", req({"email": "a@x.com"}), "rightCode"),
    ("/consent/acme/get", b"{not json", "Bad Request"),
    ("/consent/acme/get", [1, 2], "JSON object"),
])
def test_bad_requests_answer_400_with_the_error_body(path: str, body: Any, needle: str) -> None:
    sim = KetchSim()
    r = post(sim, path, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "bad_request" and err["status"] == 400 and needle in err["message"]
    assert sim.consent_of("email", "a@x.com") is None  # nothing half-written


# -- rights, boot, errors ------------------------------------------------------------------------
def test_rights_invoke_is_stored_and_answers_empty_object(sim: KetchSim) -> None:
    body = req({"email": "jane@example.com"}, rightCode="erasure", invokedAt=T0,
               user={"email": "jane@example.com", "firstName": "Jane"})
    r = post(sim, "/rights/acme/invoke", body)
    assert r.status_code == 200 and r.json() == {}
    assert len(sim.rights) == 1
    assert sim.rights[0]["rightCode"] == "erasure" and sim.rights[0]["identities"] == {"email": "jane@example.com"}
    assert sim.rights[0]["receivedAt"] == T0


def test_boot_json_is_served(sim: KetchSim) -> None:
    with httpx.Client(transport=sim.transport(), base_url="http://ketch.test") as http:
        r = http.get("/web/v2/config/acme/web/boot.json")
    assert r.status_code == 200
    assert r.json()["organization"] == {"code": "acme"} and r.json()["property"] == {"code": "web"}
    assert r.json()["environments"][0]["code"] == "production"


@pytest.mark.parametrize("method,path", [
    ("POST", "/web/v3/consent/other/get"), ("POST", "/web/v3/consent/other/update"),
    ("POST", "/web/v2/subscriptions/other/get"), ("POST", "/web/v3/subscriptions/other/update"),
    ("POST", "/web/v3/rights/other/invoke"), ("GET", "/web/v3/config/other/web/boot.json"),
])
def test_unknown_org_answers_404_with_ios_error_body(sim: KetchSim, method: str, path: str) -> None:
    body = json.dumps(req({"email": "jane@example.com"}, organizationCode="other")).encode()
    resp = sim.handle(SimRequest(method, path, body=body if method == "POST" else b""))
    assert resp.status == 404
    assert resp.body["error"]["code"] == "not_found" and resp.body["error"]["status"] == 404
    assert "other" in resp.body["error"]["message"]


def test_unknown_path_uses_the_same_error_body(sim: KetchSim) -> None:
    resp = sim.handle(SimRequest("POST", "/web/v3/nothing/acme/get"))
    assert resp.status == 404 and resp.body["error"]["code"] == "not_found"


def test_injected_server_error_uses_the_error_body(sim: KetchSim) -> None:
    sim.faults.fail_next(r"/consent/", 503)
    r = post(sim, "/consent/acme/get", req({"email": "jane@example.com"}))
    assert r.status_code == 503 and r.json()["error"] == {"code": "unavailable", "message": "injected 503",
                                                          "status": 503}


# -- rate limit ------------------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after_until_the_window_resets() -> None:
    clock = FakeClock(T0 + 2)  # windows of 10 s start at T0
    sim = KetchSim(clock=clock, rate_limit=(2, 10.0))
    body = req({"email": "a@x.com"})
    assert [post(sim, "/consent/acme/get", body).status_code for _ in range(2)] == [204, 204]
    limited = post(sim, "/subscriptions/acme/get", body)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "8"
    assert limited.json()["error"]["code"] == "too_many_requests"
    clock.now = T0 + 10
    assert post(sim, "/consent/acme/get", body).status_code == 204


def test_no_rate_limit_by_default() -> None:
    sim = KetchSim()
    assert all(post(sim, "/consent/acme/get", req({"email": "a@x.com"})).status_code == 204 for _ in range(50))


def test_scripted_429_carries_retry_after() -> None:
    sim = KetchSim()
    sim.faults.fail_next("/consent/", 429)
    r = post(sim, "/consent/acme/get", req({"email": "a@x.com"}))
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"


# -- persistence ---------------------------------------------------------------------------------
def test_save_and_load_round_trip(sim: KetchSim, tmp_path) -> None:
    post(sim, "/consent/acme/update", req({"email": "jane@example.com", "account_id": "42"},
                                         purposes={"sms": "true"}, collectedAt=T0))
    post(sim, "/subscriptions/acme/update", req({"email": "b@x.com"}, topics={"core": {"status": "denied"}}))
    post(sim, "/rights/acme/invoke", req({"email": "b@x.com"}, rightCode="erasure", invokedAt=T0))
    path = tmp_path / "ketch.json"
    sim.save(path)
    again = KetchSim.load(path)
    assert again.to_dict() == sim.to_dict() == sim.state()
    assert again.consent_of("account_id", "42") == sim.consent_of("email", "jane@example.com")
    assert again.subscriptions_of("email", "b@x.com")["topics"] == {"core": {None: "denied"}}
    assert again.rights == sim.rights


def test_load_on_an_instance_replaces_its_state(sim: KetchSim, tmp_path) -> None:
    path = tmp_path / "ketch.json"
    sim.save(path)
    other = KetchSim(purpose_shape="bare")
    assert other.load(path) is other
    assert other.consent_of("email", "jane@example.com") is not None
    assert other.purpose_shape == "bare"
    built = KetchSim.from_dict(sim.to_dict(), empty_style="empty_object")
    assert built.empty_style == "empty_object" and built.organization == "acme"


def test_admin_state_route_returns_to_dict(sim: KetchSim) -> None:
    resp = sim.handle(SimRequest("GET", "/_admin/state"))
    assert resp.status == 200 and resp.body == sim.to_dict()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="empty_style"):
        KetchSim(empty_style="null")
    with pytest.raises(ValueError, match="topic_shape"):
        KetchSim(topic_shape="nested")


def test_calls_are_logged(sim: KetchSim) -> None:
    post(sim, "/consent/acme/get", req({"email": "jane@example.com"}))
    assert sim.calls[-1]["path"] == "/web/v3/consent/acme/get" and sim.calls[-1]["status"] == 200


# -- the less convenient answers, per simulator ----------------------------------------------------
@pytest.mark.parametrize("consent_empty,subs_empty", [("204", "empty_object"), ("empty_object", "204")])
def test_empty_answers_can_differ_per_route(consent_empty: str, subs_empty: str) -> None:
    sim = KetchSim(consent_empty=consent_empty, subscriptions_empty=subs_empty)
    for path, style in (("/consent/acme/get", consent_empty), ("/subscriptions/acme/get", subs_empty)):
        r = post(sim, path, req({"email": "nobody@example.com"}))
        if style == "204":
            assert r.status_code == 204 and r.content == b""
        else:
            assert r.status_code == 200 and r.json() == {}


def test_hidden_topics_are_left_out_of_the_answer() -> None:
    sim = KetchSim(hide_topics=["promo"])
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted"}, "promo": {"email": "denied"}}, {}, T0)
    assert post(sim, "/subscriptions/acme/get", req({"email": "a@x.com"})).json()["topics"] == {
        "news": {"email": {"status": "granted"}}}
    assert sim.subscriptions_of("email", "a@x.com")["topics"]["promo"] == {"email": "denied"}


@pytest.mark.parametrize("style,body", [("message", {"message": "error"}),
                                        ("ios", {"error": {"code": "internal", "message": "error", "status": 500}})])
def test_error_identities_get_200_with_an_error_body(style: str, body: dict) -> None:
    sim = KetchSim(error_identities=["Bad@X.com "], error_style=style)
    sim.set_consent("email", "bad@x.com", {"p": True}, T0)
    for path in ("/consent/acme/get", "/subscriptions/acme/get"):
        r = post(sim, path, req({"email": "bad@x.com"}))
        assert r.status_code == 200 and r.json() == body
    assert post(sim, "/consent/acme/get", req({"email": "good@x.com"})).status_code == 204


def test_error_share_picks_a_stable_share_of_identities() -> None:
    sim = KetchSim(error_share=0.3)
    hit = [i for i in range(1000)
           if post(sim, "/consent/acme/get", req({"email": f"u{i}@x.com"})).status_code == 200]
    assert 230 <= len(hit) <= 370
    again = [i for i in range(1000)
             if post(sim, "/subscriptions/acme/get", req({"email": f"u{i}@x.com"})).status_code == 200]
    assert again == hit  # the same identities on both routes and every time


def test_replace_mode_updates_replace_instead_of_merging() -> None:
    sim = KetchSim(update_mode="replace")
    sim.set_subscriptions("email", "a@x.com", {"news": {"email": "granted"}, "promo": {"email": "granted"}},
                          {"global_unsubscribe": "denied"}, T0)
    sim.set_consent("email", "a@x.com", {"p1": True, "p2": True}, T0)
    post(sim, "/subscriptions/acme/update", req({"email": "a@x.com"}, topics={"news": {"email": {"status": "denied"}}}))
    post(sim, "/consent/acme/update", req({"email": "a@x.com"}, purposes={"p1": {"allowed": "false"}}))
    assert sim.subscriptions_of("email", "a@x.com")["topics"] == {"news": {"email": "denied"}}
    assert sim.subscriptions_of("email", "a@x.com")["controls"] == {}
    assert sim.consent_of("email", "a@x.com")["purposes"] == {"p1": False}


def test_new_options_survive_save_and_load(tmp_path) -> None:
    sim = KetchSim(consent_empty="empty_object", subscriptions_empty="204", hide_topics=["x"],
                   error_identities=["a@x.com"], error_share=0.1, error_style="ios", update_mode="replace")
    path = tmp_path / "ketch.json"
    sim.save(path)
    again = KetchSim.load(path)
    assert again.to_dict()["options"] == sim.to_dict()["options"]
    assert post(again, "/consent/acme/get", req({"email": "a@x.com"})).json()["error"]["message"] == "error"


@pytest.mark.parametrize("kw,name", [({"consent_empty": "null"}, "consent_empty"),
                                     ({"error_style": "html"}, "error_style"),
                                     ({"update_mode": "append"}, "update_mode"),
                                     ({"error_share": 1.5}, "error_share")])
def test_bad_new_options_are_refused(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        KetchSim(**kw)
