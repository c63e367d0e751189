"""The universe's inputs: the identity list and the deletion requests, read from CSV or
Parquet files or a SQL query (SQLAlchemy), checked, in the frames engine/universe.py joins.

Reading is I/O, so it lives here and not in the engine; `build_universe` takes the frames.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from reconcile.config import SqlSource, UniverseConfig, secret
from reconcile.engine.source_checks import checked
from reconcile.engine.times import with_times
from reconcile.errors import DataError


def read_table(path: Path, column: str | None, what: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; the identity column is renamed to `identity` (`None`: as read)."""
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype="string",
                                                                                   keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{what} {path}: cannot read ({exc}); fix the file or the path") from None
    if column is None:
        return df
    if column not in df.columns:
        raise DataError(f"{what} {path}: no column {column!r} (columns: {', '.join(map(str, df.columns))}); "
                        f"rename the column or set universe.identity_column")
    return df.rename(columns={column: "identity"})


def read_sql(src: SqlSource, column: str | None, what: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    url = src.url or secret(src.url_env)
    if not url:
        raise DataError(f"{what}: environment variable {src.url_env} is not set; export it")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            df = pd.read_sql_query(sa.text(src.query), conn, dtype="string", params=params or None)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        detail = str(getattr(cause, "orig", None) or cause).splitlines()[0][:200]
        raise DataError(f"{what}: query failed ({detail}); fix {what}.query") from None
    finally:
        engine.dispose()
    if column is None:
        return df
    if column not in df.columns:
        raise DataError(f"{what}: the query returns no column {column!r}; alias it: SELECT ... AS {column}")
    return df.rename(columns={column: "identity"})


def load_listed(cfg: UniverseConfig, since: datetime | None = None, key_type: str | None = None) -> pd.DataFrame:
    """The configured identity list; with `since` (incremental runs) only what changed after it.

    A SQL query that mentions `:since` gets it bound; a file or query with an `updated_at`
    column is filtered on it; a source with neither contributes nothing to an incremental
    run (its subjects are swept by full runs). Each source (in an incremental run, what it
    contributes) is refused whole when mostly malformed under `key_type`, or holding an
    oversized field (engine/source_checks.py)."""
    frames = []
    total: int | None = 0
    if cfg.csv:
        what = f"universe.csv {cfg.csv}"
        whole = read_table(cfg.csv, cfg.identity_column, "universe.csv")
        total = (total or 0) + len(whole)
        frames.append(checked(_changed(whole, since, False, what), key_type, what))
    if cfg.parquet:
        what = f"universe.parquet {cfg.parquet}"
        whole = read_table(cfg.parquet, cfg.identity_column, "universe.parquet")
        total = (total or 0) + len(whole)
        frames.append(checked(_changed(whole, since, False, what), key_type, what))
    if cfg.sql:
        bound = since is not None and ":since" in cfg.sql.query
        df = read_sql(cfg.sql, cfg.identity_column, "universe.sql", {"since": since} if bound else None)
        total = None if bound or total is None else total + len(df)  # a bound query returns only changes
        frames.append(checked(_changed(df, since, bound, "universe.sql"), key_type, "universe.sql"))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"identity": pd.Series(dtype="string")})
    if cfg.phone_column and cfg.phone_column != "phone" and cfg.phone_column in out.columns:
        out = out.drop(columns=[c for c in ("phone",) if c in out.columns]).rename(columns={cfg.phone_column: "phone"})
    if cfg.phone_column and len(frames) and "phone" not in out.columns:
        raise DataError(f"universe: the identity list has no column {cfg.phone_column!r} (universe.phone_column); "
                        "add it, or unset universe.phone_column")
    out.attrs["source_rows"] = total if frames else None  # the whole list's rows: the guards' workspace measure
    return out


def _changed(df: pd.DataFrame, since: datetime | None, already_filtered: bool, what: str) -> pd.DataFrame:
    """The rows changed after `since`. A row whose `updated_at` is empty or not a time is
    kept (it is checked: reading is safe); one that is not a time is reported in the run's
    exceptions (engine/times.py)."""
    if since is None or already_filtered:
        return df
    if "updated_at" not in df.columns:
        return df.iloc[0:0]
    df = with_times(df, "updated_at", what)
    newer = (df["updated_at"] > pd.Timestamp(since)) | df["updated_at"].isna()
    return df[newer.fillna(True).astype(bool).to_numpy()]


def load_deletions(cfg: UniverseConfig, key_type: str = "email") -> pd.DataFrame:
    """Deletion requests: `identity, requested_at`, or Ketch's DSR records filtered to the
    erasure rights (`attrs["ignored_rights"]`: right -> count of the other rows, never deleted)."""
    frames: list[pd.DataFrame] = []
    ignored: Counter[str] = Counter()
    if cfg.deletions_csv:
        raw = read_table(cfg.deletions_csv, None, "universe.deletions_csv")
        frames.append(_deletion_source(raw, cfg, key_type, f"universe.deletions_csv {cfg.deletions_csv}", ignored))
    if cfg.deletions_sql:
        raw = read_sql(cfg.deletions_sql, None, "universe.deletions_sql")
        frames.append(_deletion_source(raw, cfg, key_type, "universe.deletions_sql", ignored))
    if not frames:
        out = pd.DataFrame({"identity": pd.Series(dtype="string"), "requested_at": pd.Series(dtype="string")})
    else:
        out = pd.concat(frames, ignore_index=True)
    out.attrs["ignored_rights"] = dict(ignored)
    return out


def _deletion_source(raw: pd.DataFrame, cfg: UniverseConfig, key_type: str, what: str,
                     ignored: Counter[str]) -> pd.DataFrame:
    """One deletions source, checked whole, with `requested_at` parsed (engine/times.py): a
    row whose time is not a time is quarantined by `build_universe`, a source of mostly
    such rows refused (after the identity checks: swapped columns read as bad identities)."""
    rows = _deletion_rows(checked(raw, None, what), cfg, key_type, what, ignored)
    column = cfg.deletions_requested_at_column if _is_dsr(raw, cfg) else "requested_at"
    return with_times(checked(rows, key_type, what), "requested_at", what, column)


def _deletion_rows(df: pd.DataFrame, cfg: UniverseConfig, key_type: str, what: str,
                   ignored: Counter[str]) -> pd.DataFrame:
    right = cfg.deletions_right_column
    if not _is_dsr(df, cfg):
        if "identity" not in df.columns:
            raise DataError(f"{what}: no column 'identity' (columns: {', '.join(map(str, df.columns))}); name the "
                            "column identity, or give Ketch DSR records with universe.deletions_format = \"ketch_dsr\"")
        return df
    ident = cfg.deletions_identity_column or ("email" if key_type == "email" else "subject")
    missing = [c for c in (right, ident) if c not in df.columns]
    if missing:
        raise DataError(f"{what}: Ketch DSR records need the column(s) {', '.join(missing)} (columns: "
                        f"{', '.join(map(str, df.columns))}); map them with universe.deletions_right_column and "
                        "universe.deletions_identity_column")
    rights = df[right].astype("string").str.strip().str.casefold()
    keep = rights.isin({r.casefold() for r in cfg.deletions_rights}).fillna(False).astype(bool)
    ignored.update({str(k): int(v) for k, v in rights[~keep].fillna("(none)").value_counts().items()})
    names = {ident: "identity", cfg.deletions_requested_at_column: "requested_at"}
    if ident != cfg.deletions_email_column:
        names[cfg.deletions_email_column] = "email"
    kept = df[keep.to_numpy()]
    return kept[[c for c in names if c in kept.columns]].rename(columns=names)


def _is_dsr(df: pd.DataFrame, cfg: UniverseConfig) -> bool:
    """Whether a deletions source holds Ketch's DSR records (universe.deletions_format)."""
    return cfg.deletions_format == "ketch_dsr" or (
        cfg.deletions_format == "auto" and cfg.deletions_right_column in df.columns and "identity" not in df.columns)
