"""`schedules.toml`: named jobs, when each runs, what it runs, and whom it tells.

    timezone = "UTC"                       # default for every job
    [[job]]
    name = "prod-hourly"                   # unique; the run lock and the runs table carry it
    config = "jobs/prod.toml"              # relative to this file
    cron = "15 * * * *"                    # crontab (5 fields) or @hourly/@daily/@weekly/...
    # interval = "15m"                     # or every N s/m/h/d (exactly one of cron, interval)
    timezone = "Europe/Berlin"             # optional, overrides the file's
    mode = "apply"                         # "apply", or "report" (plan only, nothing sent)
    scope = "incremental"                  # "full", "incremental" or "sliced" (with slices = K)
    allow = ["extract_shrink"]             # guard overrides, as `run --allow`
    guards = { max_deletions = 500 }       # guard thresholds replacing the job config's
    misfire_grace_time = 900               # seconds a missed fire may still start late
    notify = [{ kind = "slack", url_env = "SLACK_WEBHOOK_URL" }]

Every problem is collected and reported at once (`ConfigError`, each naming the job and the
key with a fix). Interval fires are anchored at 2000-01-01 00:00 in the job's time zone, so
every scheduler replica computes the same fire times.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconcile.config.model import GuardConfig
from reconcile.config.notify import KINDS as NOTIFY_KINDS, NotifyTarget
from reconcile.errors import ConfigError, ConfigProblem, ExitCode

SCHEDULES_ENV = "RECONCILE_SCHEDULES"
DEFAULT_FILE = "schedules.toml"
MODES = ("apply", "report")
SCOPES = ("full", "incremental", "sliced")
GUARD_NAMES = tuple(ExitCode.GUARDS)
DEFAULT_GRACE = 600
ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
INTERVAL_ANCHOR = (2000, 1, 1)
TOP_KEYS = {"timezone", "job"}
JOB_KEYS = {"name", "config", "cron", "interval", "timezone", "mode", "scope", "slices", "allow", "guards",
            "misfire_grace_time", "notify"}
RENAMED = {"misfire_grace_seconds": "misfire_grace_time"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Job:
    name: str
    config: Path
    when: str  # the cron expression or interval as written
    timezone: str
    mode: str
    scope: str
    slices: int | None
    allow: tuple[str, ...]
    guards: tuple[tuple[str, float], ...]
    misfire_grace_time: int
    notify: tuple[NotifyTarget, ...]  # the job's own targets, added to its config's
    trigger: BaseTrigger

    @property
    def run_mode(self) -> str:
        """The pipeline's mode: a sliced sweep is a full run over one slice."""
        return "incremental" if self.scope == "incremental" else "full"

    @property
    def dry_run(self) -> bool:
        return self.mode == "report"

    def describe(self) -> str:
        scope = f"sliced sweep in {self.slices} slices" if self.scope == "sliced" else self.scope
        what = "report (plan only)" if self.dry_run else "apply"
        return f"{what}, {scope}, on '{self.when}' {self.timezone}"

    def job_config(self, cfg: Any) -> Any:
        """The job config with this schedule's slices and guard thresholds applied."""
        if self.scope == "sliced":
            cfg = replace(cfg, universe=replace(cfg.universe, slices=self.slices))
        if self.guards:
            cfg = replace(cfg, guards=replace(cfg.guards, **dict(self.guards)))
        return cfg

    def next_runs(self, after: datetime, count: int = 3) -> list[datetime]:
        """The next `count` fire times from `after` on (computed, no sleeping, no scheduler)."""
        out: list[datetime] = []
        prev, now = None, after
        while len(out) < count:
            fire = self.trigger.get_next_fire_time(prev, now)
            if fire is None:
                break
            out.append(local(fire, fire.tzinfo))
            prev, now = fire, fire
        return out


def schedules_path(explicit: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """--schedules PATH, else $RECONCILE_SCHEDULES, else ./schedules.toml."""
    env = os.environ if environ is None else environ
    raw = explicit or env.get(SCHEDULES_ENV)
    if raw:
        return Path(raw)
    here = Path.cwd() / DEFAULT_FILE
    if here.exists():
        return here
    raise ConfigError(ConfigProblem("--schedules", f"no schedules file given and none at {here}",
                                    f"pass --schedules PATH or set {SCHEDULES_ENV}=/path/to/schedules.toml"))


class CrontabTrigger(CronTrigger):
    """A cron trigger that, like cron, fires a fixed-hour job once when clocks go back.

    When daylight saving time ends, a wall-clock time such as 02:30 happens twice;
    APScheduler 3 fires at both. A job whose hour field is not `*` skips the second one
    (its wall-clock time equals the previous fire's); an every-hour job fires each real hour.
    A wall-clock time that does not exist (clocks going forward) fires at the same instant
    one hour later in local time, once.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire = super().get_next_fire_time(previous_fire_time, now)
        if fire is None:
            return None
        fire = local(fire, self.timezone)
        if previous_fire_time is not None and str(self.fields[5]) != "*":
            prev = local(previous_fire_time, self.timezone)
            if fire.replace(tzinfo=None, fold=0) == prev.replace(tzinfo=None, fold=0) \
                    and fire.timestamp() != prev.timestamp():
                return self.get_next_fire_time(fire, fire)
        return fire


def local(moment: datetime, tz: Any) -> datetime:
    """`moment` as a normalized wall-clock time in `tz` (right offset and fold)."""
    return moment.astimezone(dt_timezone.utc).astimezone(tz)


class _Job:
    """Reads one [[job]] table, adding problems under `job[i] (name)`."""

    def __init__(self, i: int, item: Any, base: Path, tz: str, problems: list[ConfigProblem]):
        self.item = item if isinstance(item, dict) else {}
        name = self.item.get("name")
        self.prefix = f"job[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
        self.base, self.file_tz, self.problems = base, tz, problems
        if not isinstance(item, dict):
            self.fail("", "must be a table", 'write it as [[job]] with name = "..."')

    def fail(self, key: str, problem: str, fix: str) -> None:
        self.problems.append(ConfigProblem(f"{self.prefix}.{key}" if key else self.prefix, problem, fix))

    def text(self, key: str, example: str, required: bool = True) -> str | None:
        value = self.item.get(key)
        if value is None:
            if required:
                self.fail(key, "is required", f"{key} = {example}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {value!r}", f"{key} = {example}")
            return None
        return value.strip()

    def read(self) -> Job | None:
        before = len(self.problems)
        for key in sorted(set(self.item) - JOB_KEYS):
            if key in RENAMED:
                self.fail(key, "is not a key", f"rename it to {RENAMED[key]}")
            else:
                self.fail(key, "unknown key", f"remove it; job keys are {', '.join(sorted(JOB_KEYS))}")
        name = self.text("name", '"prod-hourly"')
        if name and not JOB_NAME.match(name):
            self.fail("name", f"{name!r} is not a job name", "use letters, digits, '.', '_' or '-' (at most 64)")
        config = self._config()
        tz = self._timezone()
        mode = self._choice("mode", MODES, "apply")
        scope = self._choice("scope", SCOPES, "full")
        slices = self._slices(scope)
        allow = self._allow()
        guards = self._guards()
        grace = self._grace()
        notify = self._notify()
        trigger, when = self._trigger(tz)
        if len(self.problems) > before or trigger is None:
            return None
        return Job(name, config, when, str(tz), mode, scope, slices, allow, guards, grace, notify, trigger)  # type: ignore[arg-type]

    def _config(self) -> Path | None:
        cfg = self.text("config", '"jobs/production.toml"')
        if cfg is None:
            return None
        path = (self.base / cfg).resolve()
        if not path.is_file():
            self.fail("config", f"file not found: {path}", "fix the path (relative to the schedules file)")
        return path

    def _timezone(self) -> ZoneInfo | None:
        raw = self.item.get("timezone", self.file_tz)
        try:
            return ZoneInfo(str(raw))
        except (ZoneInfoNotFoundError, ValueError):
            if "timezone" in self.item:
                self.fail("timezone", f"unknown time zone {raw!r}", 'an IANA name, e.g. timezone = "Europe/Berlin"')
            return None

    def _choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.item.get(key, default)
        if value not in choices:
            hint = ""
            if key == "mode" and value in ("full", "incremental"):
                hint = f'; the sweep is now scope = "{value}"'
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}{hint}", f'{key} = "{default}"')
        return value

    def _slices(self, scope: str) -> int | None:
        value = self.item.get("slices")
        if scope != "sliced":
            if value is not None:
                self.fail("slices", 'only applies with scope = "sliced"', 'remove it, or set scope = "sliced"')
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 10000:
            self.fail("slices", f"must be an integer from 2 to 10000 with scope = \"sliced\", got {value!r}",
                      "slices = 8")
            return None
        return value

    def _allow(self) -> tuple[str, ...]:
        value = self.item.get("allow", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail("allow", f"must be a list of guard names, got {value!r}", 'allow = ["extract_shrink"]')
            return ()
        for v in value:
            if v not in GUARD_NAMES:
                self.fail("allow", f"unknown guard {v!r}", f"use one of {', '.join(GUARD_NAMES)}")
        return tuple(dict.fromkeys(value))

    def _guards(self) -> tuple[tuple[str, float], ...]:
        value = self.item.get("guards", {})
        if not isinstance(value, dict):
            self.fail("guards", f"must be a table, got {value!r}", "guards = { max_deletions = 500 }")
            return ()
        known = {f.name: f.type for f in fields(GuardConfig)}
        out = []
        for key, v in value.items():
            if key not in known:
                self.fail(f"guards.{key}", "unknown guard threshold", f"use one of {', '.join(known)}")
                continue
            integer = key in ("max_deletions", "min_universe")
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                  and (not integer or isinstance(v, int)))
            if ok and not integer and v > 1:
                ok = False
            if not ok:
                fix = f"guards.{key} = 500" if integer else f"guards.{key} = 0.05"
                kind = "a non-negative integer" if integer else "a fraction from 0 to 1"
                self.fail(f"guards.{key}", f"must be {kind}, got {v!r}", fix)
                continue
            out.append((key, v))
        return tuple(sorted(out))

    def _grace(self) -> int:
        value = self.item.get("misfire_grace_time", DEFAULT_GRACE)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail("misfire_grace_time", f"must be a positive number of seconds, got {value!r}",
                      "misfire_grace_time = 900")
            return DEFAULT_GRACE
        return value

    def _notify(self) -> tuple[NotifyTarget, ...]:
        value = self.item.get("notify", [])
        example = 'notify = [{ kind = "webhook", url_env = "RECONCILE_WEBHOOK_URL" }]'
        if not isinstance(value, list):
            self.fail("notify", f"must be a list of targets, got {value!r}", example)
            return ()
        out = []
        for j, target in enumerate(value):
            key = f"notify[{j}]"
            if not isinstance(target, dict):
                self.fail(key, f"must be a table, got {target!r}", example)
                continue
            for extra in sorted(set(target) - {"kind", "url_env"}):
                self.fail(f"{key}.{extra}", "unknown key", "a target has only kind and url_env")
            kind, env = target.get("kind"), target.get("url_env")
            if kind not in NOTIFY_KINDS:
                self.fail(f"{key}.kind", f"must be webhook or slack, got {kind!r}", 'kind = "webhook"')
            if not isinstance(env, str) or not ENV_NAME.match(env):
                self.fail(f"{key}.url_env", f"must name an environment variable holding the URL, got {env!r}",
                          'url_env = "RECONCILE_WEBHOOK_URL" (the URL itself never goes in the file)')
            if kind in NOTIFY_KINDS and isinstance(env, str) and ENV_NAME.match(env):
                out.append(NotifyTarget(kind, env))
        return tuple(out)

    def _trigger(self, tz: ZoneInfo | None) -> tuple[BaseTrigger | None, str]:
        cron, interval = self.item.get("cron"), self.item.get("interval")
        if cron is None and interval is None:
            self.fail("cron", "a job needs cron or interval", 'cron = "15 * * * *" or interval = "15m"')
            return None, ""
        if cron is not None and interval is not None:
            self.fail("interval", "give cron or interval, not both", "remove one of them")
            return None, ""
        if tz is None:
            return None, ""
        if cron is not None:
            return self._cron(cron, tz), str(cron)
        return self._interval(interval, tz), str(interval)

    def _cron(self, cron: Any, tz: ZoneInfo) -> BaseTrigger | None:
        if not isinstance(cron, str) or not cron.strip():
            self.fail("cron", f"must be a crontab string, got {cron!r}", 'cron = "15 * * * *"')
            return None
        expr = cron.strip()
        if expr.startswith("@"):
            if expr.lower() not in ALIASES:
                self.fail("cron", f"{expr!r} is not supported",
                          f"use a 5-field expression or one of {', '.join(ALIASES)} (@reboot has no meaning here)")
                return None
            expr = ALIASES[expr.lower()]
        fields_ = expr.split()
        if len(fields_) == 5 and fields_[2] != "*" and fields_[4] != "*":
            self.fail("cron", f"{cron!r} sets both day-of-month and day-of-week: crontab fires when either "
                      "matches, this scheduler only when both do", "split it into two jobs, one per field")
            return None
        try:
            if len(fields_) == 5:
                fields_[4] = crontab_weekdays(fields_[4])
            return CrontabTrigger.from_crontab(" ".join(fields_), timezone=tz)
        except ValueError as exc:
            self.fail("cron", f"{cron!r} is not a valid crontab expression ({exc})",
                      'five fields: minute hour day month day-of-week, e.g. cron = "0 2 * * *"')
            return None

    def _interval(self, interval: Any, tz: ZoneInfo) -> BaseTrigger | None:
        seconds = parse_interval(interval)
        if seconds is None:
            self.fail("interval", f"must be a duration like \"30s\", \"15m\", \"2h\" or \"1d\", got {interval!r}",
                      'interval = "15m"')
            return None
        return IntervalTrigger(seconds=seconds, start_date=datetime(*INTERVAL_ANCHOR, tzinfo=tz), timezone=tz)


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) in APScheduler 3's terms (names, Monday first).

    APScheduler 3 numbers weekdays from Monday = 0, so "1-5" would mean Tuesday to Saturday;
    the field is expanded to day names, which both read the same way.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s.isdigit() and int(step_s) > 0 else None
        if step_s and step is None:
            raise ValueError(f"bad step in day-of-week {part!r}")
        if rng == "*":
            lo, hi = 0, 6
        else:
            a, _, b = rng.partition("-")
            lo = _weekday(a)
            hi = _weekday(b) if b else (6 if step else lo)
            if b and hi == 0 and lo > 0:
                hi = 7
            if hi < lo:
                raise ValueError(f"day-of-week range {rng!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step or 1))
    return ",".join(WEEKDAYS[d] for d in sorted(days, key=lambda d: (d + 6) % 7))


def _weekday(token: str) -> int:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in WEEKDAYS and len(token) == 3:
        return WEEKDAYS.index(token)
    raise ValueError(f"unknown day of week {token!r}")


def parse_interval(value: Any) -> int | None:
    """"15m" -> 900; a positive integer is seconds; anything else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)
    if not m or int(m.group(1)) <= 0:
        return None
    return int(m.group(1)) * INTERVAL_UNITS[m.group(2)]


def parse_schedules(data: Mapping[str, Any], base: Path, source: str = "schedules") -> list[Job]:
    problems: list[ConfigProblem] = []
    for key in sorted(set(data) - TOP_KEYS):
        fix = "write jobs as [[job]] tables" if key == "schedule" else "remove it; the file has timezone and [[job]]"
        problems.append(ConfigProblem(key, "unknown key", fix))
    tz = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(ConfigProblem("timezone", f"unknown time zone {tz!r}", 'timezone = "UTC"'))
    items = data.get("job", [])
    if not isinstance(items, list):
        problems.append(ConfigProblem("job", "must be an array of tables", "write each job as [[job]]"))
        items = []
    jobs = [_Job(i, item, base, str(tz), problems).read() for i, item in enumerate(items)]
    names = [str(item.get("name")) for item in items if isinstance(item, dict) and item.get("name")]
    for name in sorted({n for n in names if names.count(n) > 1}):
        where = ", ".join(f"job[{i}]" for i, item in enumerate(items)
                          if isinstance(item, dict) and str(item.get("name")) == name)
        problems.append(ConfigProblem(f"job ({name})", f"the name is used by {where}", "give each job its own name"))
    if problems:
        raise ConfigError(problems, source=source)
    return [j for j in jobs if j is not None]


def load_schedules(path: str | os.PathLike) -> list[Job]:
    """Every job in the file, or ConfigError listing every problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(ConfigProblem(str(p), "file not found",
                                        f"pass --schedules PATH or set {SCHEDULES_ENV}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(ConfigProblem(str(p), f"not valid TOML: {exc}", "fix the syntax at the line shown")) from None
    return parse_schedules(data, p.resolve().parent, source=str(p))


def find_job(jobs: list[Job], name: str, source: str = "schedules") -> Job:
    for job in jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in jobs) or "none"
    raise ConfigError(ConfigProblem("--job", f"no job named {name!r} in {source}", f"use one of: {known}"))
