"""SMS subscription groups end to end, as the job runs: `reconcile run` in its own process
against the Braze and Ketch simulators served on 127.0.0.1, for both key types.

One Ketch topic (`newsletter`) is mapped on two channels: `email` to an email group and
`sms` to an SMS group. The simulator refuses email identifiers on the SMS group (400) and
keeps SMS state per phone number; a STOP reply leaves no time anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NEWS, SMS = "sg-news", "sg-news-sms"
PHONES = {k: f"+1201555{n:04d}" for n, k in enumerate("abcdefg", start=1001)}
SUBSCRIPTION_PATHS = ("/subscription/status/get", "/subscription/status/set", "/v2/subscription/status/set")


def _job(w, key_type: str, policy: str = "", extra_identity: str = "") -> Path:
    space = "email" if key_type == "email" else "account_id"
    sources = 'phone_sources = ["braze"]' if key_type == "email" else ""
    text = f"""
[braze]
rest_endpoint = "{w.braze_url}"
api_key_env = "BRAZE_API_KEY"
max_retries = 2

[ketch]
base_url = "{w.ketch_url}/web/v3"
organization = "acme"
property = "web"
environment = "production"
jurisdiction = "default"
requests_per_second = 0

[identity]
ketch_space = "{space}"
braze_key = "{key_type}"
phone_region = "US"
{sources}
{extra_identity}

[mapping]
email_purpose = "email_marketing"
global_control_engaged = "granted"

[[mapping.topics]]
topic = "newsletter"
channel = "email"
subscription_group_id = "{NEWS}"

[[mapping.topics]]
topic = "newsletter"
channel = "sms"
subscription_group_id = "{SMS}"

[universe]
csv = "universe.csv"
braze_unsubscribes = false
braze_hard_bounces = false

[guards]
max_unsubscribe_fraction = 1.0
max_subscribe_fraction = 1.0
max_shrink_fraction = 1.0
min_universe = 1

[policy]
{policy}

[apply]
consistency_delay_seconds = 0

[state]
url = "sqlite:///state.db"

[report]
dir = "reports"
"""
    path = w.tmp / f"job-{key_type}.toml"
    path.write_text(text)
    return path


def _seed(w, key_type: str) -> dict[str, str]:
    """Seven people; returns letter -> Ketch identity. Braze: both groups subscribed unless said."""
    w.braze.add_group(NEWS, channel="email")
    w.braze.add_group(SMS, channel="sms")
    people = {
        # newsletter channels in Ketch (None: no opinion), Braze groups
        "a": ({"email": "granted", "sms": "denied"}, {NEWS: "subscribed", SMS: "subscribed"}),   # disagree
        "b": ({"email": "denied", "sms": "granted"}, {NEWS: "subscribed", SMS: "subscribed"}),   # the other way
        "c": ({"email": "granted"}, {NEWS: "subscribed", SMS: "subscribed"}),                    # SMS: no opinion
        "d": ({"email": "granted"}, {NEWS: "subscribed", SMS: "unsubscribed"}),                  # SMS: no opinion
        "e": ({"email": "granted", "sms": "granted"}, {NEWS: "subscribed", SMS: "subscribed"}),  # texts STOP
        "f": ({"email": "granted", "sms": "granted"}, {NEWS: "unsubscribed", SMS: "subscribed"}),  # undated email opt-out
        "g": ({"email": "granted", "sms": "denied"}, {NEWS: "subscribed", SMS: "subscribed"}),   # no external id
    }
    rows, ids = [], {}
    for letter, (channels, groups) in people.items():
        email = f"{letter}@example.com"
        xid = None if (letter == "g" and key_type == "email") else f"u-{letter}"
        w.braze.add_profile(external_id=xid, email=email, phone=PHONES[letter], groups=groups,
                            created_at="2025-01-01T00:00:00Z")
        ident = email if key_type == "email" else f"u-{letter}"
        space = "email" if key_type == "email" else "account_id"
        w.ketch.set_consent(space, ident, {"email_marketing": True}, 1_700_000_000)
        w.ketch.set_subscriptions(space, ident, {"newsletter": dict(channels)}, {"global_unsubscribe": "denied"},
                                  1_760_000_000)  # no Braze opt-out time is known: an email opt-in is "missed"
        ids[letter] = ident
        rows.append(ident if key_type == "email" else f"{ident},{email}")
    header = "identity" if key_type == "email" else "identity,email"
    (w.tmp / "universe.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    w.braze.sms_stop(PHONES["e"], [SMS])  # a STOP reply: unsubscribed, no time anywhere
    return ids


def _run(w, job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRAZE_API_KEY": w.key, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "reconcile", "-q", "--config", str(job), *args],
                          env=env, capture_output=True, text=True, timeout=180, cwd=w.tmp)


def _state(w, letter: str, group: str) -> str | None:
    (profile,) = w.braze.profiles_by_email(f"{letter}@example.com")
    return profile.groups.get(group)


def _sms_requests(w) -> list[dict]:
    out = []
    for c in w.braze.calls:
        if c["path"] not in SUBSCRIPTION_PATHS:
            continue
        group = (c["query"].get("subscription_group_id") or [None])[0] if c["method"] == "GET" \
            else (c["body"] or {}).get("subscription_group_id")
        if group == SMS:
            out.append(c)
    return out


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_each_channel_reaches_its_own_group_and_a_stop_is_never_resubscribed(world, key_type: str) -> None:
    w = world
    _seed(w, key_type)
    job = _job(w, key_type, policy="apply_optins = true")
    first = _run(w, job, "run", "--format", "json")
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)

    # the topic's email and SMS statuses each reached their own group
    assert (_state(w, "a", NEWS), _state(w, "a", SMS)) == ("subscribed", "unsubscribed")
    assert (_state(w, "b", NEWS), _state(w, "b", SMS)) == ("unsubscribed", "subscribed")
    # an SMS group Ketch has no opinion on is left as it is, either way
    assert _state(w, "c", SMS) == "subscribed" and _state(w, "d", SMS) == "unsubscribed"
    # the STOP-ed number stays unsubscribed although Ketch grants SMS and apply_optins is on
    assert _state(w, "e", SMS) == "unsubscribed"
    # a group opt-out Braze gives no time for is never resubscribed on either channel, apply_optins or not
    assert _state(w, "f", NEWS) == "unsubscribed" and _state(w, "f", SMS) == "subscribed"
    # under email keys g's profile has no external id: it is reached by its number
    assert _state(w, "g", SMS) == "unsubscribed" and _state(w, "g", NEWS) == "subscribed"

    # one run applied corrections on both channels
    sets = [c for c in w.braze.calls if c["path"] == "/subscription/status/set" and c["status"] == 201]
    assert {c["body"]["subscription_group_id"] for c in sets} == {NEWS, SMS}
    assert result["counts"]["missed_optout"] >= 2
    # the SMS group is never read or written by email, and never subscribed for the STOP-ed number
    sms = _sms_requests(w)
    assert sms and all("email" not in c["query"] and "email" not in (c["body"] or {}) for c in sms)
    assert all(c["status"] < 400 for c in sms)
    stop_ids = {PHONES["e"], "u-e"}
    for c in sms:
        body = c["body"] or {}
        if body.get("subscription_state") == "subscribed":
            assert not stop_ids & set(body.get("phone", []) + body.get("external_id", []))
    by = "phone" if key_type == "email" else "external_id"
    assert any(by in (c["body"] or {}) for c in sms if c["method"] == "POST")

    # the next run finds nothing left to correct; the STOP stays reported, never acted on
    again = _run(w, job, "run", "--format", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    assert second["counts"].get("missed_optout", 0) == 0
    assert second["counts"]["braze_newer_optout"] >= 1
    assert _state(w, "e", SMS) == "unsubscribed"


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_a_stop_reaches_ketch_as_the_topics_sms_channel_denied(world, key_type: str) -> None:
    w = world
    ids = _seed(w, key_type)
    job = _job(w, key_type, policy="write_back_optouts = true\napply_optins = true",
               extra_identity='ketch_phone_space = "phone"' if key_type == "email" else "")
    done = _run(w, job, "run")
    assert done.returncode == 0, done.stderr[-3000:]
    space = "email" if key_type == "email" else "account_id"
    topics = w.ketch.subscriptions_of(space, ids["e"])["topics"]
    assert topics["newsletter"] == {"email": "granted", "sms": "denied"}
    assert _state(w, "e", SMS) == "unsubscribed"
    record = w.ketch.subscriptions_of(space, ids["e"])
    assert record["collected_at"] > 1_760_000_000  # written back as of the run, not as of 1970
    if key_type == "email":  # the opt-out names the number in the Ketch phone identity space too
        updates = [c["body"] for c in w.ketch.calls if c["path"].endswith("/subscriptions/acme/update")]
        assert {"email": "e@example.com", "phone": PHONES["e"]} in [u["identities"] for u in updates]
    # nobody else's SMS channel was written back
    assert w.ketch.subscriptions_of(space, ids["c"])["topics"]["newsletter"] == {"email": "granted"}


def test_config_check_refuses_an_sms_topic_nothing_can_address(world) -> None:
    w = world
    job = _job(w, "email")
    job.write_text(job.read_text().replace('phone_sources = ["braze"]', ""))
    (w.tmp / "universe.csv").write_text("identity\n")
    checked = _run(w, job, "config", "check", "--format", "json")
    assert checked.returncode != 0
    problems = json.loads(checked.stdout)["problems"]
    (sms,) = [p for p in problems if p["key"] == "mapping.topics[1].channel"]
    assert "phone or external_id" in sms["problem"] and "identity.phone_sources" in sms["fix"]
    assert not w.braze.calls  # refused before anything was read, let alone written


@pytest.mark.parametrize("key_type", ["email", "external_id"])
def test_a_group_mapped_on_the_wrong_channel_is_named_by_doctor_and_stops_the_run(world, key_type: str) -> None:
    w = world
    _seed(w, key_type)
    job = _job(w, key_type)
    # the SMS group mapped as the topic's email channel and the email group as its SMS channel
    text = job.read_text().replace(f'"{NEWS}"', '"SWAP"').replace(f'"{SMS}"', f'"{NEWS}"').replace('"SWAP"', f'"{SMS}"')
    job.write_text(text)
    doctor = _run(w, job, "doctor", "--format", "json")
    assert doctor.returncode == 1, doctor.stderr[-2000:]
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "braze.group_channels"]
    assert check["status"] == "mismatch" and not check["ok"]
    assert f"group {SMS}" in check["detail"] and "mapping.topics[0].channel" in check["detail"]
    assert f"group {NEWS}" in check["detail"] and "mapping.topics[1].channel" in check["detail"]

    w.braze.calls.clear()
    run = _run(w, job, "run")
    assert run.returncode == 1
    assert "subscription group channels do not match the mapping" in run.stderr
    assert "mapping.topics[0]" in run.stderr
    assert not w.writes()  # stopped before anything was written


def test_a_profile_whose_number_braze_holds_is_invalid_is_an_exception_never_a_target(world) -> None:
    w = world
    _seed(w, "email")
    for letter, xid, phone in (("h", None, "555-01"), ("i", "u-i", "12")):  # numbers typed into Braze carelessly
        w.braze.add_profile(external_id=xid, email=f"{letter}@example.com", phone=phone,
                            groups={NEWS: "subscribed", SMS: "subscribed"})
        w.ketch.set_consent("email", f"{letter}@example.com", {"email_marketing": True}, 1_700_000_000)
        w.ketch.set_subscriptions("email", f"{letter}@example.com", {"newsletter": {"email": "granted", "sms": "denied"}},
                                  {"global_unsubscribe": "denied"}, 1_760_000_000)
    with (w.tmp / "universe.csv").open("a") as fh:
        fh.write("h@example.com\ni@example.com\n")
    job = _job(w, "email")
    done = _run(w, job, "run", "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    from reconcile.store.store import Store

    with Store.open(f"sqlite:///{w.tmp / 'state.db'}") as store:
        found = {e["identity"]: e for e in store.exceptions(run_id) if e["source"] == "braze_profiles"}
    assert set(found) == {"h@example.com", "i@example.com"}
    assert "phone 555-01" in found["h@example.com"]["reason"] and "cannot be reached" in found["h@example.com"]["reason"]
    assert "by its external id" in found["i@example.com"]["reason"]
    assert _state(w, "h", SMS) == "subscribed"     # nothing can address it: left as it is, and reported
    assert _state(w, "i", SMS) == "unsubscribed"   # reached by its external id
    sent = [json.dumps(c["body"]) + json.dumps(c["query"]) for c in _sms_requests(w)]
    assert not any("555-01" in text or '"12"' in text for text in sent)
