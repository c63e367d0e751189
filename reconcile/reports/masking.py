"""Identity masking for reports and plan views: keyed pseudonyms and the key they use.

Masking is a keyed hash (HMAC-SHA256): the same person masks to the same token in every
report without the address being shown. Every string in the report is masked: values
under identity keys (`identity`, `subject_key(s)`, `email(s)`, `external_id(s)`, `braze_id(s)`, ...)
entirely, email addresses inside any other text (error messages, reasons, response
summaries echoing a rejected record). `report.reveal = true` shows identities in clear.

The key comes from the environment variable named by `report.mask_key_env`. Without it,
a random key is generated once and kept in `mask.key` (mode 0600) beside the SQLite state
database, or, when the state is in PostgreSQL or in memory, in `.reconcile/mask.key`
beside the config file (the current directory without one). It is never kept in the
report folder, which is what gets handed over: nothing in a report lets anyone recompute
a token from an address. Report files are written with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from reconcile.config import Config, state_url
from reconcile.errors import ConfigError, ConfigProblem

log = logging.getLogger(__name__)

KEY_FILE = "mask.key"
KEY_BYTES = 32
PRIVATE = 0o600
IDENTITY_KEY = re.compile(
    r"^(identity|identities|subject_keys?|emails?|email_keys?|external_ids?|braze_ids?|user_ids?|alias_names?)$",
    re.IGNORECASE,
)
EMAIL = re.compile(r"[^\s@,;:()<>\[\]\"']+@[^\s@,;:()<>\[\]\"']+\.[A-Za-z0-9-]+")


# masking ------------------------------------------------------------------------------


def mask(identity: str, key: bytes) -> str:
    """`j***@example.com#3f2a1c9d01` for emails, `id#3f2a1c9d01` otherwise."""
    digest = hmac.new(key, identity.strip().casefold().encode(), hashlib.sha256).hexdigest()[:10]
    local, at, domain = identity.strip().partition("@")
    return f"{local[:1]}***@{domain}#{digest}" if at else f"id#{digest}"


def mask_text(text: Any, key: bytes) -> Any:
    """Mask every email address inside free text (error messages, reasons)."""
    return EMAIL.sub(lambda m: mask(m.group(0), key), text) if isinstance(text, str) else text


def mask_all(value: Any, key: bytes, identity: bool = False) -> Any:
    """`value` with every string masked: wholly under an identity key, emails elsewhere."""
    if isinstance(value, str):
        return mask(value, key) if identity and value.strip() else mask_text(value, key)
    if isinstance(value, Mapping):
        return {
            mask_text(k, key): mask_all(v, key, identity or (isinstance(k, str) and bool(IDENTITY_KEY.match(k))))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_all(v, key, identity) for v in value]
    return value


def masked(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    return mask_all(doc, key)


def mask_key(cfg: Config, environ: Mapping[str, str] | None = None) -> bytes:
    """The masking key: `report.mask_key_env` if set, else the kept random key (see above)."""
    env = os.environ if environ is None else environ
    value = env.get(cfg.report.mask_key_env)
    if value:
        return value.encode()
    return _kept_key(mask_key_path(cfg, environ))


def mask_key_path(cfg: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Where the generated masking key is kept for this config."""
    folder = _sqlite_folder(cfg, environ)
    if folder is None:
        base = cfg.path.resolve().parent if cfg.path else Path.cwd()
        folder = base / ".reconcile"
    return folder / KEY_FILE


def _sqlite_folder(cfg: Config, environ: Mapping[str, str] | None) -> Path | None:
    try:
        url = make_url(state_url(cfg, environ))
    except (ConfigError, ValueError, TypeError):
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or url.query.get("uri"):
        return None
    return Path(url.database).expanduser().resolve().parent


def _kept_key(path: Path) -> bytes:
    if not path.exists():
        _create_key(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("masking key %s was readable by others (mode %o); set to 0600", path, mode)
        path.chmod(PRIVATE)
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 2 * KEY_BYTES or not re.fullmatch(r"[0-9a-f]+", text):
        raise ConfigError(
            ConfigProblem(
                "report.mask_key_env",
                f"the kept masking key {path} is not a key this program wrote",
                "restore it from a backup, or set the environment variable instead (a new key changes every token)",
            )
        )
    return text.encode()


def _create_key(path: Path) -> None:
    """Write a new random key; if another process got there first, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    write_private(staging, secrets.token_hex(KEY_BYTES) + "\n")
    try:
        os.link(staging, path)
        log.info("generated a masking key in %s; back it up to keep report tokens stable", path)
    except FileExistsError:
        pass
    finally:
        staging.unlink()


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd >= 0:
            os.close(fd)


def mask_key_notes(cfg: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """What `config check` says about the masking key outside the sandbox."""
    env = os.environ if environ is None else environ
    if cfg.sandbox.enabled or env.get(cfg.report.mask_key_env):
        return []
    return [f"report.mask_key_env: {cfg.report.mask_key_env} is not set, so report pseudonyms use a random key "
            f"generated once and kept in {mask_key_path(cfg, environ)} (mode 0600), never with the reports; "
            f"back that file up (a new key changes every token) or set {cfg.report.mask_key_env}"]


# the masked plan view (`reconcile plan --out FILE --masked`) ---------------------------
# Drift rows under their identity keys, action targets (subject key and identifier), drift
# keys and write-backs, and any email left in free text. The view marks itself
# `"masked": true`; it cannot be applied (its actions no longer match the stored plan's hash).


def _masked_action(action: dict[str, Any], key: bytes) -> dict[str, Any]:
    out = {k: mask_all(v, key) for k, v in action.items() if k not in ("targets", "drift_keys", "writeback")}
    out["targets"] = [[mask(str(t[0]), key), t[1], mask(str(t[2]), key)] if isinstance(t, list) and len(t) == 3
                      else mask_all(t, key, identity=True) for t in action.get("targets") or []]
    out["drift_keys"] = [[mask(str(k[0]), key), *k[1:]] if isinstance(k, list) and k
                         else mask_all(k, key, identity=True) for k in action.get("drift_keys") or []]
    out["writeback"] = [mask_all(w, key) for w in action.get("writeback") or []]
    return out


def masked_plan(body: dict[str, Any], key: bytes) -> dict[str, Any]:
    rest = mask_all({k: v for k, v in body.items() if k != "actions"}, key)
    return {**rest, "actions": [_masked_action(a, key) if isinstance(a, dict) else mask_text(a, key)
                                for a in body.get("actions") or []], "masked": True}
