"""`/users/export/segment`: every user of a segment, from the file Braze prepares.

Permission `users.export.segment`, shared 250k/h class. The POST starts an asynchronous
export and answers `{"message": "success", "object_prefix": ..., "url": ...}`; `url` is
a pre-signed download on another host (S3 or similar), so it is fetched with a plain GET
that never carries the Braze `Authorization` header. Until the file exists that URL
answers 403/404 (an S3-style XML error); it is polled every `poll_seconds` until
`timeout_seconds`. The download is capped at `max_bytes` and spooled to a temporary
file; it is a zip of JSON-lines files (one user object per line, about one file per
5,000 users), or a single gzip file. Every line is parsed; a malformed one is a
`DataError` naming the file and line.

Braze's documented failures raise `ExportUnavailable` (the caller reads profile by
profile instead), each without waiting or retrying: `kind="bucket"` (a success without
`url`: the workspace writes exports to its own S3/Azure/GCS bucket), `kind="busy"` (429:
an export of the segment is already running; the answer is taken as it is, never
retried, so the shared rate budget is not held back waiting for it) and
`kind="not_ready"` (no file within `timeout_seconds`: Braze reports a failed export by
email only, so a file that does not come is all a client sees).
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zipfile
from typing import IO, Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from reconcile.clients.tls import verified_context
from reconcile.clients.braze_results import ExportUnavailable
from reconcile.errors import DataError, FatalApiError, UnconfirmedWrite

SEGMENT_EXPORT_PATH = "/users/export/segment"
MAX_EXPORT_BYTES = 2 * 1024 ** 3
SPOOL_IN_MEMORY_BYTES = 32 * 1024 ** 2
NOT_READY = frozenset({403, 404})
POLL_AGAIN_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def download_label(url: str) -> str:
    """The download URL without its query (the pre-signed signature) or user-info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", ""))


def export_location(body: Any, endpoint: str) -> str:
    """The download URL of a started export, or the error saying why there is none."""
    if not isinstance(body, dict) or str(body.get("message", "")).strip().lower() != "success":
        raise UnconfirmedWrite("the answer does not confirm that the export started (no \"message\": \"success\")",
                               service="braze", method="POST", url=endpoint)
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ExportUnavailable("bucket", "the answer has no download 'url': the workspace writes segment exports to "
                                "its own S3/Azure/GCS bucket, which this job does not read; profiles are read one by "
                                "one instead", service="braze", method="POST", url=endpoint)
    return url


def export_lines(spool: IO[bytes]) -> Iterator[dict[str, Any]]:
    """User objects from a zip of JSON-lines files (or one gzip file), in file-name order."""
    try:
        magic = spool.read(2)
        spool.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.open(spool) as raw:
                yield from _lines(raw, "export.gz")
            return
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile:
            raise DataError("the segment export download is neither a zip nor a gzip file") from None
        with archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if not info.is_dir():
                    with archive.open(info) as raw:
                        yield from _lines(raw, info.filename)
    finally:
        spool.close()


def _lines(raw: IO[bytes] | gzip.GzipFile, name: str) -> Iterator[dict[str, Any]]:
    number = 0
    try:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), 1):
            if not line.strip():
                continue
            try:
                user = json.loads(line)
            except ValueError:
                raise DataError(f"segment export file {name!r} line {number}: not valid JSON") from None
            if not isinstance(user, dict):
                raise DataError(f"segment export file {name!r} line {number}: not a JSON object")
            yield user
    except (UnicodeDecodeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"segment export file {name!r} after line {number}: "
                        f"unreadable ({type(exc).__name__})") from None


class SegmentExports:
    """Mixed into `BrazeClient`; uses its `_call`, `_transport`, `_sleep`, `_clock` and `cfg`."""

    def export_segment(self, segment_id: str, fields: Sequence[str], *, poll_seconds: float = 15.0,
                       timeout_seconds: float = 3600.0, max_bytes: int = MAX_EXPORT_BYTES,
                       callback_endpoint: str | None = None) -> Iterator[dict[str, Any]]:
        """Start an export of `segment_id` with `fields` (`fields_to_export`), wait for its
        file and return an iterator over its user objects."""
        if not isinstance(segment_id, str) or not segment_id.strip():
            raise ValueError("segment_id must be the Braze segment's API identifier (a non-empty string)")
        fields_list = list(dict.fromkeys(fields))
        if not fields_list:
            raise ValueError("fields_to_export must name at least one field, e.g. ['external_id', 'email']")
        body: dict[str, Any] = {"segment_id": segment_id, "fields_to_export": fields_list}
        if callback_endpoint:
            body["callback_endpoint"] = callback_endpoint
        try:
            answer = self._call("shared", "POST", SEGMENT_EXPORT_PATH, body=body,  # type: ignore[attr-defined]
                                final=frozenset({429}))
        except FatalApiError as exc:
            if exc.status_code != 429:
                raise
            raise ExportUnavailable("busy", "an export of this segment is already running (429); not retried",
                                    service="braze", method="POST", url=exc.url, status_code=429) from None
        url = export_location(answer.body, answer.url)
        return export_lines(self._await_download(url, poll_seconds, timeout_seconds, max_bytes))

    def _await_download(self, url: str, poll_seconds: float, timeout_seconds: float, max_bytes: int) -> IO[bytes]:
        clock, sleep = self._clock, self._sleep  # type: ignore[attr-defined]
        deadline = clock() + timeout_seconds
        with httpx.Client(transport=self._transport, timeout=self.cfg.timeout_seconds,  # type: ignore[attr-defined]
                          follow_redirects=True, verify=verified_context()) as plain:
            while True:
                spool = self._download(plain, url, max_bytes)
                if spool is not None:
                    return spool
                remaining = deadline - clock()
                if remaining <= 0:
                    raise ExportUnavailable(
                        "not_ready", f"the segment export was not ready after {timeout_seconds:g}s (failed, or slower "
                        "than allowed; raise timeout_seconds)", service="braze-export", method="GET",
                        url=download_label(url))
                sleep(min(max(poll_seconds, 0.0), remaining))

    @staticmethod
    def _download(plain: httpx.Client, url: str, max_bytes: int) -> IO[bytes] | None:
        """The file spooled to a temporary file, or None while it is not there yet."""
        where = {"service": "braze-export", "method": "GET", "url": download_label(url)}
        try:
            with plain.stream("GET", url) as response:
                status = response.status_code
                if status in NOT_READY or status >= 500:
                    return None
                if status != 200:
                    raise FatalApiError("the export download was refused", status_code=status, **where)
                return _spool(response, max_bytes, where)
        except POLL_AGAIN_ERRORS:
            return None


def _spool(response: httpx.Response, max_bytes: int, where: dict[str, str]) -> IO[bytes]:
    too_big = f"the export download is larger than max_bytes={max_bytes}; raise max_bytes or export a smaller segment"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DataError(f"braze-export GET {where['url']}: {too_big}")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
    total = 0
    for block in response.iter_bytes():
        total += len(block)
        if total > max_bytes:
            spool.close()
            raise DataError(f"braze-export GET {where['url']}: {too_big}")
        spool.write(block)
    spool.seek(0)
    return spool
