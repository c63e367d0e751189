"""Which channel a drift item concerns: `sms` for a group mapped from a topic's SMS
channel, `email` for everything else (global `email_subscribe`, blocklist, email groups,
profiles). Opt-outs on each channel answer to their own law (CAN-SPAM for email, the TCPA
for SMS), so reports count and age them apart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from reconcile.engine.classes import DRIFT_CLASSES, SEVERITY

CHANNELS = ("email", "sms")


def sms_groups(cfg: Any) -> frozenset[str]:
    """The group ids mapped from a topic's `sms` channel."""
    return frozenset(m.subscription_group_id for m in cfg.mapping.topics if m.channel == "sms")


def channel_of(item: Mapping[str, Any], sms: frozenset[str]) -> str:
    """"sms" for an item about an SMS group, else "email". Reads the group from `group_id`,
    the detail, or the stored field (`group:<id>`)."""
    detail = item.get("detail") or {}
    field = str(item.get("field") or "")
    group = item.get("group_id") or detail.get("group_id") or (field.partition(":")[2] if ":" in field else "")
    return "sms" if group and group in sms else "email"


def by_channel(items: Iterable[Mapping[str, Any]], sms: frozenset[str]) -> list[dict[str, Any]]:
    """Rows (channel, drift_class, severity, count, corrected): every class of each channel
    that has items, in the order of the drift classes."""
    counts: Counter[tuple[str, str]] = Counter()
    done: Counter[tuple[str, str]] = Counter()
    for item in items:
        key = (channel_of(item, sms), str(item.get("drift_class")))
        counts[key] += 1
        done[key] += item.get("corrected_at") is not None or item.get("status") in ("corrected", "verified")
    return [{"channel": ch, "drift_class": c, "severity": SEVERITY[c], "count": counts[(ch, c)],
             "corrected": done[(ch, c)]}
            for ch in CHANNELS for c in DRIFT_CLASSES if counts[(ch, c)]]
