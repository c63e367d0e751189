"""Optional parts of the package and the extra that installs each.

    pip install "ketch-braze-reconcile[parquet]"    universe.parquet (pyarrow)
    pip install "ketch-braze-reconcile[postgres]"   a PostgreSQL state store (psycopg)
    pip install "ketch-braze-reconcile[server]"     `reconcile sandbox serve` (uvicorn)

`require` raises a `ConfigError` naming the extra when its module is missing, before any
work starts; `check_config` does so for everything a job config asks for.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

from reconcile.errors import ConfigError, ConfigProblem

DISTRIBUTION = "ketch-braze-reconcile"
EXTRAS = {"parquet": "pyarrow", "postgres": "psycopg", "server": "uvicorn"}


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, what: str, key: str = "") -> None:
    module = EXTRAS[extra]
    if not available(module):
        raise ConfigError(ConfigProblem(key or extra, f"{what} needs {module}, which is not installed",
                                        f'pip install "{DISTRIBUTION}[{extra}]"'))


def check_config(cfg: Any, environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    if cfg.universe.parquet is not None:
        require("parquet", "a Parquet universe file", "universe.parquet")
    url = env.get(cfg.state.url_env) if cfg.state.url_env else cfg.state.url
    if url and url.startswith("postgresql"):
        require("postgres", "a PostgreSQL state store", "state.url_env" if cfg.state.url_env else "state.url")
