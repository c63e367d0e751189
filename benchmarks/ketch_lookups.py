"""Benchmark: Ketch lookups (consent/get + subscriptions/get) over loopback HTTP.

Seeds a KetchSim with N identities (a third with consent, a fifth with subscriptions,
the rest unknown -> 204), serves it on 127.0.0.1 and times `KetchClient.fetch_many`
for each N and concurrency. Prints lookups/s, requests/s, p50/p99 lookup latency, peak
RSS and the load average. Talks to 127.0.0.1 only; request counts are bounded (2 x N
per run) and it stops by itself.

Run:
    python benchmarks/ketch_lookups.py                      # N=5000,20000 x c=16,64,128, aiohttp and httpx
    python benchmarks/ketch_lookups.py --server process     # the sim in its own process (own GIL)
    python benchmarks/ketch_lookups.py --sizes 5000 --concurrency 64 --client aiohttp --http h11

`--server thread` (default) runs uvicorn in a thread of this process, as `serve()` does
in the tests: client and server then share one interpreter lock. `--server process` runs
the same `serve()` in a child process (as `reconcile sandbox serve` and a job do).
`--http/--loop` pick uvicorn's parser and loop (default "auto": httptools; uvloop if installed),
`--client` the KetchClient backends to run side by side against the same server (default
aiohttp and httpx).

Columns: lookups/s and req/s (wall clock); p50/p99 of one lookup's latency; cpu = this
process's CPU seconds per wall second; us/req = this process's CPU per request (client
only with --server process, client + server with --server thread); srv us/req = the
server process's CPU per request; load1 = 1-minute load average after the run. Each run
first warms the connections with 2 x concurrency lookups, and checks every answer.
Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

from reconcile.clients.ketch import KetchClient
from reconcile.config import KetchConfig
from reconcile.sandbox.ketch import KetchSim

T0 = 1_700_000_000


def seeded_sim(n: int) -> KetchSim:
    """u{i}@example.com: consent when i % 3 == 0, subscriptions when i % 5 == 0, else unknown."""
    sim = KetchSim(organization="acme")
    for i in range(0, n, 3):
        sim.set_consent("email", f"u{i}@example.com", {"email_mktg": i % 2 == 0, "analytics": True}, T0 + i,
                        legal_basis={"email_mktg": "consent_optin"})
    for i in range(0, n, 5):
        sim.set_subscriptions("email", f"u{i}@example.com",
                              {"news": {"email": "granted" if i % 2 else "denied", "sms": "denied"}},
                              {"global_unsubscribe": "denied"}, T0 + i)
    return sim


def _serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.http:
        kw["http"] = args.http
    if args.loop:
        kw["loop"] = args.loop
    return kw


def _serve(sim: KetchSim, args: argparse.Namespace):
    from reconcile.sandbox.server import serve
    return serve(sim, "127.0.0.1", **_serve_kwargs(args))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(n: int, args: argparse.Namespace, conn: Any) -> None:
    """Server process: serve a seeded sim until told to stop; answer call-count queries."""
    sim = seeded_sim(n)
    with _serve(sim, args) as server:
        conn.send(server.url)
        while True:
            msg = conn.recv()
            if msg == "stop":
                break
            if msg == "calls":
                with sim.lock:
                    conn.send((len(sim.calls), _cpu_seconds()))
                    sim.calls.clear()
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class _Server:
    def __init__(self, n: int, args: argparse.Namespace):
        self.mode = args.server
        if self.mode == "thread":
            self.sim = seeded_sim(n)
            self.running = _serve(self.sim, args)
            self.url = self.running.url
        else:
            ctx = mp.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_child, args=(n, args, child), daemon=True)
            self.proc.start()
            self.url = self.conn.recv()

    def take_calls(self) -> tuple[int, float | None]:
        """Requests the sim logged since the last call (then clears its log), and the server
        process's CPU seconds so far (None for a thread: it shares this process's)."""
        if self.mode == "thread":
            with self.sim.lock:
                count = len(self.sim.calls)
                self.sim.calls.clear()
            return count, None
        self.conn.send("calls")
        return self.conn.recv()

    def stop(self) -> int | None:
        """Stop; the server process's peak RSS in KiB (None for a thread)."""
        if self.mode == "thread":
            self.running.stop()
            return None
        self.conn.send("stop")
        rss = self.conn.recv()
        self.proc.join(timeout=15)
        return rss


class TimedClient(KetchClient):
    """KetchClient that records each lookup's latency (two perf_counter calls per lookup)."""

    latencies: list[float]

    async def fetch_record(self, space: str, value: str, purposes: dict[str, str] | None = None):
        start = time.perf_counter()
        try:
            return await super().fetch_record(space, value, purposes)
        finally:
            self.latencies.append(time.perf_counter() - start)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_one(url: str, n: int, concurrency: int, server: _Server, backend: str = "auto") -> dict[str, Any]:
    cfg = KetchConfig(base_url=url + "/web/v3", organization="acme", property="web", environment="production",
                      jurisdiction="default", concurrency=concurrency, requests_per_second=0,
                      timeout_seconds=30.0, max_retries=2)
    values = [f"u{i}@example.com" for i in range(n)]
    with TimedClient(cfg, http_backend=backend) as client:
        client.latencies = []
        client.fetch_many("email", values[:min(n, 2 * concurrency)])  # warm the lanes
        _, server_cpu0 = server.take_calls()
        client.latencies = []
        cpu0 = time.process_time()
        start = time.perf_counter()
        records = client.fetch_many("email", values, {"email_mktg": "consent_optin"})
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    calls, server_cpu1 = server.take_calls()
    server_cpu = None if server_cpu0 is None else server_cpu1 - server_cpu0
    expect = sum(1 for i in range(n) if i % 3 == 0 or i % 5 == 0)
    got = sum(1 for r in records.values() if r.has_record)
    if len(records) != n or got != expect or calls != 2 * n:
        raise SystemExit(f"wrong answer: {len(records)} records, {got} with state (want {expect}), "
                         f"{calls} server calls (want {2 * n})")
    lat = client.latencies
    return {"n": n, "c": concurrency, "s": elapsed, "lookups": n / elapsed, "requests": 2 * n / elapsed,
            "p50": _pct(lat, 0.5) * 1000, "p99": _pct(lat, 0.99) * 1000, "cpu": cpu / elapsed,
            "us_req": cpu / (2 * n) * 1e6, "srv_us_req": None if server_cpu is None else server_cpu / (2 * n) * 1e6,
            "load": os.getloadavg()[0]}


def _versions() -> str:
    out = [f"python {platform.python_version()}"]
    for mod in ("aiohttp", "uvicorn", "httpx", "httpcore", "h11", "httptools", "uvloop"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except (ImportError, AttributeError):
            pass
    return ", ".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--server", choices=("thread", "process"), default="thread")
    p.add_argument("--http", default=None, help="uvicorn http implementation (auto, h11, httptools)")
    p.add_argument("--loop", default=None, help="uvicorn event loop (auto, asyncio, uvloop)")
    p.add_argument("--client", choices=("auto", "aiohttp", "httpx"), nargs="+", default=["aiohttp", "httpx"],
                   help="KetchClient http_backend(s), run side by side")
    args = p.parse_args(argv)
    if any(n <= 0 or n > 200_000 for n in args.sizes) or any(c <= 0 or c > 1024 for c in args.concurrency):
        p.error("sizes must be 1..200000 and concurrency 1..1024")

    print(f"# {platform.machine()} {os.cpu_count()} cpu, {_versions()}")
    print(f"# server={args.server} http={args.http or 'default'} loop={args.loop or 'default'} "
          f"clients={','.join(args.client)}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'client':>7} {'N':>6} {'conc':>5} {'sec':>6} {'lookups/s':>10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'cpu':>5} {'us/req':>6} {'srv us/req':>10} {'load1':>5}")
    rows = []
    for n in args.sizes:
        server = _Server(n, args)
        try:
            for c in args.concurrency:
                for backend in args.client:
                    row = run_one(server.url, n, c, server, backend)
                    row["client"] = backend
                    rows.append(row)
                    print(f"{backend:>7} {row['n']:>6} {row['c']:>5} {row['s']:>6.2f} {row['lookups']:>10,.0f} {row['requests']:>8,.0f} "
                          f"{row['p50']:>7.2f} {row['p99']:>7.2f} {row['cpu']:>5.2f} {row['us_req']:>6.0f} "
                          f"{'-' if row['srv_us_req'] is None else format(row['srv_us_req'], '.0f'):>10} {row['load']:>5.2f}",
                          flush=True)
        finally:
            child_rss = server.stop()
        if child_rss is not None:
            print(f"# server process peak RSS: {child_rss / 1024:.0f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak RSS (this process{', client only' if args.server == 'process' else ', client + server'}): "
          f"{rss:.0f} MiB")
    print(f"# load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for backend in args.client:
        mine = [r for r in rows if r["client"] == backend]
        if mine:
            print(f"# {backend}: best {max(r['lookups'] for r in mine):,.0f} lookups/s, "
                  f"median {statistics.median(r['lookups'] for r in mine):,.0f} lookups/s, "
                  f"median {statistics.median(r['us_req'] for r in mine):,.0f} us of CPU per request")


if __name__ == "__main__":
    sys.exit(main())
