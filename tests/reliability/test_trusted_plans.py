"""A plan file is applied only as the state store saved it; reports mask recursively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.errors import DataError
from reconcile.models.plan import Action
from reconcile.pipeline.run import plan_only
from reconcile.pipeline.saved import apply_saved
from reconcile.reports.masking import masked


def test_a_plan_file_with_a_hand_added_deletion_is_refused_and_nothing_is_sent(world, tmp_path: Path) -> None:
    w = world
    cfg = w.config()
    w.seed(cfg, subjects=60, drift=0.3)
    with w.runtime(cfg) as rt:
        planned = plan_only(rt)[1]
        doc = json.loads(json.dumps(rt.store.get_plan(planned.plan.plan_id)["body"], default=str))
    victims = [f"victim{i}@example.com" for i in range(40)]
    forged = {**doc["actions"][0], "action_id": "forged", "seq": 999, "kind": "delete", "endpoint": "/users/delete",
              "targets": [[v, "email", v] for v in victims],
              "drift_keys": [[v, "missed_deletion", "profile", None] for v in victims]}
    tampered = {**doc, "actions": [*doc["actions"], forged]}
    w.braze.calls.clear()
    with w.runtime(cfg) as rt, pytest.raises(DataError, match="differ from the plan the state store saved"):
        apply_saved(rt, tampered)
    assert w.writes() == []


@pytest.mark.parametrize("field", ["targets", "drift_keys"])
def test_an_action_without_targets_or_drift_keys_is_refused(field: str) -> None:
    action = {"action_id": "a", "plan_id": "p", "seq": 0, "kind": "delete", "endpoint": "/users/delete",
              "targets": [["a@x.com", "email", "a@x.com"]], "drift_keys": [["a@x.com", "missed_deletion", "profile", None]]}
    with pytest.raises(DataError, match="no targets or no drift keys"):
        Action.from_json({**action, field: []})


def test_report_documents_are_masked_at_every_depth() -> None:
    doc = {"run": {"error": "refused ann@example.com"}, "actions": [{"response_summary": {"responses": [
        {"message": "invalid email bob@example.com", "nested": [["carol@example.com"]]}]}}],
        "exceptions": [{"identity": "user-42", "reason": "x"}], "drift": [{"subject_key": "dave@example.com"}]}
    text = json.dumps(masked(doc, b"k"))
    for raw in ("ann@", "bob@", "carol@", "dave@", "user-42"):
        assert raw not in text
