"""One person's story, from the state store: what the job saw and did about them, and when.

`subject_story(store, identity)` gathers, for the subject key an identity normalises to:

    drift        each drift item: what Ketch said (expected) against what Braze had
                 (actual), where (channel and group), first and last seen with their runs,
                 corrected (by which batch), verified, resolved
    corrections  each journaled batch that named the subject: endpoint, status, sent, answered
    proposed     corrections saved plans proposed that were never journaled
    deletion     tombstone (deleted, and why), the webhook ledger's deletion requests with
                 their history and the callbacks sent back to Ketch
    consent      consent changes the webhook ledger received
    exceptions   runs that could not check the identity, and why
    profiles     the Braze profiles last enumerated for the address

and a timeline of every dated event, oldest first. An identity may also be given as the
pseudonym a report shows (`j***@example.com#3f2a1c9d01`, `id#3f2a1c9d01`): it is matched
against every subject key the store knows, hashed with the same mask key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reconcile.models.mailbox import key_or_none
from reconcile.reports.requests import place

TOKEN = re.compile(r"^(?:[^@\s]\*\*\*@[^#\s]+|id)#[0-9a-f]{10}$")


def subject_keys_for(identity: str) -> list[str]:
    """The subject keys an identity may be stored under: as given (trimmed), and for an
    address its mailbox key (models/mailbox.py), the key the engine matches by. Never a
    Unicode case folding: `uſer@example.com` is not `user@example.com`'s subject."""
    text = identity.strip()
    return list(dict.fromkeys([text, key_or_none(text) or text]))


def known_keys(store: Any) -> set[str]:
    """Every subject key the store knows (for resolving a pseudonym)."""
    return set(store.known_subject_keys())


def resolve(store: Any, identity: str, key: bytes | None) -> list[str]:
    """Subject keys for `identity`; a pseudonym is resolved with the mask `key`."""
    from reconcile.reports.masking import mask

    if TOKEN.match(identity.strip()):
        if key is None:
            return []
        return sorted(k for k in known_keys(store) if mask(k, key) == identity.strip())
    return subject_keys_for(identity)


def subject_story(store: Any, keys: list[str], groups: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Everything recorded about the subject keys `keys` (identities in clear)."""
    rec = store.subject_records(keys)
    drift, journaled, planned, exceptions = rec["drift"], rec["journaled"], rec["planned"], rec["exceptions"]
    tomb, requests, history, callbacks = rec["tombstones"], rec["requests"], rec["history"], rec["callbacks"]
    changes, profiles, seen_runs = rec["changes"], rec["profiles"], rec["runs"]
    sent_ids = {a["action_id"] for a in journaled}
    proposed = [_proposed(p, a, keys) for p in planned for a in (p.get("body") or {}).get("actions") or []
                if isinstance(a, Mapping) and a.get("action_id") not in sent_ids
                and any(isinstance(t, list) and t and t[0] in keys for t in a.get("targets") or [])]
    found = ({i["subject_key"] for i in drift} | {t["subject_key"] for t in tomb}
             | {k for a in journaled for k in a.get("subject_keys") or []}
             | {key_or_none(x) or str(x).strip() for x in [r.get("identity") for r in requests]
                + [c["identity"] for c in changes] + [e.get("identity") for e in exceptions] if x}
             | {p["email_key"] for p in profiles} | {p.get("external_id") for p in profiles})
    story = {
        "subject_keys": [k for k in keys if k in found] or keys[-1:],
        "known": bool(drift or journaled or exceptions or tomb or requests or changes or profiles),
        "drift": [_drift(i, groups) for i in drift],
        "corrections": [_action(a) for a in journaled],
        "proposed": proposed,
        "tombstones": [{"subject_key": t["subject_key"], "deleted_at": t["deleted_at"], "reason": t.get("reason"),
                        "run_id": t.get("run_id")} for t in tomb],
        "deletion_requests": [_request(r, history, callbacks) for r in requests],
        "consent_changes": [{"kind": c["kind"], "changed_at": c.get("changed_at"), "received_at": c["received_at"]}
                            for c in changes],
        "exceptions": [{"run_id": e["run_id"], "source": e.get("source"), "reason": e["reason"]} for e in exceptions],
        "profiles": [{"braze_id": p["braze_id"], "external_id": p.get("external_id"),
                      "last_seen_at": p["last_seen_at"]} for p in profiles],
        "runs": seen_runs,
    }
    story["current"] = _current(story)
    story["timeline"] = timeline(story)
    return story


def _drift(i: Mapping[str, Any], groups: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    where = place(str(i.get("field") or ""), groups)
    detail = i.get("detail") or {}
    return {"id": i["id"], "drift_class": i["drift_class"], "severity": i.get("severity"), "status": i["status"],
            "channel": where.channel, "group": where.group, "ketch": i.get("expected"), "braze": i.get("actual"),
            "reason": i.get("reason"), "ketch_collected_at": i.get("ketch_collected_at"),
            "deletion_requested_at": detail.get("requested_at"),
            "first_seen_at": i["first_seen_at"], "first_seen_run": i.get("first_seen_run"),
            "last_seen_at": i["last_seen_at"], "last_seen_run": i.get("last_seen_run"),
            "corrected_at": i.get("corrected_at"), "corrected_action": i.get("corrected_action"),
            "verified_at": i.get("verified_at"), "resolved_at": i.get("resolved_at"),
            "resolved_run": i.get("resolved_run")}


def _action(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"action_id": a["action_id"], "run_id": a.get("run_id"), "kind": a["kind"], "endpoint": a["endpoint"],
            "status": a["status"], "attempts": a["attempts"], "subjects_in_batch": len(a.get("subject_keys") or []),
            "created_at": a["created_at"], "sent_at": a.get("sent_at"), "finished_at": a.get("finished_at"),
            "error": a.get("error")}


def _proposed(plan: Mapping[str, Any], a: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    return {"plan_id": plan["plan_id"], "run_id": plan.get("run_id"), "planned_at": plan["created_at"],
            "plan_status": plan.get("status"), "kind": a.get("kind"), "endpoint": a.get("endpoint"),
            "group_id": a.get("group_id")}


def _request(r: Mapping[str, Any], history: list[dict[str, Any]], callbacks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"uid": r["uid"], "regulation": r.get("regulation"), "submitted_at": r.get("submitted_at"),
            "received_at": r["received_at"], "due_at": r.get("due_at"), "status": r["status"],
            "reason": r.get("reason"), "completed_at": r.get("completed_at"),
            "history": [{"at": h["at"], "status": h["status"], "message": h.get("message"), "run_id": h.get("run_id")}
                        for h in history if h["request_uid"] == r["uid"]],
            "callbacks": [{"position": c["position"], "status": c["status"], "attempts": c["attempts"],
                           "created_at": c["created_at"], "delivered_at": c.get("delivered_at"),
                           "last_error": c.get("last_error")} for c in callbacks if c["request_uid"] == r["uid"]]}


def _current(story: Mapping[str, Any]) -> dict[str, Any]:
    live = [d for d in story["drift"] if d["status"] in ("open", "corrected", "reported")]
    return {"open_drift": len(live), "open_classes": sorted({d["drift_class"] for d in live}),
            "deleted": bool(story["tombstones"]),
            "last_seen_at": max((d["last_seen_at"] for d in story["drift"]), default=None)}


def timeline(story: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every dated event, oldest first: {at, what, run_id}."""
    ev: list[dict[str, Any]] = []

    def add(at: Any, what: str, run_id: Any = None) -> None:
        if isinstance(at, datetime):
            ev.append({"at": at, "what": what, "run_id": run_id})
        elif isinstance(at, str) and at:
            ev.append({"at": datetime.fromisoformat(at), "what": what, "run_id": run_id})

    for c in story["consent_changes"]:
        add(c["changed_at"] or c["received_at"], f"Ketch: {c['kind']} change received through the webhook")
    for d in story["drift"]:
        where = f"{d['channel']}: {d['group']}"
        add(d["ketch_collected_at"], f"Ketch recorded the choice ({d['ketch']}) for {where}")
        add(d["deletion_requested_at"], "deletion requested")
        add(d["first_seen_at"], f"drift found: {d['drift_class']} on {where}; Ketch {d['ketch']}, "
                                f"Braze {d['braze']}", d["first_seen_run"])
        if d["last_seen_run"] and d["last_seen_run"] != d["first_seen_run"]:
            add(d["last_seen_at"], f"still drifting: {d['drift_class']} on {where}", d["last_seen_run"])
        add(d["corrected_at"], f"correction accepted by Braze: {d['drift_class']} on {where}")
        add(d["verified_at"], f"verified: Braze read back as {d['ketch']} on {where}")
        add(d["resolved_at"], f"resolved: {d['drift_class']} on {where} no longer found", d["resolved_run"])
    for a in story["corrections"]:
        add(a["sent_at"], f"sent {a['kind']} to Braze {a['endpoint']} (batch of {a['subjects_in_batch']})",
            a["run_id"])
        add(a["finished_at"], f"Braze answered {a['kind']}: {a['status']}", a["run_id"])
    for p in story["proposed"]:
        add(p["planned_at"], f"correction proposed, not sent: {p['kind']} {p['endpoint']}", p["run_id"])
    for t in story["tombstones"]:
        add(t["deleted_at"], "Braze profile deleted (tombstone kept to catch its return)", t.get("run_id"))
    for r in story["deletion_requests"]:
        add(r["submitted_at"], f"deletion request {r['uid']} submitted ({r['regulation'] or 'no regulation named'})")
        for h in r["history"]:
            add(h["at"], f"request {r['uid']}: {h['status']}: {h['message'] or ''}".rstrip(": "), h["run_id"])
        for cb in r["callbacks"]:
            add(cb["delivered_at"], f"callback {cb['position']} sent to Ketch for request {r['uid']}: delivered")
            if cb["delivered_at"] is None:
                add(cb["created_at"], f"callback {cb['position']} for request {r['uid']}: {cb['status']}"
                                      f"{' (' + cb['last_error'] + ')' if cb['last_error'] else ''}")
    for e in story["exceptions"]:
        run = next((r for r in story["runs"] if r["run_id"] == e["run_id"]), None)
        add(run["started_at"] if run else None, f"could not be checked ({e['source']}): {e['reason']}", e["run_id"])
    ev.sort(key=lambda e: e["at"])
    return ev
