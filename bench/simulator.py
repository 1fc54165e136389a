"""N load generators in one process, speaking the generator protocol exactly, sending no load.

Each simulated generator heartbeats into KV ``surge_generators`` every second, follows
its assignment through one watch of KV ``surge_assign`` (start, epoch updates, stop,
delete), and sends one ``IntervalStats`` per second per run on ``surge.stats.<run>.<gen>``
with pre-encoded HdrHistograms (the standard encoding generators send), resending on a
timeout or a 5xx exactly as a generator keeps its outbox. Sends are spread over the
first part of each second by the generator's position, as the real generator does.

Everything acknowledged is remembered (``acked``), so a benchmark or a test can
compare the coordinator's report with what was really sent, request by request.
What it leaves out, and why: the generator's resync read of its assignment (a read of
the assignment bucket that never reaches the coordinator) and the HTTP load itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
import numpy as np
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE

from schemas import subjects
from schemas.control import Assignment, Heartbeat
from schemas.stats import IntervalStats, RequestInterval, StatsAck
from services.common import histogram

SEND_SPREAD_S = 0.3  # same spread as services/generator/service.py
VARIANTS = 8  # distinct pre-encoded latency distributions, picked by (generator, second)

_assignment = msgspec.json.Decoder(Assignment)
_ack = msgspec.json.Decoder(StatsAck)


def encoded_histograms(per_interval: int, seed: int = 7) -> list[tuple[str, str]]:
    """``VARIANTS`` (latency, service) pairs of encoded histograms, ``per_interval`` values each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(VARIANTS):
        lat_s = rng.lognormal(mean=np.log(0.004), sigma=0.8, size=per_interval)
        lat, svc = histogram.new(), histogram.new()
        histogram.record_many(lat, lat_s, scale=1e6)
        histogram.record_many(svc, lat_s * 0.7, scale=1e6)
        out.append((histogram.encode(lat), histogram.encode(svc)))
    return out


def variant(gid: str, seq: int) -> int:
    """Which pre-encoded histogram a generator's second carries (stable across processes)."""
    return zlib.crc32(f"{gid}:{seq}".encode()) % VARIANTS


@dataclass
class _Running:
    a: Assignment
    task: asyncio.Task | None = None
    stop_at: float | None = None  # wall time the generator was told to stop
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        if self.stop_at is None:
            self.stop_at = time.time()
            self.stopped.set()


@dataclass
class Acked:
    """What the coordinator acknowledged, per (generator, seq): request counts by name."""

    intervals: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # send -> ack, first try to ack

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.intervals.values())

    def by_name(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for counts in self.intervals.values():
            for name, n in counts.items():
                out[name] += n
        return dict(out)

    def by_generator(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (gid, _), counts in self.intervals.items():
            out[gid] += sum(counts.values())
        return dict(out)


class Simulator:
    """``n`` generators named ``<prefix>-0000`` ... in this process."""

    def __init__(self, nc: Client, n: int, names: list[str], *, per_name: int = 10,
                 prefix: str = "sim", deaf: set[str] | None = None, mute: set[str] | None = None,
                 connections: list[Client] | None = None) -> None:
        self.nc = nc  # the assignment watch
        # generator i beats and sends on connections[i % len]: many connections, as many
        # hosts would have, so no one connection carries a thousand generators' traffic
        self.ncs = connections or [nc]
        self.ids = [f"{prefix}-{i:04d}" for i in range(n)]
        self.names = names
        self.per_name = per_name  # requests per name per generator per second
        self.deaf = deaf or set()  # heartbeat, but never follow an assignment
        self.mute = mute or set()  # follow it and say "running", but never send an interval
        self.hists = encoded_histograms(per_name)
        self.runs: dict[str, _Running] = {}
        self.finished: set[tuple[str, str]] = set()  # (generator, run) done: never restarted
        self.acked = Acked()
        self.refused: list[tuple[str, int, str]] = []  # 4xx answers: (generator, seq, body)
        self.retries = 0
        self.in_flight = 0  # intervals sent and not answered for good yet
        # per second of a run: how late after its end this process sent its last interval
        # (a simulator short of CPU sends late, and the snapshot waits for it, not for us)
        self.sent_late_s: dict[int, float] = {}
        self._tasks: list[asyncio.Task] = []
        self._host = socket.gethostname()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        js = self.nc.jetstream()
        self.assignments = await js.key_value(subjects.ASSIGN_BUCKET)
        self._kv = [await c.jetstream().key_value(subjects.GENERATORS_BUCKET) for c in self.ncs]
        self._slot = {gid: i % len(self.ncs) for i, gid in enumerate(self.ids)}
        await asyncio.gather(*(self._beat(gid) for gid in self.ids))
        self._tasks = [asyncio.create_task(self._heartbeats(), name="sim-heartbeats"),
                       asyncio.create_task(self._watch(), name="sim-watch")]
        await asyncio.wait_for(self._ready.wait(), 30)

    async def stop(self) -> None:
        tasks = self._tasks + [r.task for r in self.runs.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(self._forget(gid) for gid in self.ids), return_exceptions=True)

    async def _forget(self, gid: str) -> None:
        await self._kv[self._slot[gid]].delete(gid)

    # --- heartbeats --------------------------------------------------------------
    def heartbeat(self, gid: str) -> Heartbeat:
        r = self.runs.get(gid)
        running = r is not None and gid not in self.deaf
        now = time.time()
        return Heartbeat(
            id=gid, host=self._host, pid=os.getpid(), cores=1, version="sim",
            started_at=now, sent_at=now, capacity_rps=20_000.0,
            state="running" if running else "idle",
            run_id=r.a.run_id if running else None, epoch=r.a.epoch if running else 0,
            target_rps=float(self.per_name * len(self.names)) if running else 0.0,
        )

    async def _beat(self, gid: str) -> None:
        await self._kv[self._slot[gid]].put(gid, msgspec.json.encode(self.heartbeat(gid)))

    async def _heartbeats(self) -> None:
        """Every generator once a second, spread over the second as independent hosts would be."""
        n = len(self.ids)
        t0 = time.monotonic()
        k = 1
        while True:
            for i, gid in enumerate(self.ids):
                due = t0 + k + i / n
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._beat(gid))
                task.add_done_callback(_ignore)
            k += 1

    # --- assignments ---------------------------------------------------------------
    async def _watch(self) -> None:
        mine = set(self.ids)
        while True:
            watcher = await self.assignments.watch(">")
            try:
                async for entry in watcher:
                    if entry is None:
                        self._ready.set()
                        continue
                    if entry.key in mine:
                        self._on_entry(entry)
            finally:
                await watcher.stop()

    def _on_entry(self, entry) -> None:
        gid = entry.key
        r = self.runs.get(gid)
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            if r is not None:
                r.stop()
            return
        a = _assignment.decode(entry.value)
        if gid in self.deaf:
            return
        if r is not None and r.a.run_id == a.run_id:
            if a.epoch > r.a.epoch:
                r.a = a
                if a.stop:
                    r.stop()
            return
        if a.stop or (gid, a.run_id) in self.finished or a.end_at <= time.time():
            return
        if r is not None:
            r.stop()
        run = self.runs[gid] = _Running(a)
        run.task = asyncio.create_task(self._intervals(gid, run), name=f"sim-{gid}")

    # --- intervals -------------------------------------------------------------------
    async def _intervals(self, gid: str, run: _Running) -> None:
        a = run.a
        end = a.end_at
        k = max(int(time.time() - a.start_at), 0)
        try:
            if gid in self.mute:  # "running" in its beats until told to stop
                await run.stopped.wait()
                return
            while True:
                boundary = a.start_at + k + 1
                if run.stop_at is not None or boundary >= end:
                    break
                spread = SEND_SPREAD_S * run.a.index / max(run.a.count, 1)
                await _sleep_until(boundary + spread, run.stopped)
                if run.stop_at is not None and run.stop_at < boundary:
                    break
                self._send(gid, run.a, k, final=False)
                k += 1
            if run.stop_at is None:
                await _sleep_until(end, run.stopped)
            self._send(gid, run.a, k, final=True)
        finally:
            self.finished.add((gid, a.run_id))
            if self.runs.get(gid) is run:
                del self.runs[gid]
                task = asyncio.create_task(self._beat(gid))  # "idle" at once
                task.add_done_callback(_ignore)

    def _send(self, gid: str, a: Assignment, seq: int, final: bool) -> None:
        lat, svc = self.hists[variant(gid, seq)]
        per_name = self.per_name
        requests = {name: RequestInterval(count=per_name, latency=lat, service=svc)
                    for name in self.names}
        stats = IntervalStats(
            run_id=a.run_id, generator_id=gid, epoch=a.epoch, seq=seq,
            target=float(per_name * len(self.names)), sent=per_name * len(self.names),
            in_flight=0, requests=requests, final=final,
        )
        self.in_flight += 1
        late = time.time() - (a.start_at + seq + 1)
        self.sent_late_s[seq] = max(self.sent_late_s.get(seq, late), late)
        task = asyncio.create_task(self._deliver(stats))
        task.add_done_callback(_ignore)

    async def _deliver(self, stats: IntervalStats) -> None:
        """Until acknowledged or refused for good, like the generator's outbox."""
        try:
            await self._deliver_once(stats)
        finally:
            self.in_flight -= 1

    async def _deliver_once(self, stats: IntervalStats) -> None:
        subject = subjects.stats(stats.run_id, stats.generator_id)
        data = msgspec.json.encode(stats)
        first = time.monotonic()
        for _ in range(240):
            try:
                msg = await self.ncs[self._slot[stats.generator_id]].request(subject, data, timeout=2.0)
            except Exception:
                self.retries += 1
                await asyncio.sleep(0.5 + random.random() * 0.1)
                continue
            code = msg.headers.get("Nats-Service-Error-Code", "") if msg.headers else ""
            if code.startswith("5"):
                self.retries += 1
                await asyncio.sleep(0.5)
                continue
            if code:
                self.refused.append((stats.generator_id, stats.seq, msg.data[:200].decode()))
                return
            _ack.decode(msg.data)
            self.acked.latencies_ms.append((time.monotonic() - first) * 1000)
            self.acked.intervals[(stats.generator_id, stats.seq)] = {
                name: r.count for name, r in stats.requests.items()
            }
            return


async def _sleep_until(wall: float, stopped: asyncio.Event) -> None:
    delay = wall - time.time()
    if delay > 0 and not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), delay)
        except TimeoutError:
            pass


def _ignore(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
