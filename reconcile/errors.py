"""Every error `reconcile` raises on purpose, classified by what the caller should do.

    ReconcileError                  exit 1; root of everything raised on purpose
    ├── ConfigError                 bad or missing configuration; lists every problem at once
    ├── ApiError                    an HTTP API answered badly; .service .status_code .method .url
    │   ├── TransientApiError       429 / 5xx / timeout / connection error after the retries are spent
    │   │   ├── RateLimited         .reset_at (epoch seconds) when the API said so
    │   │   └── UnconfirmedWrite    a write answered 2xx without a body confirming it
    │   ├── FatalApiError           any other 4xx, or a malformed body; do not retry
    │   │   ├── AuthError           401
    │   │   ├── PermissionDenied    403
    │   │   └── NotFound            404
    │   └── RecordRejected          one record refused inside a batch; the run continues
    ├── DataError                   bad input rows (universe, CSV, SQL, API payload shape)
    ├── GuardRefused                a safety guard stopped apply; .guard names it (exit 10-14)
    ├── StalePlan                   a saved plan no longer matches the world (exit 5)
    ├── PartialFailure              apply finished with some batches failed (exit 4)
    ├── RunLocked                   another run holds the lock (exit 6)
    └── StoreError                  the state database failed or is on an unknown schema

Messages never carry secrets: URLs pass through `reconcile.redact.sanitize_url` before they
reach an error, and API keys are never part of an error's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    """Process exit codes, Terraform-style (documented in README "Exit codes")."""

    OK = 0
    ERROR = 1
    DRIFT = 2
    PARTIAL = 4
    STALE_PLAN = 5
    LOCKED = 6
    # A guard refusal has its own code per guard, all in 10-19.
    GUARDS = {"empty_extract": 10, "extract_shrink": 11, "max_deletions": 12,
              "max_deletion_fraction": 13, "max_unsubscribe_fraction": 14, "max_subscribe_fraction": 15}


class ReconcileError(Exception):
    exit_code = ExitCode.ERROR


@dataclass(frozen=True)
class ConfigProblem:
    """One configuration problem: where it is, what is wrong, how to fix it."""

    key: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem} (fix: {self.fix})"


class ConfigError(ReconcileError):
    def __init__(self, problems: list[ConfigProblem] | ConfigProblem, source: str = "config"):
        self.problems = [problems] if isinstance(problems, ConfigProblem) else list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class ApiError(ReconcileError):
    def __init__(
        self,
        message: str,
        *,
        service: str = "",
        status_code: int | None = None,
        method: str = "",
        url: str = "",
        body: str = "",
    ):
        self.service = service
        self.status_code = status_code
        self.method = method
        self.url = url
        self.body = body[:500]
        where = f"{service} {method} {url}".strip()
        status = f" HTTP {status_code}" if status_code is not None else ""
        detail = f": {self.body}" if self.body else ""
        super().__init__(f"{where}{status}: {message}{detail}")


class TransientApiError(ApiError):
    pass


class RateLimited(TransientApiError):
    def __init__(self, message: str, *, reset_at: float | None = None, **kw):
        self.reset_at = reset_at
        super().__init__(message, **kw)


class UnconfirmedWrite(TransientApiError):
    """A write answered 2xx whose body does not confirm success (HTML, not JSON, no marker):
    the batch is not known to be applied and must be sent again later."""


class FatalApiError(ApiError):
    pass


class AuthError(FatalApiError):
    pass


class PermissionDenied(FatalApiError):
    pass


class NotFound(FatalApiError):
    pass


class RecordRejected(ApiError):
    def __init__(self, message: str, *, item: str = "", **kw):
        self.item = item
        super().__init__(message, **kw)


class DataError(ReconcileError):
    pass


class GuardRefused(ReconcileError):
    """`guards` lists every tripped guard in order of severity; the first sets the exit code."""

    def __init__(self, guards: list[str], message: str):
        self.guards = list(guards)
        self.guard = self.guards[0]
        self.exit_code = ExitCode.GUARDS.get(self.guard, 19)
        super().__init__(f"guard {', '.join(self.guards)} refused apply: {message}")


class StalePlan(ReconcileError):
    exit_code = ExitCode.STALE_PLAN


class PartialFailure(ReconcileError):
    exit_code = ExitCode.PARTIAL


class RunLocked(ReconcileError):
    exit_code = ExitCode.LOCKED


class StoreError(ReconcileError):
    pass
