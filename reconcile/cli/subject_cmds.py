"""`reconcile subject IDENTITY`: what happened to one person, across runs and the ledger."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import click

from reconcile.cli.common import DEFAULT_CONFIG, format_option, get_config
from reconcile.config import state_url
from reconcile.reports.humanize import dash, human_time


@click.command("subject")
@click.argument("identity")
@format_option
@click.option("--reveal", is_flag=True, help="Show identities in clear; recorded in every run the story names.")
@click.option("--actor", help="Who is revealing (default: the OS user).")
@click.pass_context
def subject_cmd(ctx: click.Context, identity: str, fmt: str, reveal: bool, actor: str | None) -> None:
    """One person's story: Ketch and Braze state seen, drift, corrections, deletion.

    IDENTITY is an email address, an external id, or the pseudonym a report shows
    (j***@example.com#3f2a1c9d01). Everything the state store holds about the subject
    is shown with its time: drift items (what Ketch said, what Braze had, in which
    channel and group), corrections sent and verified, deletion requests and the
    callbacks sent to Ketch, consent changes received. Identities are masked with the
    report key unless --reveal.

    Example:

        reconcile --config jobs/sandbox.toml subject ann@example.com --format json
    """
    from reconcile.reports.masking import mask, mask_key
    from reconcile.reports.build import os_user, record_reveal
    from reconcile.reports.requests import topic_names
    from reconcile.reports.scrub import masked_report
    from reconcile.reports.subject import TOKEN, resolve, subject_keys_for, subject_story
    from reconcile.store.store import Store

    cfg = get_config(ctx, DEFAULT_CONFIG)
    revealed = reveal or cfg.report.reveal
    key = mask_key(cfg)
    with Store.open(state_url(cfg)) as store:
        keys = resolve(store, identity, key)
        story = subject_story(store, keys or subject_keys_for(identity), topic_names(cfg.mapping.topics))
        if revealed and story["known"]:
            via = "reconcile subject --reveal" if reveal else "report.reveal = true"
            record_reveal(store, [r["run_id"] for r in story["runs"]], actor or os_user(),
                          datetime.now(timezone.utc), via)
    is_token = bool(TOKEN.match(identity.strip()))
    stored = story["subject_keys"][0]
    shown = identity.strip() if is_token else stored if revealed else mask(stored, key)
    doc: dict[str, Any] = {"query": shown, "masked": not revealed} | story
    if not revealed:
        doc = masked_report(doc, key, extra=keys) | {"query": shown}
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(story_text(doc))


def story_text(doc: Mapping[str, Any]) -> str:
    """The story for people: a summary, the timeline, then each record."""
    who = doc["query"]
    if not doc["known"]:
        return (f"No record of {who} in the state store: no run found drift for it, no correction named it, "
                "and no deletion request or consent change was received for it.\n"
                "A subject every run found in sync leaves no trace here; check the spelling, or pass the "
                "pseudonym shown in a report.")
    cur = doc["current"]
    runs = doc["runs"]
    lines = [f"Subject {who}" + (" (identities masked; --reveal shows them)" if doc["masked"] else ""),
             f"Stored as: {', '.join(doc['subject_keys'])}",
             "Now: " + "; ".join(filter(None, [
                 "deleted from Braze" if cur["deleted"] else "",
                 f"{cur['open_drift']} open drift item(s) ({', '.join(cur['open_classes'])})" if cur["open_drift"]
                 else "no open drift",
                 f"last checked {human_time(cur['last_seen_at'])}" if cur["last_seen_at"] else ""])),
             f"Runs that recorded it: {len(runs)}" + (
                 f" (first {human_time(runs[0]['started_at'])}, last {human_time(runs[-1]['started_at'])})"
                 if runs else ""), "", "Timeline:"]
    for ev in doc["timeline"]:
        run = f"  [run {ev['run_id']}]" if ev.get("run_id") else ""
        lines.append(f"  {human_time(_at(ev['at']))}  {ev['what']}{run}")
    if doc["drift"]:
        lines += ["", "Drift items (Ketch said / Braze had):"]
        for d in doc["drift"]:
            lines.append(f"  {d['drift_class']} on {d['channel']}: {d['group']}: Ketch {dash(d['ketch'])}, "
                         f"Braze {dash(d['braze'])}; {d['status']}; "
                         f"first seen {human_time(_at(d['first_seen_at']))}; "
                         f"corrected {human_time(_at(d['corrected_at']))}; "
                         f"verified {human_time(_at(d['verified_at']))}")
    if doc["corrections"]:
        lines += ["", "Corrections sent to Braze:"]
        for a in doc["corrections"]:
            lines.append(f"  {a['kind']} {a['endpoint']}: {a['status']} after {a['attempts']} attempt(s); "
                         f"sent {human_time(_at(a['sent_at']))}, answered {human_time(_at(a['finished_at']))}")
    if doc["proposed"]:
        lines += ["", "Corrections proposed, never sent:"]
        lines += [f"  {p['kind']} {p['endpoint']} in plan {p['plan_id']} ({dash(p['plan_status'])})"
                  for p in doc["proposed"]]
    if doc["deletion_requests"]:
        lines += ["", "Deletion requests (webhook ledger):"]
        for r in doc["deletion_requests"]:
            sent = sum(1 for c in r["callbacks"] if c["delivered_at"])
            lines.append(f"  {r['uid']}: {r['status']}; {dash(r['regulation'])}; submitted "
                         f"{human_time(_at(r['submitted_at']))}, due {human_time(_at(r['due_at']))}, completed "
                         f"{human_time(_at(r['completed_at']))}; callbacks to Ketch delivered {sent} of "
                         f"{len(r['callbacks'])}")
    if doc["exceptions"]:
        lines += ["", "Runs that could not check it:"]
        lines += [f"  {e['run_id']}: {dash(e['source'])}: {e['reason']}" for e in doc["exceptions"]]
    return "\n".join(lines)


def _at(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return value if isinstance(value, datetime) else None


COMMANDS = [subject_cmd]
