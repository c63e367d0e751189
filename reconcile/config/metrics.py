"""The `[metrics]` section of a job config.

    [metrics]
    textfile = "/var/lib/node_exporter/textfile/reconcile.prom"
    pushgateway_url_env = "RECONCILE_PUSHGATEWAY_URL"
    job = "reconcile"

The Pushgateway URL is a secret: only the name of the variable holding it is in the file.
The section does not change what a run does, so it is not part of the config hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.config.notify import section
from reconcile.errors import ConfigProblem


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = None
    pushgateway_url_env: str | None = None
    job: str = "reconcile"

    def secret_names(self) -> list[str]:
        return [self.pushgateway_url_env] if self.pushgateway_url_env else []


def parse_metrics(data: Any, base: Path, problems: list[ConfigProblem]) -> MetricsConfig:
    d = section(data, "metrics", problems)
    for key in d:
        if key not in ("textfile", "pushgateway_url_env", "job", "pushgateway_url"):
            problems.append(ConfigProblem(f"metrics.{key}", "unknown key",
                                          "remove it or check its spelling against docs/config.md"))
    textfile = d.get("textfile")
    if textfile is not None and (not isinstance(textfile, str) or not textfile.endswith(".prom")):
        problems.append(ConfigProblem("metrics.textfile", f"must be a path ending in .prom, got {textfile!r}",
                                      'set metrics.textfile = "/var/lib/node_exporter/textfile/reconcile.prom"'))
        textfile = None
    env = d.get("pushgateway_url_env")
    if env is not None and (not isinstance(env, str) or not env):
        problems.append(ConfigProblem("metrics.pushgateway_url_env", f"must be a variable name, got {env!r}",
                                      'set metrics.pushgateway_url_env = "RECONCILE_PUSHGATEWAY_URL"'))
        env = None
    if "pushgateway_url" in d:
        problems.append(ConfigProblem("metrics.pushgateway_url", "URLs go in the environment, not the file",
                                      "use metrics.pushgateway_url_env"))
    job = d.get("job", "reconcile")
    if not isinstance(job, str) or not job:
        problems.append(ConfigProblem("metrics.job", f"must be a name, got {job!r}", 'set metrics.job = "reconcile"'))
        job = "reconcile"
    return MetricsConfig(textfile=(base / textfile).resolve() if textfile else None, pushgateway_url_env=env, job=job)
