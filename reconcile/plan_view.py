"""A plan document with every identity masked (`reconcile plan --out FILE --masked`).

The same keyed pseudonyms as the reports (`report.mask`): drift rows under their identity
keys, action targets (subject key and identifier), drift keys and write-backs, and any
email left in free text. The view marks itself `"masked": true`; it cannot be applied
(its actions no longer match the stored plan's hash).
"""

from __future__ import annotations

from typing import Any

from reconcile.report import mask, mask_all, mask_text


def _action(action: dict[str, Any], key: bytes) -> dict[str, Any]:
    out = {k: mask_all(v, key) for k, v in action.items() if k not in ("targets", "drift_keys", "writeback")}
    out["targets"] = [[mask(str(t[0]), key), t[1], mask(str(t[2]), key)] if isinstance(t, list) and len(t) == 3
                      else mask_all(t, key, identity=True) for t in action.get("targets") or []]
    out["drift_keys"] = [[mask(str(k[0]), key), *k[1:]] if isinstance(k, list) and k
                         else mask_all(k, key, identity=True) for k in action.get("drift_keys") or []]
    out["writeback"] = [mask_all(w, key) for w in action.get("writeback") or []]
    return out


def masked_plan(body: dict[str, Any], key: bytes) -> dict[str, Any]:
    rest = mask_all({k: v for k, v in body.items() if k != "actions"}, key)
    return {**rest, "actions": [_action(a, key) if isinstance(a, dict) else mask_text(a, key)
                                for a in body.get("actions") or []], "masked": True}
