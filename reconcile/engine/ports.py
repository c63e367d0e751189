"""What the engine calls on the API clients, as Protocols (the clients in `clients/` satisfy them).

The engine never imports a client: it is handed objects with these methods, so strict
mypy checks every call across the seam, and a test can hand it a double with the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

import pandas as pd

from reconcile.clients.braze_profiles import ProfileRef
from reconcile.clients.braze_results import ExportResult, WriteResult
from reconcile.clients.ketch_parse import KetchRecord

T = TypeVar("T")
KetchProgress = Callable[[int, int], None]
OnError = Callable[[str, Exception], None]


class BrazeListReads(Protocol):
    """Braze's address-level email lists of a window."""

    def email_unsubscribes(self, start_date: date, end_date: date, *,
                           email: str | None = None) -> Iterator[dict[str, Any]]: ...

    def email_hard_bounces(self, start_date: date, end_date: date, *,
                           email: str | None = None) -> Iterator[dict[str, Any]]: ...


class BrazeProfileReads(Protocol):
    """Reading Braze profiles and their subscription groups."""

    def export_ids(self, external_ids: Iterable[str], fields: Sequence[str]) -> ExportResult: ...

    def export_emails(self, emails: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]: ...

    def export_segment(self, segment_id: str, fields: Sequence[str], *, poll_seconds: float = ...,
                       timeout_seconds: float = ..., max_bytes: int = ...,
                       callback_endpoint: str | None = ...) -> Iterator[dict[str, Any]]: ...

    def user_profiles_by_email(self, emails: Iterable[str]) -> list[ProfileRef] | None: ...

    def user_profiles_by_external_id(self, external_ids: Iterable[str]) -> list[ProfileRef] | None: ...

    def subscription_status_get(self, group_id: str, *, external_ids: Iterable[str] | None = ...,
                                emails: Iterable[str] | None = ...) -> dict[str, str]: ...


class BrazeReads(BrazeListReads, BrazeProfileReads, Protocol):
    """Everything a run reads from Braze."""


class BrazeWrites(Protocol):
    """The corrections a plan sends to Braze."""

    def unsubscribe_groups(self, group_id: str, id_type: str, ids: Iterable[str]) -> WriteResult: ...

    def subscribe_groups(self, group_id: str, id_type: str, ids: Iterable[str]) -> WriteResult: ...

    def set_global_state(self, state: str, id_type: str, ids: Iterable[str]) -> WriteResult: ...

    def delete_profiles(self, id_type: str, ids: Iterable[str], prioritization: Sequence[str] = ...) -> WriteResult: ...

    def blocklist_emails(self, emails: Iterable[str]) -> WriteResult: ...

    def create_alias_optouts(self, emails: Iterable[str], alias_label: str) -> WriteResult: ...


class SharedRows(Protocol):
    """The segment export of a run or sweep, shared by its parts and workers
    (engine/shared_export.py): the profiles of some addresses, None when unavailable."""

    @property
    def scope(self) -> str: ...

    def rows_for(self, email_keys: Iterable[str]) -> pd.DataFrame | None: ...


class SegmentExportStore(Protocol):
    """Where a shared segment export is claimed, stored and waited for (store/segment_exports.py)."""

    def prune_segment_exports(self, before: datetime) -> int: ...

    def claim_segment_export(self, scope: str, segment_id: str, holder: str,
                             now: datetime) -> tuple[bool, dict[str, Any]]: ...

    def add_segment_export_rows(self, scope: str, frame: pd.DataFrame) -> int: ...

    def finish_segment_export(self, scope: str, holder: str, status: str, now: datetime, *,
                              profiles: int | None = ..., reason: str | None = ...) -> bool: ...

    def give_up_segment_export(self, scope: str, now: datetime, reason: str) -> None: ...

    def segment_export(self, scope: str) -> dict[str, Any] | None: ...

    def segment_export_rows(self, scope: str, email_keys: Iterable[str]) -> pd.DataFrame: ...


class KetchReads(Protocol):
    """Reading Ketch consent and subscriptions, many identities at once."""

    def fetch_many(self, space: str, values: list[str], purposes: dict[str, str] | None = None, *,
                   progress: KetchProgress | None = None,
                   on_error: OnError | None = None) -> dict[str, KetchRecord]: ...


class KetchWrites(Protocol):
    """Writing an opt-out that started in Braze back to Ketch."""

    def run(self, awaitable: Awaitable[T]) -> T: ...

    def write_back_optout(self, identities: dict[str, str], topics: dict[tuple[str, str | None], str],
                          purposes: dict[str, str], at: datetime,
                          known_bases: dict[str, str] | None = ...) -> Awaitable[list[str]]: ...
