"""Run life cycle: the statuses a run passes through and the result it ends with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """Every status a row of the runs table may hold (a CHECK constraint enforces it)."""

    RUNNING = "running"
    PLANNED = "planned"
    DRY_RUN = "dry_run"
    APPLYING = "applying"
    APPLIED = "applied"
    PARTIAL = "partial"
    IN_SYNC = "in_sync"
    REFUSED = "refused"
    STALE = "stale"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.APPLYING)

    @property
    def succeeded(self) -> bool:
        """Runs whose extracts a later run may compare itself with (guards, watermarks)."""
        return self in (RunStatus.APPLIED, RunStatus.IN_SYNC, RunStatus.PARTIAL)


RUN_STATUSES = tuple(s.value for s in RunStatus)


@dataclass(frozen=True)
class RunResult:
    """What a finished run hands back to its caller (the CLI prints it, tests assert on it)."""

    run_id: str
    status: RunStatus
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    actions_planned: int = 0
    actions_sent: int = 0
    actions_failed: int = 0
    rejected_items: int = 0
    verified: int = 0
    unverified: int = 0
    overrides: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    report_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RunStatus(self.status))
        object.__setattr__(self, "counts", {str(k): int(v) for k, v in self.counts.items()})
        object.__setattr__(self, "overrides", tuple(self.overrides))
        object.__setattr__(self, "messages", tuple(self.messages))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (status as its string, tuples as lists)."""
        out = asdict(self)
        out["status"] = self.status.value
        out["overrides"] = list(self.overrides)
        out["messages"] = list(self.messages)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> RunResult:
        """Parse `to_json()` output (or its dict); unknown or missing fields are an error."""
        raw = json.loads(data) if isinstance(data, (str, bytes)) else dict(data)
        if not isinstance(raw, dict):
            raise ValueError(f"RunResult.from_json: expected a JSON object, got {type(raw).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"RunResult.from_json: unknown field(s) {', '.join(unknown)}")
        missing = sorted(n for n in ("run_id", "status", "exit_code") if n not in raw)
        if missing:
            raise ValueError(f"RunResult.from_json: missing field(s) {', '.join(missing)}")
        try:
            return cls(**raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"RunResult.from_json: {exc}") from exc
