"""`schedules.toml`: which job config runs when, parsed with APScheduler's cron triggers.

Problems are collected like the job config's (`ConfigError` with key paths and fixes).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from reconcile.errors import ConfigError, ConfigProblem

MODES = ("full", "incremental")


@dataclass(frozen=True)
class Schedule:
    name: str
    config: Path
    cron: str
    mode: str
    misfire_grace_seconds: int
    trigger: CronTrigger

    def next_runs(self, after: datetime, count: int = 3) -> list[datetime]:
        out, prev = [], None
        now = after
        for _ in range(count):
            fire = self.trigger.get_next_fire_time(prev, now)
            if fire is None:
                break
            out.append(fire)
            prev, now = fire, fire
        return out


def _one(i: int, item: dict, base: Path, tz: ZoneInfo, problems: list[ConfigProblem]) -> Schedule | None:
    key = f"schedule[{i}]"
    name, cron, cfg = item.get("name"), item.get("cron"), item.get("config")
    mode, grace = item.get("mode", "full"), item.get("misfire_grace_seconds", 300)
    before = len(problems)
    for field, value in (("name", name), ("cron", cron), ("config", cfg)):
        if not isinstance(value, str) or not value:
            problems.append(ConfigProblem(f"{key}.{field}", "is required", f"set {key}.{field}"))
    if mode not in MODES:
        problems.append(ConfigProblem(f"{key}.mode", f"must be full or incremental, got {mode!r}", 'mode = "full"'))
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 1:
        problems.append(ConfigProblem(f"{key}.misfire_grace_seconds", f"must be a positive integer, got {grace!r}",
                                      "misfire_grace_seconds = 900"))
    unknown = set(item) - {"name", "cron", "config", "mode", "misfire_grace_seconds"}
    problems += [ConfigProblem(f"{key}.{k}", "unknown key", "remove it") for k in sorted(unknown)]
    if isinstance(cfg, str) and cfg and not (base / cfg).exists():
        problems.append(ConfigProblem(f"{key}.config", f"file not found: {base / cfg}", "fix the path (relative to schedules.toml)"))
    trigger = None
    if isinstance(cron, str) and cron:
        try:
            trigger = CronTrigger.from_crontab(cron, timezone=tz)
        except ValueError as exc:
            problems.append(ConfigProblem(f"{key}.cron", f"not a valid crontab expression ({exc})", 'e.g. cron = "0 2 * * *"'))
    if len(problems) > before or trigger is None:
        return None
    return Schedule(name, (base / cfg).resolve(), cron, mode, grace, trigger)


def load_schedules(path: str | Path) -> list[Schedule]:
    """Every schedule in the file, or ConfigError listing every problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(ConfigProblem(str(p), "file not found", "pass --file PATH")) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(ConfigProblem(str(p), f"not valid TOML: {exc}", "fix the syntax")) from None
    problems: list[ConfigProblem] = []
    try:
        tz = ZoneInfo(str(data.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(ConfigProblem("timezone", f"unknown time zone {data.get('timezone')!r}", 'timezone = "UTC"'))
        tz = ZoneInfo("UTC")
    items = data.get("schedule", [])
    schedules = [_one(i, item, p.resolve().parent, tz, problems) for i, item in enumerate(items)]
    names = [s.name for s in schedules if s]
    problems += [ConfigProblem("schedule", f"name {n!r} is used twice", "give each schedule its own name")
                 for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise ConfigError(problems, source=str(p))
    return [s for s in schedules if s]
