"""Live rate change end to end: the change request → the assignment write → the generator on the wire.

    python -m bench.rate_e2e URL [--changes 50] [--rate 2000] [--server-core 0] [--client-core 1]

Starts a real nats-server (JetStream, temp dir), a coordinator and one generator
service as processes, starts a run against URL through the coordinator's API, then
changes its rate ``changes`` times (alternating ``rate`` and 1.5 × ``rate``), two
seconds apart. The generator's interval stats say, for each new epoch,
when the coordinator's assignment write was stored (the NATS server's timestamp of the
KV entry) and when its engine began following it; this listens to those intervals on
the bus (as the coordinator does) and prints one JSON object:

* ``write_to_applied_*``: assignment write → engine following the new schedule (the
  issue's figure; the engine's own step to the first arrival on the wire is
  ``ratechange`` in ``bench.surge_run``, ~1 ms);
* ``request_to_applied_*``: the operator's request (``surge rate``) → the same;
* ``next_second``: the first whole interval after each change, its count against the
  new rate (the change really took: the next second runs at the new rate).

Everything runs on this machine: one clock for the server's timestamps and ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from schemas import subjects
from schemas.errors import Unavailable
from schemas.stats import IntervalStats
from services.cli.client import CoordinatorClient
from services.cli.up import nats_server_binary, port_open
from services.coordinator import plans
from bench.nginx import free_port


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, max(math.ceil(len(values) * q) - 1, 0))], 3)


class Services:
    """nats-server, a coordinator and one generator, each its own process, in a temp dir."""

    def __init__(self, server_core: int | None, client_core: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="surge-bench-rate-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.server_core, self.client_core = server_core, client_core
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, cmd: list[str], core: int | None, env: dict[str, str] | None = None) -> None:
        pin = ["taskset", "-c", str(core)] if core is not None else []
        log = open(self.dir / f"{name}.log", "ab")
        self.procs.append(subprocess.Popen(
            pin + cmd, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "SURGE_NATS_URL": self.url, **(env or {})}))

    def __enter__(self) -> Services:
        self.spawn("nats", [nats_server_binary(), "-js", "-sd", str(self.dir / "js"),
                            "-a", "127.0.0.1", "-p", str(self.port)], self.server_core)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise Unavailable(f"nats-server did not start; see {self.dir}/nats.log")
            time.sleep(0.05)
        self.spawn("coordinator", [sys.executable, "-m", "services.coordinator"], self.server_core)
        self.spawn("generator", [sys.executable, "-m", "services.generator"], self.client_core,
                   {"SURGE_GENERATOR_ID": "bench-gen"})
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def connect(url: str, limit_s: float = 20.0) -> CoordinatorClient:
    """The API once the coordinator leads and the generator has registered."""
    deadline = time.monotonic() + limit_s
    api: CoordinatorClient | None = None
    while True:
        try:
            if api is None:
                api = await CoordinatorClient.connect(url)
            if (await api.generators()).generators:
                return api
        except (Unavailable, OSError, asyncio.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise Unavailable(f"stack not up in {limit_s:g}s: {exc}") from exc
        if time.monotonic() > deadline:
            raise Unavailable(f"no generator registered in {limit_s:g}s")
        await asyncio.sleep(0.1)


async def measure(args) -> dict:
    api = await connect(args.nats)
    changes: dict[int, tuple[float | None, float]] = {}  # epoch -> (written_at, applied_at)
    counts: dict[int, int] = {}  # interval seq -> completed requests
    got = asyncio.Event()

    async def on_interval(msg) -> None:
        stats = msgspec.json.decode(msg.data, type=IntervalStats)
        counts[stats.seq] = counts.get(stats.seq, 0) + sum(r.count for r in stats.requests.values())
        for c in stats.changes:
            changes[c.epoch] = (c.written_at, c.applied_at)
        got.set()

    # a change every 2 s, at 0.8 s into a second: each is followed by a whole interval
    # (seq k covers [start_at + k, start_at + k + 1)) at its rate before the next change
    every = 2.0
    duration = args.changes * every + 6
    plan = plans.from_obj({
        "name": "bench-rate-change", "target": args.url.split("/", 3)[0] + "//" + args.url.split("/", 3)[2],
        "rate": args.rate, "duration": f"{math.ceil(duration)}s", "connections": 32, "timeout": 5,
        "requests": [{"name": "static", "path": "/" + args.url.split("/", 3)[3]}]})
    started = await api.start(plan)
    await api.nc.subscribe(subjects.stats_of_run(started.run_id), cb=on_interval)
    asked: dict[int, tuple[float, float]] = {}  # epoch -> (request sent, new rate)
    for k in range(args.changes):
        rate = args.rate * (1.5 if k % 2 == 0 else 1.0)
        await asyncio.sleep(max(started.start_at + 1.8 + k * every - time.time(), 0))
        t = time.time()
        ok = await api.rate(started.run_id, rate)
        asked[ok.epoch] = (t, rate)
    last_second = math.ceil(time.time() - started.start_at)  # the last change's whole second
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (set(asked) <= set(changes) and last_second in counts):
        got.clear()
        try:
            await asyncio.wait_for(got.wait(), 1.5)
        except asyncio.TimeoutError:
            pass
    await api.stop(started.run_id)
    await api.close()

    write_ms, request_ms, next_err = [], [], []
    for epoch, (t_req, rate) in asked.items():
        if epoch not in changes:
            continue
        written, applied = changes[epoch]
        request_ms.append((applied - t_req) * 1000)
        if written is not None:
            write_ms.append((applied - written) * 1000)
        seq = math.ceil(applied - started.start_at)  # the first whole second at the new rate
        following = changes.get(epoch + 1)
        whole = following is None or following[1] >= started.start_at + seq + 1
        if whole and seq in counts:
            next_err.append(abs(counts[seq] - rate) / rate * 100)
    return {
        "changes": len(asked), "seen": len(set(asked) & set(changes)), "rate": args.rate,
        "write_to_applied_p50_ms": pct(write_ms, 0.5), "write_to_applied_p99_ms": pct(write_ms, 0.99),
        "write_to_applied_max_ms": pct(write_ms, 1.0),
        "request_to_applied_p50_ms": pct(request_ms, 0.5), "request_to_applied_p99_ms": pct(request_ms, 0.99),
        "next_second_worst_error_pct": pct(next_err, 1.0), "next_seconds_checked": len(next_err),
        "scope": "coordinator's assignment write (NATS server timestamp) → the generator's engine on the "
                 "new schedule, real processes over NATS",
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.rate_e2e")
    p.add_argument("url")
    p.add_argument("--changes", type=int, default=50)
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--server-core", type=int, default=None)
    p.add_argument("--client-core", type=int, default=None)
    args = p.parse_args()
    with Services(args.server_core, args.client_core) as services:
        args.nats = services.url
        result = asyncio.run(measure(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
