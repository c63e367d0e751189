"""The Ketch webhook's error answer, written by the ledger's app and by the state store
(a message refused as a conflict keeps the answer it was given)."""

from __future__ import annotations

from typing import Any


def error_body(status: int, code: str, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Error", "metadata": metadata or {},
            "error": {"code": status, "status": code, "message": message}}
