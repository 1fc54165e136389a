"""`make bench-scale`: one coordinator (or a leader and mergers) against N simulated generators.

    python -m bench.scale [--points 200x1,500x1,1000x1,500x5,1000x5,2000x1m2] [--seconds 30]
                          [--quick] [--out bench/results/scale.json] [--profile FILE]

Per point (generators × request names, ``m2``: two merger workers) a fresh nats-server
(JetStream) and coordinator(s) start as their own processes; ``bench.simulator`` plays
the generators in this process (heartbeats, assignment watch, one interval a second
each with pre-encoded histograms, 10 requests/s per name). Printed and written per
point: the coordinator's CPU (mean/max % of one core) and RSS, snapshot lag (p50/max:
arrival of ``surge.live`` second k after its end), snapshots with every generator in
them, acknowledgement latency p99, and whether the report equals what was
acknowledged (totals, per name, per generator). Figures, never pass/fail.
``--profile FILE`` runs the coordinator under cProfile (one point; read it with pstats).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats
import psutil

from bench.simulator import Simulator
from bench.stack import pct, stop_processes
from schemas import subjects
from schemas.stats import LiveSnapshot
from services.cli.up import nats_server_binary, port_open
from services.common.client import CoordinatorClient
from services.plan import loader

_snapshot = msgspec.json.Decoder(LiveSnapshot)
SIM_PER_CONNECTION = 100  # simulated generators sharing one NATS connection


def parse_point(text: str) -> tuple[int, int, int]:
    """"1000x5" -> (1000, 5, 0); "2000x1m2" -> (2000, 1, 2 mergers)."""
    gens, _, rest = text.partition("x")
    names, _, mergers = rest.partition("m")
    return int(gens), int(names), int(mergers or 0)


class Stack:
    """nats-server and coordinator processes (plus mergers) in a temp dir."""

    def __init__(self, mergers: int, profile: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="surge-bench-scale-"))
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.mergers = mergers
        self.profile = profile
        self.procs: list[subprocess.Popen] = []
        self.coordinator: subprocess.Popen | None = None

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "SURGE_NATS_URL": self.url, **(env or {})})
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Stack:
        self._spawn("nats", [nats_server_binary(), "-js", "-sd", str(self.dir / "js"),
                             "-a", "127.0.0.1", "-p", str(self.port)])
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start; see {self.dir}")
            time.sleep(0.05)
        env = {"SURGE_START_DELAY_S": "3", "SURGE_MERGERS": str(self.mergers),
               "SURGE_LOG_LEVEL": "warning"}
        profiled = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        self.coordinator = self._spawn("coordinator", [sys.executable, *profiled, "-m", "services.coordinator"], env)
        for i in range(self.mergers):
            self._spawn(f"merger-{i}", [sys.executable, "-m", "services.coordinator.merger"],
                        {"SURGE_MERGER_ID": f"merger-{i}", "SURGE_LOG_LEVEL": "warning"})
        return self

    def __exit__(self, *exc) -> None:
        stop_processes(self.procs)
        for log in sorted(self.dir.glob("*.log")):  # a failing process says why, briefly
            text = log.read_text(errors="replace")
            if "Traceback" in text or "error" in text.lower():
                print(f"--- {log.name} (last lines)", file=sys.stderr)
                print("\n".join(text.splitlines()[-15:]), file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _ready(nc) -> None:
    js = nc.jetstream()
    deadline = time.monotonic() + 30
    while True:
        try:
            await js.key_value(subjects.ASSIGN_BUCKET)
            await js.key_value(subjects.GENERATORS_BUCKET)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _registered(api: CoordinatorClient, n: int, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if len((await api.generators()).generators) >= n:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} simulated generators not registered in {limit_s:g}s")
        await asyncio.sleep(0.3)


async def measure(n: int, names: int, mergers: int, seconds: int, profile: str | None = None) -> dict:
    request_names = [f"req{i}" for i in range(names)]
    with Stack(mergers, profile) as stack:
        nc = await nats.connect(stack.url, pending_size=256 * 1024 * 1024)
        await _ready(nc)
        conns = [await nats.connect(stack.url, pending_size=64 * 1024 * 1024)
                 for _ in range(max(1, n // SIM_PER_CONNECTION))]
        sim = Simulator(nc, n, request_names, prefix="sim", connections=conns)
        await sim.start()
        api = await CoordinatorClient.connect(stack.url)
        await _registered(api, n)
        coord = psutil.Process(stack.coordinator.pid)
        merger_procs = [psutil.Process(p.pid) for p in stack.procs[2:]]
        plan = loader.from_obj({
            "name": f"scale-{n}x{names}", "target": "http://127.0.0.1:9",
            "rate": 10 * n * names, "duration": seconds, "timeout": 0.5,
            "requests": [{"name": name} for name in request_names],
        })
        snapshots: list[tuple[float, LiveSnapshot]] = []
        started = await api.start(plan)
        run_id = started.run_id

        async def on_live(msg) -> None:
            snap = _snapshot.decode(msg.data)
            if not snap.final:
                snapshots.append((time.time(), snap))

        await nc.subscribe(subjects.live(run_id), cb=on_live)
        cpu, rss, merger_cpu, sim_cpu = [], [], [], []
        me = psutil.Process()
        me.cpu_percent(None)
        coord.cpu_percent(None)
        for p in merger_procs:
            p.cpu_percent(None)
        report = None
        deadline = started.end_at + 60
        while time.time() < deadline:
            await asyncio.sleep(1.0)
            if time.time() < started.end_at:
                cpu.append(coord.cpu_percent(None))
                sim_cpu.append(me.cpu_percent(None))
                rss.append(coord.memory_info().rss / 2**20)
                if merger_procs:
                    merger_cpu.append(sum(p.cpu_percent(None) for p in merger_procs))
                continue
            try:
                report = await api.report(run_id)
                break
            except Exception:
                continue
        await sim.stop()
        await api.close()
        for c in conns:
            await c.close()
        await nc.close()
    lags = [at - (started.start_at + s.seq + 1) for at, s in snapshots]
    complete = sum(1 for _, s in snapshots
                   if sum(1 for g in s.generators.values() if not g.lost and g.rps > 0) >= n)
    acked = sim.acked
    exact = None
    if report is not None:
        exact = (report.totals.requests == acked.total()
                 and {k: v.requests for k, v in report.requests.items() if v.requests} == acked.by_name()
                 and {k: g.requests for k, g in report.generators.items() if g.requests} == acked.by_generator())
    return {
        "generators": n, "names": names, "mergers": mergers, "seconds": seconds,
        "coordinator_cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "coordinator_cpu_max": round(max(cpu), 1) if cpu else None,
        "mergers_cpu_mean": round(sum(merger_cpu) / len(merger_cpu), 1) if merger_cpu else None,
        # the simulator shares the machine: near 100 % it, not the coordinator, is the limit
        "simulator_cpu_mean": round(sum(sim_cpu) / len(sim_cpu), 1) if sim_cpu else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "coordinator_rss_mb_max": round(max(rss), 1) if rss else None,
        "snapshot_lag_p50_s": pct(lags, 0.5), "snapshot_lag_max_s": round(max(lags), 3) if lags else None,
        "snapshots": len(snapshots), "snapshots_complete": complete,
        "ack_latency_p99_ms": pct(acked.latencies_ms, 0.99),
        # the simulator's own lateness: the last interval of a second sent this long after it
        # ended (0.3 s of it is the spread by position, as real generators do)
        "simulator_sent_late_max_s": round(max(sim.sent_late_s.values()), 3) if sim.sent_late_s else None,
        "simulator_sent_late_s": [round(sim.sent_late_s[k], 2) for k in sorted(sim.sent_late_s)],
        "snapshot_lags_s": [round(lag, 2) for lag in lags],
        "sent_requests": acked.total(), "report_requests": report.totals.requests if report else None,
        "report_exact": exact, "refused": len(sim.refused), "resends": sim.retries,
        "lost_events": sum(1 for e in (report.events if report else []) if "lost" in e),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale")
    p.add_argument("--points", default="200x1,500x1,1000x1,500x5,1000x5,2000x1m2")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="one small point, a few seconds")
    p.add_argument("--out", default="bench/results/scale.json")
    p.add_argument("--profile", help="run the coordinator under cProfile, its stats into this file")
    args = p.parse_args()
    points = ["50x2"] if args.quick else args.points.split(",")
    seconds = 4 if args.quick else args.seconds
    results = []
    for point in points:
        n, names, mergers = parse_point(point)
        row = asyncio.run(measure(n, names, mergers, seconds, args.profile))
        results.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "points": results,
    }, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
