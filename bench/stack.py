"""A real Surge stack for the bench: nats-server, a coordinator and one generator, each its own process.

    with Services(server_core=0, client_core=1) as s:
        api = await connect(s.url)

nats-server (JetStream, a temp dir) and the coordinator share the server's core with
nginx; the generator gets the clients' core, as every client in ``make bench`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.nginx import free_port
from schemas.errors import Unavailable
from services.common.client import CoordinatorClient
from services.cli.up import nats_server_binary, port_open
from services.plan import loader


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-1] of ``values``, rounded to 3 places; None if empty."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, max(math.ceil(len(values) * q) - 1, 0))], 3)


class Services:
    """nats-server, a coordinator and one generator, each its own process, in a temp dir."""

    def __init__(self, server_core: int | None, client_core: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="surge-bench-stack-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.server_core, self.client_core = server_core, client_core
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def spawn(self, name: str, cmd: list[str], core: int | None, env: dict[str, str] | None = None) -> None:
        pin = ["taskset", "-c", str(core)] if core is not None else []
        log = open(self.dir / f"{name}.log", "ab")
        self.logs.append(log)
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
        self.generator = self.procs[-1]  # taskset execs: the same pid is the generator's
        return self

    def __exit__(self, *exc) -> None:
        stop_processes(self.procs)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_processes(procs: list[subprocess.Popen], grace_s: float = 8.0) -> None:
    """The benches' one teardown (``Services``, ``bench.scale``): ``procs[0]`` is the
    nats-server, the rest its clients. The clients go first (SIGTERM, newest first, then
    SIGKILL to any still running ``grace_s`` later), so that they say goodbye to a bus
    that is still there; then the nats-server, the same way."""
    def stop(group: list[subprocess.Popen]) -> None:
        for proc in group:
            proc.terminate()
        for proc in group:
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stop(list(reversed(procs[1:])))
    stop(procs[:1])


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


def plan_for(url: str, *, rate: float = 1, duration_s: float = 1, conns: int = 64, timeout_s: float = 5.0,
             name: str = "bench"):
    """A plan that GETs ``url`` (nginx's file) at ``rate`` for ``duration_s``."""
    scheme, _, host, path = url.split("/", 3)
    return loader.from_obj({
        "name": name, "target": f"{scheme}//{host}", "rate": rate, "duration": f"{duration_s:g}s",
        "connections": conns, "timeout": timeout_s, "requests": [{"name": "static", "path": "/" + path}],
    })


def run_measurement(prog: str, measure, **options) -> None:
    """The command line of a stack measurement: ``prog URL [--option N ...] [--server-core C]
    [--client-core C]``; runs ``measure(args, services)`` against a fresh stack and
    prints its JSON. ``options``: name -> default (its type is the option's)."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("url")
    for name, default in options.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    p.add_argument("--server-core", type=int, default=None)
    p.add_argument("--client-core", type=int, default=None)
    args = p.parse_args()
    with Services(args.server_core, args.client_core) as services:
        args.nats = services.url
        result = asyncio.run(measure(args, services))
    print(json.dumps(result))
