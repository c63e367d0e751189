"""What `reconcile plan` says would change, Terraform style: per drift class and endpoint,
how many batches, subjects and drift items, with a few masked examples."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

SYMBOL = {"delete": "-", "group_subscribe": "+", "global_subscribe": "+", "alias_optout": "+"}  # else "~"
EXAMPLES = 3


def plan_rows(actions: Any, mask: Callable[[str], str]) -> list[dict[str, Any]]:
    """One row per (drift class, correction kind, endpoint), in plan order."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    batches: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    subjects: dict[tuple[str, str, str], dict[str, None]] = defaultdict(dict)
    for action in actions:
        for key in action.drift_keys:
            k = (key.drift_class, str(action.kind), action.endpoint)
            row = rows.setdefault(k, {"drift_class": k[0], "kind": k[1], "endpoint": k[2], "items": 0})
            row["items"] += 1
            batches[k].add(action.action_id)
            subjects[k][key.subject_key] = None
    out = []
    for k, row in rows.items():
        keys = list(subjects[k])
        out.append({**row, "batches": len(batches[k]), "subjects": len(keys),
                    "examples": [mask(s) for s in keys[:EXAMPLES]]})
    return out


def plan_text(plan_id: str, rows: list[dict[str, Any]], tripped: Any, verdicts: Any = ()) -> list[str]:
    """The plan for people, then every guard's verdict (whether or not there are changes: a
    universe that collapsed looks "in sync", and `run` on it is refused)."""
    refusing = list(tripped)
    if not rows:
        lines = [f"No changes. Braze matches Ketch for every correctable class (plan {plan_id})."
                 if not refusing else
                 f"No changes planned (plan {plan_id}), but apply would be refused: the extract cannot be trusted."]
    else:
        lines = ["Reconcile would make the following corrections in Braze:", ""]
        w_class = max(len(r["drift_class"]) for r in rows)
        w_end = max(len(r["endpoint"]) for r in rows)
        for r in rows:
            lines.append(f"  {SYMBOL.get(r['kind'], '~')} {r['drift_class']:<{w_class}}  {r['endpoint']:<{w_end}}  "
                         f"{r['items']} item(s), {r['subjects']} subject(s) in {r['batches']} batch(es)")
            if r["examples"]:
                lines.append(f"      e.g. {', '.join(r['examples'])}")
        total = {k: sum(r[k] for r in rows) for k in ("items",)}
        kinds: defaultdict[str, int] = defaultdict(int)
        for r in rows:
            kinds[r["kind"]] += r["items"]
        lines += ["", f"Plan {plan_id}: {total['items']} correction(s): "
                  + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) + ". Nothing was written to Braze."]
    if verdicts:
        lines += ["", "Guards:"]
        width = max(len(v.guard) for v in verdicts)
        for v in verdicts:
            lines.append(f"  {'REFUSE' if v.tripped else 'ok':<6}  {v.guard:<{width}}  {v.message}")
    for t in refusing:
        lines.append(f"Guard {t.guard} would refuse apply: {t.message}")
    return lines
