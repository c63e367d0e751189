"""The ledger feeds the Ketch mirror from the messages it accepts (over loopback HTTP),
and names the subjects a mirror-fed run must still read from Ketch."""

from __future__ import annotations

from datetime import datetime, timezone

from reconcile.models.mirror import PURPOSE, TOPIC
from reconcile.pipeline.ketch_mirror import callback_subjects
from reconcile.sandbox.ketch_webhooks import KetchWebhooks
from reconcile.store.mirror import MirrorStore
from tests.ledger.conftest import TOKEN, delete

EMAIL = (PURPOSE, "email_marketing", "")


def test_messages_feed_the_mirror_newest_first_and_never_trusted_alone(lw) -> None:
    hooks = KetchWebhooks(lw.url, TOKEN)
    mirror = MirrorStore.of(lw.store)
    newer = hooks.consent("Kim.Lee@Example.com", {"email_marketing": False}, collected_at=1_790_000_100)
    assert hooks.send(newer).status_code == 204
    older = hooks.consent("kim.lee@example.com", {"email_marketing": True, "analytics": True},
                          collected_at=1_790_000_000)
    assert hooks.send(older).status_code == 204
    assert hooks.send(newer).status_code == 204  # a replay changes nothing
    topics = hooks.topics("kim.lee@example.com", {"newsletter": {"email": "denied", "sms": "granted"}},
                          submitted_at=1_790_000_050)
    assert hooks.send(topics).status_code in (202, 204)
    controls = hooks.controls("kim.lee@example.com", {"global_unsubscribe": "granted"}, submitted_at=1_790_000_060)
    assert hooks.send(controls).status_code in (202, 204)
    entry = mirror.entries(["kim.lee@example.com"])["kim.lee@example.com"]
    assert {k: c.status for k, c in entry.choices.items()} == {
        EMAIL: "denied", (PURPOSE, "analytics", ""): "granted", (TOPIC, "newsletter", "email"): "denied",
        (TOPIC, "newsletter", "sms"): "granted", ("control", "global_unsubscribe", ""): "granted"}
    assert entry.choices[EMAIL].changed_at == datetime.fromtimestamp(1_790_000_100, timezone.utc)
    assert not entry.trusted  # messages alone: the subject is read from Ketch until a read fills it
    assert mirror.counts() == (1, 0)


def test_refused_messages_and_other_spaces_leave_the_mirror_alone(lw) -> None:
    hooks = KetchWebhooks(lw.url, TOKEN, tenant="someone-else")
    assert hooks.send(hooks.consent("a@example.com", {"email_marketing": False})).status_code == 400
    other = KetchWebhooks(lw.url, TOKEN)
    assert other.send(other.consent("cookie-123", {"email_marketing": False}, space="cookie")).status_code == 204
    assert other.send(other.consent("not an email", {"email_marketing": False})).status_code == 204
    assert MirrorStore.of(lw.store).counts() == (0, 0)


def test_subjects_of_owed_callbacks_are_read_from_ketch(lw) -> None:
    receiver = lw.receiver()
    assert lw.post(delete("owed@example.com", callbacks=[{"url": receiver.url}])).status_code == 200
    assert lw.post(delete("waiting@example.com", callbacks=[{"url": receiver.url}])).status_code == 200
    assert callback_subjects(lw.store, lw.cfg) == set()  # waiting for the run that completes them
    (req,) = [r for r in lw.ledger.requests() if r["identity"] == "owed@example.com"]
    now = datetime.now(timezone.utc)
    lw.store.start_run("run-1", mode="full", config_hash="h", started_at=now)
    assert lw.ledger.complete(req["uid"], "executed", "done", {"status": "completed"}, "run-1", now)
    assert callback_subjects(lw.store, lw.cfg) == {"owed@example.com"}
    (cb,) = lw.ledger.callbacks(req["uid"])
    lw.ledger.callback_failed(cb["id"], 30, "gave up", None)
    assert callback_subjects(lw.store, lw.cfg) == {"owed@example.com"}
    lw.ledger.callback_delivered(cb["id"], 31, now)
    assert callback_subjects(lw.store, lw.cfg) == set()


def test_topics_by_contact_method_land_on_the_channels_a_ketch_read_names(lw) -> None:
    hooks = KetchWebhooks(lw.url, TOKEN, topic_shape="contact_methods")
    doc = hooks.topics("kim@example.com", {"newsletter": {"email": "denied", "sms": "denied"}},
                       submitted_at=1_790_000_000)
    assert doc["request"]["topics"] == {"newsletter": {"status": "denied", "contactMethods": ["email", "sms"]}}
    assert hooks.send(doc).status_code in (202, 204)
    entry = MirrorStore.of(lw.store).entries(["kim@example.com"])["kim@example.com"]
    assert {k: c.status for k, c in entry.choices.items()} == {
        (TOPIC, "newsletter", "email"): "denied", (TOPIC, "newsletter", "sms"): "denied"}
