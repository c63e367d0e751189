"""Typed value objects passed between the pipeline's stages."""

from reconcile.models.run import RUN_STATUSES, RunResult, RunStatus

__all__ = ["RUN_STATUSES", "RunResult", "RunStatus"]
