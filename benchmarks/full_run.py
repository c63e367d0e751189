"""Benchmark: a full reconciliation as the job runs it, the simulators in their own process.

Run: python benchmarks/full_run.py [--sizes 10000 100000] [--keys email external_id]
                                   [--limits lifted|documented] [--out FILE.json]

Per size and key type, a fresh folder:

1. one server process (`full_run.py serve`) seeds a BrazeSim and a KetchSim with
   `seed_population` (3 % drift, seed 1; email keys with Ketch space email, external_id
   keys with Ketch space account_id) from jobs/sandbox.toml's mapping, writes the universe
   files and serves both simulators over 127.0.0.1 (uvicorn), each on its own port;
2. the job runs as `python -m reconcile --config job.toml run` in its own process
   ([sandbox] disabled: it reaches the simulators over loopback HTTP, with the aiohttp Ketch
   client and the Braze client of a real run), SQLite state. Its wall time, CPU time and
   peak RSS (`os.wait4` on that one child) are the job's own;
3. requests are counted twice: by the job (`runs.summary.api_usage`: Braze per rate class,
   Ketch tries) and by the server (per path and status).

`--limits lifted`: the client's and the simulator's limits are lifted (Ketch unpaced), so
the wall time is the job's own work. `--limits documented`: the client runs with its
defaults (Braze's documented limits, `budget_share` 0.5 of the shared class; Ketch AIMD
starting at 200/s up to 500/s) and the simulator enforces Braze's documented limits.

Two bounds at documented limits, computed from the counted requests:
* rate bound: max over classes of requests ÷ the steady rate the job may use in that class
  (documented limit, × budget_share for the shared class; Ketch at
  ketch.max_requests_per_second);
* window bound: max over classes of (windows needed - 1) × window (Braze counts fixed
  windows aligned to the clock, so requests that fit in one window need not wait; Ketch
  as above). "serial" sums the classes instead of taking the max: the job reads Ketch,
  then Braze (observe.read_state), so its classes do not overlap.
With limits enforced, wall ÷ bound is measured; with limits lifted, the bounds are what a
run at documented limits would add to the job's own time at best.

`os.getloadavg()` is recorded per row (other work may share the 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JOB = HERE.parent / "jobs" / "sandbox.toml"
KEY = "sandbox-rest-key"
LIFTED = 10**9
KETCH_MAX_RPS = 500.0  # KetchConfig.max_requests_per_second default


# -- the job's config --------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_dumps(data: dict[str, Any]) -> str:
    """Enough TOML for a job config: top-level tables, arrays of tables one level down."""
    out: list[str] = []
    for table, body in data.items():
        scalars = {k: v for k, v in body.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))}
        arrays = {k: v for k, v in body.items() if k not in scalars}
        out.append(f"[{table}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
        for k, items in arrays.items():
            for item in items:
                out.append(f"[[{table}.{k}]]")
                out += [f"{ik} = {_toml_value(iv)}" for ik, iv in item.items()]
        out.append("")
    return "\n".join(out)


def job_data(folder: Path, keys: str, limits: str, braze_url: str = "http://127.0.0.1:1",
             ketch_url: str = "http://127.0.0.1:1", ledger: bool = False) -> dict[str, Any]:
    """jobs/sandbox.toml's mapping and policy, pointed at the served simulators."""
    from reconcile.config import DEFAULT_RATE_LIMITS

    data = tomllib.loads(JOB.read_text())
    data["sandbox"] = {"enabled": False, "state_file": str(folder / "sandbox.json")}
    data["braze"] = {"rest_endpoint": braze_url, "api_key_env": "BRAZE_API_KEY"}
    data["ketch"].update(base_url=f"{ketch_url}/web/v3")
    if limits == "lifted":
        data["braze"]["rate_limits"] = {n: {"requests": LIFTED, "per_seconds": 1} for n in DEFAULT_RATE_LIMITS}
        data["ketch"]["requests_per_second"] = 0
    else:
        data["ketch"].pop("requests_per_second", None)  # the defaults: 20/s, rising on success to 500/s
    data["identity"].update(ketch_space="email" if keys == "email" else "account_id", braze_key=keys)
    data["universe"].update(csv=str(folder / "universe.csv"), deletions_csv=str(folder / "deletions.csv"))
    data["state"] = {"url": f"sqlite:///{folder / 'state.db'}"}
    data["report"] = {"dir": str(folder / "reports")}
    data["guards"].update(max_unsubscribe_fraction=1.0, max_deletions=10**7, max_deletion_fraction=1.0)
    if ledger:
        data["ledger"] = {"enabled": True, "bearer_token_env": "KETCH_WEBHOOK_TOKEN"}
    return data


# -- the server process ------------------------------------------------------------------
def serve_main(args: argparse.Namespace) -> None:
    """Seed both simulators, serve them on loopback, count requests; stop on SIGTERM."""
    from reconcile.config import DEFAULT_RATE_LIMITS, parse_config
    from reconcile.pipeline.session import utc_now
    from reconcile.sandbox.braze import BrazeSim
    from reconcile.sandbox.core import SimResponse
    from reconcile.sandbox.ketch import KetchSim
    from reconcile.sandbox.population import seed_population
    from reconcile.sandbox.server import serve

    folder = Path(args.folder)
    for name in ("universe.csv", "deletions.csv"):  # written by the seeding; the config wants them to exist
        (folder / name).touch()
    cfg = parse_config(job_data(folder, args.keys, args.limits), folder)
    braze, ketch = BrazeSim(api_key=KEY), KetchSim(organization=cfg.ketch.organization)
    started = time.perf_counter()
    truth = seed_population(cfg, braze, ketch, subjects=args.subjects, drift=args.drift, seed=1, now=utc_now())
    seed_seconds = time.perf_counter() - started
    if args.limits == "lifted":
        for name in DEFAULT_RATE_LIMITS:
            braze.limiter.set_limit(name, LIFTED, 1.0)
    counts: dict[str, Counter] = {"braze": Counter(), "ketch": Counter()}

    def counted(sim: Any, name: str) -> None:
        handle = sim.handle

        def wrapped(req: Any) -> Any:
            if req.path == "/_bench/counts":
                answer = SimResponse(200, {f"{k[0]} {k[1]} {k[2]}": v for k, v in counts[name].items()})
                if req.method == "DELETE":
                    counts[name].clear()
                return answer
            if req.path == "/_bench/set_consent":  # ketch only: {"space", "values", "purposes", "at"}
                body = json.loads(req.body)
                for value in body["values"]:
                    sim.set_consent(body["space"], value, body["purposes"], body["at"])
                return SimResponse(204)
            resp = handle(req)
            with sim.lock:
                sim.calls.clear()  # the call log is not kept (memory at 1M); counted here instead
            path = req.path
            if name == "ketch":
                path = "/".join(p for p in path.split("/")[3:] if p != cfg.ketch.organization)
            counts[name][(req.method, path, resp.status)] += 1
            return resp

        sim.handle = wrapped

    counted(braze, "braze")
    counted(ketch, "ketch")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(braze) as b, serve(ketch) as k:
        Path(args.ready).write_text(json.dumps({"braze": b.url, "ketch": k.url, "seed_seconds": seed_seconds,
                                                "injected": truth.counts(), "pid": os.getpid()}))
        stop.wait()
    usage = os.times()
    Path(args.ready).with_suffix(".exit.json").write_text(json.dumps({"cpu_seconds": usage.user + usage.system}))


class Servers:
    """The server process of one scenario."""

    def __init__(self, folder: Path, subjects: int, keys: str, limits: str, drift: float = 0.03):
        self.folder = folder
        self.ready = folder / "servers.json"
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", "--folder", str(folder),
                                      "--subjects", str(subjects), "--keys", keys, "--limits", limits,
                                      "--drift", str(drift), "--ready", str(self.ready)])
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server process exited with {self.proc.returncode}")
            time.sleep(0.5)
        time.sleep(0.1)
        self.info = json.loads(self.ready.read_text())
        self.braze_url, self.ketch_url = self.info["braze"], self.info["ketch"]

    def counts(self, sim: str, reset: bool = False) -> dict[str, int]:
        url = (self.braze_url if sim == "braze" else self.ketch_url) + "/_bench/counts"
        req = urllib.request.Request(url, method="DELETE" if reset else "GET")
        with urllib.request.urlopen(req) as answer:
            return json.loads(answer.read())

    def set_consent(self, space: str, values: list[str], purposes: dict[str, bool], at: int) -> None:
        body = json.dumps({"space": space, "values": values, "purposes": purposes, "at": at}).encode()
        req = urllib.request.Request(self.ketch_url + "/_bench/set_consent", data=body, method="POST")
        urllib.request.urlopen(req).close()

    def stop(self) -> float:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        exit_file = self.ready.with_suffix(".exit.json")
        return json.loads(exit_file.read_text())["cpu_seconds"] if exit_file.exists() else float("nan")


# -- one job run ---------------------------------------------------------------------------
def write_job(folder: Path, servers: Servers, keys: str, limits: str, ledger: bool = False,
              name: str = "job.toml") -> Path:
    path = folder / name
    path.write_text(toml_dumps(job_data(folder, keys, limits, servers.braze_url, servers.ketch_url, ledger)))
    return path


def run_job(job: Path, mode: str = "full", env: dict[str, str] | None = None,
            profile: Path | None = None) -> dict[str, Any]:
    """`reconcile run` in its own process: exit code, wall, CPU, peak RSS, its JSON answer."""
    cmd = [sys.executable]
    if profile is not None:
        runner = profile.with_suffix(".runner.py")
        runner.write_text("from reconcile.cli.main import cli\n\ncli()\n")
        cmd += ["-m", "cProfile", "-o", str(profile), str(runner)]
    else:
        cmd += ["-m", "reconcile"]
    cmd += ["--config", str(job), "run", "--mode", mode, "--format", "json",
            "--metrics-file", str(job.parent / "metrics.textfile")]
    environ = {**os.environ, "BRAZE_API_KEY": KEY, **(env or {})}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=job.parent)
    out: list[bytes] = []
    err: list[bytes] = []
    stamped: list[tuple[float, str]] = []  # stderr lines with their arrival time (stage timings)

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stamped.append((time.perf_counter() - started, line.decode(errors="replace").rstrip()))
        err.append(b"\n".join(f"{t:9.3f} {text}".encode() for t, text in stamped))

    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
               threading.Thread(target=read_err)]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    (job.parent / f"{job.stem}-{mode}.stderr").write_bytes(err[0])
    try:
        answer = json.loads(out[0] or b"{}")
    except json.JSONDecodeError:
        answer = {"stdout": out[0].decode(errors="replace")[-2000:]}
    return {"exit": proc.returncode, "wall": wall, "stages": stage_seconds(stamped, wall), "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024, "load1": load, "answer": answer,
            "stderr": err[0].decode(errors="replace")[-3000:]}


def stage_seconds(stamped: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds from each progress stage's first line to the next stage's (\"start\": before the first)."""
    marks: list[tuple[str, float]] = [("start", 0.0)]
    for t, text in stamped:
        if text.startswith("progress:") and "; stage " in text:
            stage = text.split("; stage ", 1)[1].split(";", 1)[0]
            if stage != marks[-1][0]:
                marks.append((stage, t))
    out: dict[str, float] = {}
    for (stage, t), (_, t_next) in zip(marks, marks[1:] + [("end", wall)]):
        out[stage] = out.get(stage, 0.0) + t_next - t
    return out


def run_summary(folder: Path, run_id: str | None = None) -> dict[str, Any]:
    with sqlite3.connect(folder / "state.db") as db:
        q = "SELECT run_id, status, universe_count, summary FROM runs"
        row = db.execute(q + (" WHERE run_id = ?" if run_id else " ORDER BY started_at DESC LIMIT 1"),
                         (run_id,) if run_id else ()).fetchone()
    summary = json.loads(row[3]) if isinstance(row[3], str) else (row[3] or {})
    return {"run_id": row[0], "status": row[1], "universe": row[2], "summary": summary}


# -- the rate-limit bound ------------------------------------------------------------------
def documented_rates(budget_share: float = 0.5) -> dict[str, float]:
    """Requests per second the job may send in each class at Braze's documented limits."""
    from reconcile.config import DEFAULT_RATE_LIMITS

    rates = {n: lim.requests / lim.per_seconds for n, lim in DEFAULT_RATE_LIMITS.items()}
    rates["shared"] *= budget_share
    rates["ketch"] = KETCH_MAX_RPS
    return rates


def class_requests(usage: dict[str, Any]) -> dict[str, int]:
    """Requests per Braze rate class and to Ketch, from runs.summary.api_usage."""
    out: dict[str, int] = {}
    for name, c in (usage.get("braze", {}).get("classes") or {}).items():
        out[name] = int(c.get("requests", 0))
    ketch = usage.get("ketch") or {}
    out["ketch"] = int(ketch.get("tries", ketch.get("requests", 0)))
    return out


def window_seconds(requests: dict[str, int], budget_share: float = 0.5) -> dict[str, float]:
    """What each class's fixed windows force at documented limits: (windows needed - 1) x
    window, as Braze counts (windows aligned to the clock; the shared class's is the hour, of
    which the job takes budget_share). A class whose requests fit in one window costs no wait.
    Ketch (a paced rate, not windows): requests / ketch.max_requests_per_second."""
    from reconcile.config import DEFAULT_RATE_LIMITS

    out: dict[str, float] = {}
    for name, n in requests.items():
        if not n:
            continue
        if name == "ketch":
            out[name] = n / KETCH_MAX_RPS
            continue
        lim = DEFAULT_RATE_LIMITS[name]
        cap = max(1, math.floor(lim.requests * (budget_share if name == "shared" else 1.0) + 1e-9))
        out[name] = (math.ceil(n / cap) - 1) * lim.per_seconds
    return out


def bound(requests: dict[str, int], rates: dict[str, float]) -> tuple[float, str, dict[str, float]]:
    per = {k: v / rates[k] for k, v in requests.items() if v and k in rates}
    worst = max(per, key=per.get) if per else "-"
    return (per[worst] if per else 0.0), worst, per


# -- a scenario ----------------------------------------------------------------------------
def full_scenario(root: Path, n: int, keys: str, limits: str) -> dict[str, Any]:
    folder = root / f"{keys}-{n}-{limits}"
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    servers = Servers(folder, n, keys, limits)
    setup = time.perf_counter() - t0
    try:
        job = write_job(folder, servers, keys, limits)
        res = run_job(job)
        run = run_summary(folder)
        braze_served, ketch_served = servers.counts("braze"), servers.counts("ketch")
    finally:
        server_cpu = servers.stop()
    usage = run["summary"].get("api_usage", {})
    reqs = class_requests(usage)
    b, worst, per = bound(reqs, documented_rates())
    row = {"subjects": n, "keys": keys, "limits": limits, "exit": res["exit"], "status": run["status"],
           "universe": run["universe"], "wall": res["wall"], "cpu": res["cpu"], "rss_mib": res["rss_mib"],
           "load1": res["load1"], "load1_after": os.getloadavg()[0], "seed_and_serve_s": setup,
           "server_cpu": server_cpu, "requests": reqs, "bound_s": b, "binding": worst, "per_class_s": per, "serial_bound_s": sum(per.values()),
           "window_s": (win := window_seconds(reqs)), "window_bound_s": max(win.values(), default=0.0),
           "serial_window_bound_s": sum(win.values()),
           "braze_served": sum(braze_served.values()), "ketch_served": sum(ketch_served.values()),
           "braze_by_path": braze_served, "ketch_by_path": ketch_served,
           "stages": res["stages"], "api_usage": usage, "counts": (res["answer"] or {}).get("counts")}
    if res["exit"] not in (0, 2):
        row["stderr"] = res["stderr"]
    return row


def print_row(r: dict[str, Any]) -> None:
    n = r["subjects"]
    print(f"n={n:>8} keys={r['keys']:<11} limits={r['limits']:<10} exit={r['exit']} {r['status']} "
          f"universe={r['universe']} wall={r['wall']:.1f}s ({r['wall'] / n * 1e6:.0f} us/subject) "
          f"cpu={r['cpu']:.1f}s rss={r['rss_mib']:.0f}MiB braze={r['braze_served']} ketch={r['ketch_served']} "
          f"bound@documented={r['bound_s']:.1f}s ({r['binding']}; serial {r['serial_bound_s']:.1f}s) "
          f"wall/bound={r['wall'] / r['bound_s']:.3f} window bound={r['window_bound_s']:.1f}s "
          f"(serial {r['serial_window_bound_s']:.1f}s) "
          f"server cpu={r['server_cpu']:.1f}s load={r['load1']:.2f}->{r['load1_after']:.2f} "
          f"requests={r['requests']}", flush=True)
    print("    stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items()), flush=True)
    if "stderr" in r:
        print(r["stderr"], file=sys.stderr)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--folder", required=True)
    s.add_argument("--subjects", type=int, required=True)
    s.add_argument("--keys", default="email")
    s.add_argument("--limits", default="lifted")
    s.add_argument("--drift", type=float, default=0.03)
    s.add_argument("--ready", required=True)
    p.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    p.add_argument("--keys", nargs="*", default=["email", "external_id"])
    p.add_argument("--limits", default="lifted", choices=["lifted", "documented"])
    p.add_argument("--out", type=Path)
    p.add_argument("--root", type=Path, help="keep the folders here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve_main(args)
        return
    import shutil
    import tempfile

    root = args.root or Path(tempfile.mkdtemp(prefix="full-run-"))
    print(f"python {platform.python_version()} nproc {os.cpu_count()} "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')} root {root}", flush=True)
    rows = []
    try:
        for n in args.sizes:
            for keys in args.keys:
                row = full_scenario(root, n, keys, args.limits)
                print_row(row)
                rows.append(row)
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=1, default=str))
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
