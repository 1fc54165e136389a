"""Fixtures with real parts: nats-server on a free port, services as real processes.

Nothing here mocks the bus. Readiness is awaited with deadlines, never with fixed sleeps:
a process's own line ("Server is ready", "listening", "started": ``Proc.said``), a KV
watch or a subscription (``tests/events.py``); a probe (``until``, ``wait_http``) only
where what is waited for has no event (the coordinator API's list of generators).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.events import piped

ROOT = Path(__file__).resolve().parent.parent
# contexts (`surge context`) live under XDG_CONFIG_HOME: tests never touch the real one
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="surge-test-config-")
PY = sys.executable
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log_path: Path, limit_s: float, every_s: float = 0.1) -> None:
    """Until ``url`` answers 200; an error if ``proc`` exits first (see ``log_path``) or after
    ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.args[0]} did not answer {url} in {limit_s}s")
        time.sleep(every_s)


class Proc:
    """A service as a real subprocess, its output kept in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        # through a pipe, so that a test can await a line (``said``) rather than read the log again and again
        self.popen, self.lines = piped(cmd, self.log_path, cwd=ROOT, env={**os.environ, **env})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    async def said(self, text: str, limit_s: float, what: str | None = None) -> None:
        """Until it prints a line holding ``text``; an error if it exits first."""
        await self.lines.said(text, limit_s, what or f"{self.name} saying {text!r}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no last heartbeat."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(5)

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.lines.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.lines.text()


class Cluster:
    """A nats-server plus whatever services a test starts, all torn down at the end.

    Options come before the server starts: ``nats_conf`` (more nats.conf lines: auth,
    TLS; kept for restarts) and ``service_env`` (added to every service's environment).
    Tests get one from the ``make_cluster`` factory fixture (or ``cluster``/``js_cluster``).
    """

    def __init__(self, tmp: Path, nats_conf: str = "", service_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.procs: list[Proc] = []
        self.nats_conf_extra = nats_conf
        self.service_env: dict[str, str] = dict(service_env or {})
        self._nats_starts = 0
        self._generators = 0
        self.nats = self.start_nats()

    def start_nats(self, conf_extra: str | None = None) -> Proc:
        """(Re)start the nats-server: same port, same store directory."""
        if conf_extra is not None:
            self.nats_conf_extra = conf_extra
        store = self.tmp / "nats"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "nats.conf"
        # reports of long runs exceed the 1 MB default payload
        conf.write_text("max_payload: 8388608\n" + self.nats_conf_extra)
        self._nats_starts += 1
        name = "nats" if self._nats_starts == 1 else f"nats-{self._nats_starts}"
        self.nats = self._spawn(
            name, [NATS_SERVER, "-c", str(conf), "-js", "-sd", str(store), "-a", "127.0.0.1",
                   "-p", str(self.port)], {}
        )
        self.nats.lines.wait_said("Server is ready", 10)  # it says so once it listens
        return self.nats

    def restart_nats(self, kill: bool = True) -> Proc:
        """Kill (SIGKILL) or stop the nats-server and start it again in its place."""
        if kill:
            self.nats.kill()
        else:
            self.nats.stop()
        return self.start_nats()

    def env(self, **extra: str) -> dict[str, str]:
        return {"SURGE_NATS_URL": self.url, "SURGE_LOG_LEVEL": "info", **self.service_env, **extra}

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        taken = {p.name for p in self.procs}
        unique, n = name, 1
        while unique in taken:  # two coordinators must not share (and truncate) one log
            n += 1
            unique = f"{name}-{n}"
        proc = Proc(unique, cmd, env, self.tmp)
        self.procs.append(proc)
        return proc

    def service(self, module: str, name: str | None = None, **env: str) -> Proc:
        return self._spawn(name or module, [PY, "-m", f"services.{module}"], self.env(**env))

    def coordinator(self, **env: str) -> Proc:
        env.setdefault("SURGE_START_DELAY_S", "0.5")
        return self.service("coordinator", **env)

    def generator(self, **env: str) -> Proc:
        self._generators += 1
        gid = env.pop("generator_id", f"gen-{self._generators}")
        return self.service("generator", name=gid, SURGE_GENERATOR_ID=gid, **env)

    def target(self, **env: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self.service("target", name=f"target-{port}", SURGE_TARGET_PORT=str(port), **env)
        proc.lines.wait_said("listening", 20)  # its line once the socket is bound
        return proc, f"http://127.0.0.1:{port}"

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "services.cli", "--nats", self.url, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "COLUMNS": "200"},
        )

    def close(self) -> None:
        # services first (they say goodbye over NATS), then the nats-server(s)
        services = [p for p in self.procs if not p.name.startswith("nats")]
        for proc in reversed(services):
            proc.stop()
        for proc in reversed(self.procs):
            if proc.name.startswith("nats"):
                proc.stop()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name}\n{p.output()[-4000:]}" for p in self.procs if not p.name.startswith("nats"))


class JetStreamCluster(Cluster):
    """Three nats-servers on 127.0.0.1 routed into one JetStream cluster (R3 buckets)."""

    NODES = 3

    def start_nats(self, conf_extra: str | None = None) -> Proc:
        if conf_extra is not None:
            self.nats_conf_extra = conf_extra
        if not hasattr(self, "node_ports"):
            self.node_ports = [free_port() for _ in range(self.NODES)]
            self.route_ports = [free_port() for _ in range(self.NODES)]
            self.nodes: list[Proc] = []
            self.port = self.node_ports[0]
            self.url = ",".join(f"nats://127.0.0.1:{p}" for p in self.node_ports)
            for i in range(self.NODES):
                self.nodes.append(self.start_node(i))
            for node in self.nodes:
                node.lines.wait_said("Server is ready", 10)
        return self.nodes[0]

    def start_node(self, i: int) -> Proc:
        store = self.tmp / f"n{i + 1}"
        store.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(
            f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i
        )
        conf = self.tmp / f"n{i + 1}.conf"
        conf.write_text(
            f"server_name: n{i + 1}\nlisten: 127.0.0.1:{self.node_ports[i]}\n"
            "max_payload: 8388608\n"
            f"jetstream {{ store_dir: \"{store}\" }}\n"
            f"cluster {{ name: surge, listen: 127.0.0.1:{self.route_ports[i]}, routes: [{routes}] }}\n"
            + self.nats_conf_extra
        )
        return self._spawn(f"nats-n{i + 1}", [NATS_SERVER, "-c", str(conf)], {})

    def kill_node(self, i: int) -> None:
        self.nodes[i].kill()

    async def jetstream_ready(self, limit_s: float = 20.0) -> None:
        """Until the cluster has a meta leader and can create an R3 stream."""
        import nats as nats_client

        nc = await nats_client.connect(servers=self.url.split(","))
        js = nc.jetstream()

        async def ready() -> bool:
            try:
                await js.add_stream(name="READY", subjects=["ready.probe"], num_replicas=3)
                await js.delete_stream("READY")
                return True
            except Exception:
                return False

        try:
            await until(ready, limit_s, "JetStream cluster ready", every_s=0.25)
        finally:
            await nc.close()


def target_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/__stats", timeout=5) as resp:
        return json.loads(resp.read())


def start_cluster(tmp: Path, *, nodes: int = 1, nats_conf: str = "",
                  service_env: dict[str, str] | None = None) -> Cluster:
    """One nats-server (``nodes=1``) or a JetStream cluster of three, started with its options."""
    if nodes not in (1, JetStreamCluster.NODES):
        raise ValueError(f"a cluster has 1 or {JetStreamCluster.NODES} nodes, not {nodes}")
    kind = Cluster if nodes == 1 else JetStreamCluster
    return kind(tmp, nats_conf=nats_conf, service_env=service_env)


@pytest.fixture
def make_cluster(tmp_path: Path, request) -> Iterator:
    """The cluster factory (arq's ``worker`` fixture): ``make_cluster(nodes=, nats_conf=,
    service_env=)``; every cluster made is closed after the test, its logs shown on failure."""
    made: list[Cluster] = []

    def make(**options) -> Cluster:
        tmp = tmp_path if not made else tmp_path / f"cluster-{len(made) + 1}"
        tmp.mkdir(parents=True, exist_ok=True)
        made.append(start_cluster(tmp, **options))
        return made[-1]

    yield make
    for c in reversed(made):
        c.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for c in made:
            print(c.logs())


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    return make_cluster()


# what a test's monitor runs with unless it says otherwise (by the SURGE_* name): a quick
# sample, no alert rules, no /metrics port
MONITOR_DEFAULTS = {"SURGE_SAMPLE_S": "0.5", "SURGE_ALERTS": "", "SURGE_METRICS_PORT": "0"}


@pytest.fixture
def make_monitor(cluster: Cluster, tmp_path: Path):
    """The monitor factory: ``make_monitor(host, influx_url=, **env)`` starts a monitor
    process on ``cluster`` with ``MONITOR_DEFAULTS``, its own data directory (``tmp_path/m``
    for the first), ``SURGE_HOST_NAME=host`` (None: the machine's name) and, given
    ``influx_url``, writes there flushed every 0.2 s. ``env`` (SURGE_* names) overrides any
    of it. The cluster stops every monitor after the test; a test that checks the exit
    code calls ``stop()`` itself."""
    made: list[Proc] = []

    def make(host: str | None = None, *, influx_url: str | None = None, **env: str) -> Proc:
        data_dir = tmp_path / ("m" if not made else f"m-{len(made) + 1}")
        defaults = {**MONITOR_DEFAULTS, "SURGE_DATA_DIR": str(data_dir)}
        if host is not None:
            defaults["SURGE_HOST_NAME"] = host
        if influx_url is not None:
            defaults.update(SURGE_INFLUX_URL=influx_url, SURGE_INFLUX_FLUSH_S="0.2")
        made.append(cluster.service("monitor", **{**defaults, **env}))
        return made[-1]

    return make


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


async def until(predicate, limit_s: float, what: str, every_s: float = 0.05):
    """Poll an async or sync predicate until truthy (a readiness probe with a deadline)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit_s}s waiting for {what}")
        await asyncio.sleep(every_s)


#: how late a loaded 2-core machine may take a second's boundary: a timer woken late, a GC
#: pause, a process not scheduled (under two test runs at once a generator's second took
#: 292 of 300 requests and its next 308, its p99 62 ms)
LATE_BOUNDARY_S = 0.1


def one_seconds_count(rate: float, *p99_ms: float | None):
    """What a count of one wall-clock second can be checked against: ``rate``, give or take
    the requests of ``LATE_BOUNDARY_S`` plus the seconds' own ``p99_ms`` (latency from the
    intended time) at that rate, at least 3. A second holds what a process's clock put in
    it: a boundary taken late moves rate × lateness requests into the next second, and a
    generator behind its schedule answers each request that much later (under two test runs
    at once a 2-engine generator's second held 216 of 300, its p50 140 ms). The run's sum
    is exact and is checked on its own."""
    lag_s = LATE_BOUNDARY_S + max((p or 0.0 for p in p99_ms), default=0.0) / 1000
    return pytest.approx(rate, abs=max(3.0, rate * lag_s))


async def generators_registered(api, count: int, limit_s: float = 20.0) -> None:
    """Wait until the coordinator lists at least ``count`` live generators."""

    async def registered() -> bool:
        try:
            return len((await api.generators()).generators) >= count
        except Exception:  # no leader yet, NATS reconnecting: ask again
            return False

    await until(registered, limit_s, f"{count} generators registered")


async def api_with(cluster: Cluster, generators: int):
    """A coordinator API client, once ``generators`` generators are registered."""
    from services.common.client import CoordinatorClient

    api = await CoordinatorClient.connect(cluster.url)
    await generators_registered(api, generators)
    return api


async def run_in(nc, run_id: str, states=None, limit_s: float = 30.0):
    """The run's record once its state is one of ``states`` (default: ended), from a
    watch of its key in surge_runs (the coordinator writes it there, the report before)."""
    import msgspec

    from schemas import subjects
    from schemas.control import ENDED_STATES, RunRecord
    from tests.events import kv_until

    states = ENDED_STATES if states is None else states
    kv = await nc.jetstream().key_value(subjects.RUNS_BUCKET)

    def reached(latest: dict):
        record = msgspec.json.decode(latest[run_id], type=RunRecord) if latest.get(run_id) else None
        return record if record is not None and record.state in states else None

    return await kv_until(kv, run_id, reached, limit_s, f"run {run_id} in {sorted(states)}")


async def beat_of(nc, gid: str, match, limit_s: float, what: str):
    """``gid``'s heartbeat once ``match(beat)`` holds: a watch of its key in the registry."""
    import msgspec

    from schemas import subjects
    from schemas.control import Heartbeat
    from tests.events import kv_until

    kv = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)

    def matched(latest: dict):
        beat = msgspec.json.decode(latest[gid], type=Heartbeat) if latest.get(gid) else None
        return beat if beat is not None and match(beat) else None

    return await kv_until(kv, gid, matched, limit_s, what)


async def run_forgotten(nc, run_id: str, limit_s: float = 10.0) -> None:
    """Until the run's record is gone from surge_runs (retention), from a watch of its key."""
    from schemas import subjects
    from tests.events import kv_until

    kv = await nc.jetstream().key_value(subjects.RUNS_BUCKET)
    await kv_until(kv, run_id, lambda latest: latest.get(run_id) is None, limit_s, f"run {run_id} forgotten")


async def service_infos(nc, name: str, expected: int, limit_s: float = 5.0) -> list[dict]:
    """`nats micro info NAME`: every instance's answer, once ``expected`` have come.

    The probe is sent again every half second until then (answers are kept by
    instance id), so an instance that registers or re-registers meanwhile is heard.
    """
    inbox = nc.new_inbox()
    replies: dict[str, dict] = {}

    async def on_msg(msg) -> None:
        info = json.loads(msg.data)
        replies[info["id"]] = info

    sub = await nc.subscribe(inbox, cb=on_msg)
    deadline = time.monotonic() + limit_s
    try:
        while len(replies) < expected:
            await nc.publish(f"$SRV.INFO.{name}", b"", reply=inbox)
            try:
                await until(lambda: len(replies) >= expected, 0.5, "info replies")
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(replies)} of {expected} `{name}` instances answered info "
                        f"in {limit_s}s") from None
    finally:
        await sub.unsubscribe()
    return list(replies.values())
