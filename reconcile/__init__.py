"""Keep Braze honest about what people told Ketch: scheduled consent reconciliation.

The public API, for running the job from Python instead of the `reconcile` command:

    from reconcile import load_config, open_session, run_job

    with open_session(load_config("job.toml")) as session:
        result = run_job(session, mode="incremental")

Names are imported on first use, so `import reconcile` (and the CLI's start) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "Config": "reconcile.config",
    "load_config": "reconcile.config",
    "ExitCode": "reconcile.errors",
    "ReconcileError": "reconcile.errors",
    "RunResult": "reconcile.models.run",
    "RunStatus": "reconcile.models.run",
    "Session": "reconcile.pipeline.session",
    "open_session": "reconcile.pipeline.session",
    "run_job": "reconcile.pipeline.job",
    "plan_only": "reconcile.pipeline.run",
    "apply_saved": "reconcile.pipeline.saved",
}

__all__ = ["Config", "ExitCode", "ReconcileError", "RunResult", "RunStatus", "Session", "__version__", "apply_saved",
           "load_config", "open_session", "plan_only", "run_job"]

if TYPE_CHECKING:
    from reconcile.config import Config, load_config
    from reconcile.errors import ExitCode, ReconcileError
    from reconcile.models.run import RunResult, RunStatus
    from reconcile.pipeline.job import run_job
    from reconcile.pipeline.run import plan_only
    from reconcile.pipeline.saved import apply_saved
    from reconcile.pipeline.session import Session, open_session


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'reconcile' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
