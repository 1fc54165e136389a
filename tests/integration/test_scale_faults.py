"""The faults that lost data or load at scale (issue 18), each made to happen on purpose.

Real nats-server; the coordinator or generator under test runs in-process or as a real
process, and the moment of each race is forced with events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.control import Assignment
from services.plan import profile
from services.generator.config import Config as GeneratorConfig
from services.generator.service import Service as GeneratorService
from tests.conftest import free_port, run_in, until
from tests.events import Changes, Heard
from tests import plans

pytestmark = pytest.mark.timeout(60)


async def test_stale_resync_answer_does_not_stop_a_run_the_watch_started(cluster):
    """The heartbeat's resync read is answered "not found" (issued before the assignment
    was written); the watch starts the run; only then does the stale answer arrive."""
    svc = GeneratorService(GeneratorConfig(nats_url=cluster.url, generator_id="g-stale",
                                           heartbeat_s=3600.0))
    await svc.start()
    nc = await nats.connect(cluster.url)
    try:
        real_get = svc.assignments.get
        answered, deliver = asyncio.Event(), asyncio.Event()

        async def get_then_hold(key, *args, **kwargs):
            try:
                return await real_get(key, *args, **kwargs)  # the server's real answer
            finally:
                answered.set()
                await deliver.wait()  # ... handed over only after the watch acted

        svc.assignments.get = get_then_hold
        resync = asyncio.create_task(svc._resync())
        await asyncio.wait_for(answered.wait(), 5)  # "not found" is on its way

        # a closed port on 127.0.0.1: requests fail fast, nothing leaves the machine
        plan = plans.plan(plans.BASIC, f"http://127.0.0.1:{free_port()}", name="tiny", rate=2.0,
                          duration=3.0, timeout=0.5, requests=[{"name": "home"}])
        prof = profile.from_plan(plan)
        start = time.time() + 0.3
        a = Assignment(run_id="r-stale", epoch=1, share=1.0, start_at=start,
                       end_at=start + profile.duration(prof), profile=prof, plan=plan)
        kv = await nc.jetstream().key_value(subjects.ASSIGN_BUCKET)
        await kv.put("g-stale", msgspec.json.encode(a))
        await until(lambda: svc.run is not None, 5, "the watch starting the run")

        deliver.set()
        await asyncio.wait_for(resync, 5)
        assert svc.run is not None and not svc.run.stopping.is_set(), \
            "a resync answer older than the watch's news stopped the run"
    finally:
        deliver.set()
        await nc.close()
        await svc.stop()


async def _report(api, run_id: str, limit_s: float = 40.0):
    """The run's report once it has ended (stored before the record says so)."""
    await run_in(api.nc, run_id, limit_s=limit_s)
    return await api.report(run_id)


#: the plan the simulated generators are given: 10/s a generator, to nowhere (nothing is sent)
SIM = plans.raw(plans.BASIC, "http://127.0.0.1:9", name="sim", timeout=0.5, requests=[{"name": "home"}])


class HoldingRelay:
    """A TCP relay on 127.0.0.1 between the coordinator and nats-server. What the server
    sends can be held (the coordinator reads nothing) and, once released, what comes
    next can be let through slowly for a while, a few hundred bytes a read: the beats of
    50 generators then reach the coordinator one by one over a second or two, with its
    member checks in between, as they do a loaded coordinator. Bytes keep their order."""

    TICK_S = 0.025  # one read's worth of bytes every so often while slow

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.held = False
        self._conns: list[tuple[bytearray, asyncio.Event, list[int]]] = []
        self._slow_bps = 0.0
        self._slow_until = 0.0
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> HoldingRelay:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        conn = (bytearray(), asyncio.Event(), [0])  # buffer, data waiting, bytes to let through at once
        self._conns.append(conn)
        self._spawn(self._pump(reader, up_writer))  # to the server: never held
        self._spawn(self._fill(up_reader, conn))
        self._spawn(self._drain(conn, writer))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    @staticmethod
    async def _fill(reader: asyncio.StreamReader, conn) -> None:
        buffer, ready, _ = conn
        while data := await reader.read(65536):
            buffer += data
            ready.set()

    async def _drain(self, conn, writer: asyncio.StreamWriter) -> None:
        buffer, ready, at_once = conn
        while True:
            await ready.wait()
            ready.clear()
            while buffer and not self.held:
                slow = time.monotonic() < self._slow_until
                if at_once[0]:
                    n, at_once[0] = at_once[0], 0
                else:
                    n = max(int(self._slow_bps * self.TICK_S), 1) if slow else len(buffer)
                writer.write(bytes(buffer[:n]))
                del buffer[:n]
                await writer.drain()
                if slow:
                    await asyncio.sleep(self.TICK_S)  # the fault's pace: a read's worth at a time
                    ready.set()  # until slow ends: then the rest at once

    def hold(self) -> None:
        self.held = True

    def release(self, slow_bps: float, slow_for_s: float) -> None:
        """What was held goes through at once; what comes next at ``slow_bps`` bytes a
        second for ``slow_for_s`` seconds, then at once again."""
        self._slow_bps, self._slow_until = slow_bps, time.monotonic() + slow_for_s
        for buffer, ready, at_once in self._conns:
            at_once[0] = len(buffer)
            ready.set()
        self.held = False


async def test_two_second_coordinator_pause_loses_nobody(cluster):
    """SIGSTOP the coordinator for 2 s while 50 generators keep heartbeating, then let it
    read its backlog slowly, a read at a time (HoldingRelay), as a loaded one does: it
    meets some generators' beats seconds late while others' are still unread, and must not
    call anyone lost for it. The rule before (no beat seen for 2.2 s, unless nobody's
    beat came for 1.1 s) declared most of them lost here."""
    import signal

    async with HoldingRelay(cluster.port) as relay:
        # a lease long enough that the stall does not also cost the leadership (which
        # pauses the run and forgives everyone): the registry's judgement is under test
        coord = cluster.coordinator(SURGE_NATS_URL=cluster.url.replace(str(cluster.port), str(relay.port)),
                                    SURGE_LEASE_S="30")
        nc, sim, api = await simulated(cluster, 50, ["home"], "pause")
        try:
            started = await api.start(plans.plan(SIM, rate=10 * 50, duration=8))
            await until(lambda: sim.acked.total() >= 50 * 10 * 2, 20, "two seconds acknowledged")
            relay.hold()
            coord.popen.send_signal(signal.SIGSTOP)
            await asyncio.sleep(2.0)  # the fault itself: the coordinator's loop does not run
            coord.popen.send_signal(signal.SIGCONT)
            # the backlog at once; then for 2.5 s, 15 KB/s: the generators' next beats
            # reach it one by one, the last of them ~1.5 s after the first
            relay.release(slow_bps=15_000, slow_for_s=2.5)
            report = await _report(api, started.run_id)
            record = await api.get(started.run_id)
            lost = [e for e in report.events if "lost" in e]
            assert not lost, lost
            assert record.epoch == 1, ("shares were moved although nobody left", report.events)
            await until(lambda: sim.in_flight == 0, 20, "every interval answered")
            assert report.totals.requests == sim.acked.total()
        finally:
            await sim.stop()
            await api.close()
            await nc.close()


async def simulated(cluster, n: int, names: list[str], prefix: str, **options):
    """A connection, once the cluster's (last) coordinator has started (its buckets exist
    then); ``n`` generators played by ``bench.simulator`` (``options``: its ``deaf``); a
    client that sees all of them."""
    from bench.simulator import Simulator
    from tests.conftest import api_with

    await [p for p in cluster.procs if p.name.startswith("coordinator")][-1].said("started", 20)
    nc = await nats.connect(cluster.url, pending_size=64 * 1024 * 1024)
    sim = Simulator(nc, n, names, prefix=prefix, **options)
    await sim.start()
    return nc, sim, await api_with(cluster, n)


async def _beat_forever(nc, ids: list[str], state: dict[str, str | None]) -> None:
    from schemas.control import Heartbeat

    kv = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
    while True:
        for gid in ids:
            run_id = state.get(gid)
            beat = Heartbeat(id=gid, host="h", pid=1, cores=1, version="t", started_at=0.0,
                             sent_at=time.time(), capacity_rps=100.0,
                             state="running" if run_id else "idle", run_id=run_id)
            await kv.put(gid, msgspec.json.encode(beat))
        await asyncio.sleep(0.5)  # a generator's heartbeat period: the pace, not a wait


def _interval(run_id: str, gid: str, seq: int):
    """A simulated generator's final interval ``seq``: 10 requests."""
    from bench.simulator import encoded_histograms
    from schemas.stats import IntervalStats, RequestInterval

    lat, svc = encoded_histograms(10)[seq % 8]
    return IntervalStats(run_id=run_id, generator_id=gid, epoch=1, seq=seq, target=10.0,
                         sent=10, in_flight=0, final=True,
                         requests={"home": RequestInterval(count=10, latency=lat, service=svc)})


@contextlib.asynccontextmanager
async def _late_run(cluster, store, duration: float):
    """An in-process coordinator whose report writes go through ``store(report, real_store)``
    (a test holds one there), g-a and g-b played by their heartbeats alone, and a run of
    theirs at 20/s for ``duration`` s. Yields the run: ``api``, ``coord``, ``run_id`` and
    ``send(gid, seq)``, which delivers one final interval of 10 requests and returns the
    coordinator's error code ("" when acknowledged)."""
    from services.common.client import CoordinatorClient
    from services.coordinator.config import Config as CoordinatorConfig
    from services.coordinator.service import Service as CoordinatorService
    from tests.conftest import generators_registered

    coord = CoordinatorService(CoordinatorConfig(nats_url=cluster.url, start_delay_s=0.3))
    await coord.start()
    real_store = coord.store.store_report  # the RunStore every run of coord writes through
    coord.store.store_report = lambda report: store(report, real_store)
    nc = await nats.connect(cluster.url)
    ids, state = ["g-a", "g-b"], {}
    beats = asyncio.create_task(_beat_forever(nc, ids, state))
    api = await CoordinatorClient.connect(cluster.url)
    try:
        await generators_registered(api, 2)
        started = await api.start(plans.plan(SIM, name="late", rate=20, duration=duration, timeout=0.2))
        run_id = started.run_id
        state.update({g: run_id for g in ids})

        async def send(gid: str, seq: int) -> str:
            msg = await nc.request(subjects.stats(run_id, gid),
                                   msgspec.json.encode(_interval(run_id, gid, seq)), timeout=10)
            return msg.headers.get("Nats-Service-Error-Code", "") if msg.headers else ""

        yield SimpleNamespace(api=api, coord=coord, run_id=run_id, send=send)
    finally:
        beats.cancel()
        await api.close()
        await nc.close()
        await coord.stop()


async def test_an_interval_arriving_while_the_report_is_built_is_in_the_report(cluster):
    """g-b sends its final interval; g-a is late, so the run finishes by its deadline.
    While the report is being stored, g-a's interval arrives: it is refused with a 5xx
    (kept by the generator) or taken into the report, never acknowledged and dropped."""
    building, release = asyncio.Event(), asyncio.Event()

    async def store_when_released(report, real_store):
        building.set()
        await release.wait()
        return await real_store(report)

    async with _late_run(cluster, store_when_released, duration=1) as run:
        try:
            acked = 0
            assert await run.send("g-b", 0) == ""
            acked += 10
            await asyncio.wait_for(building.wait(), 20)  # the deadline passed: report under way
            code = await run.send("g-a", 0)
            assert code == "" or code.startswith("5"), code
            acked += 10 if code == "" else 0
            release.set()
            while code.startswith("5"):  # the generator's outbox: send again until taken
                await asyncio.sleep(0.1)  # its resend back-off, as the generator's own
                code = await run.send("g-a", 0)
                if code == "":
                    acked += 10
            assert acked == 20

            async def counted():
                try:
                    report = await run.api.report(run.run_id)
                except Exception:
                    return None
                return report if report.totals.requests == acked else None

            report = await until(counted, 10, "a stored report with every acknowledged request")
            assert report.generators["g-a"].requests == 10
        finally:
            release.set()  # before the coordinator stops: it may be holding a report


async def _noticed_within_3s(nc, started, gid: str) -> dict:
    """The run's first event naming ``gid``, which must come within 3 s of the start."""
    events = await Heard.subscribe(nc, subjects.events(started.run_id),
                                   lambda msg: (time.time(), msgspec.json.decode(msg.data)))
    at, event = await events.first(lambda te: gid in te[1]["event"], 10, f"an event about {gid}")
    assert at - started.start_at < 3.0, f"noticed {at - started.start_at:.1f} s after start"
    return event


async def test_a_member_that_never_runs_its_assignment_is_noticed_within_3s(cluster):
    """One of five generators heartbeats but ignores its assignment (sends nothing)."""
    cluster.coordinator()
    nc, sim, api = await simulated(cluster, 5, ["home"], "deaf", deaf={"deaf-0003"})
    try:
        started = await api.start(plans.plan(SIM, rate=10 * 5, duration=5))
        await _noticed_within_3s(nc, started, "deaf-0003")
        report = await _report(api, started.run_id)
        record = await api.get(started.run_id)
        assert "deaf-0003" not in record.generators  # its share moved to the others
        assert record.epoch >= 2
        assert any(entry.gap for entry in report.timeline)  # the seconds are marked
        assert report.totals.requests == sim.acked.total()
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


async def test_a_member_that_says_it_runs_but_sends_nothing_is_noticed_within_3s(cluster):
    """One of five generators follows its assignment and beats "running" but sends no
    interval (its stats never reach the coordinator). Before, nothing said so: the run
    finished "pass" with a fifth of its load missing, no event, no gap."""
    cluster.coordinator()
    nc, sim, api = await simulated(cluster, 5, ["home"], "mute", mute={"mute-0002"})
    try:
        started = await api.start(plans.plan(SIM, rate=10 * 5, duration=6))
        event = await _noticed_within_3s(nc, started, "mute-0002")
        assert "sends no intervals" in event["event"], event
        report = await _report(api, started.run_id)
        record = await api.get(started.run_id)
        assert "mute-0002" not in record.generators  # its share moved to the others
        assert any(entry.gap for entry in report.timeline)
        lost = [e for e in report.events if "mute-0002" not in e and ("lost" in e or "sends" in e)]
        assert not lost, lost  # the four that send are left alone
        assert report.totals.requests == sim.acked.total()
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


async def test_late_intervals_that_come_together_amend_the_report_together(cluster):
    """Five intervals arrive after the report, at once, while an amended report is being
    stored: all are in the report, acknowledged, and it was rebuilt twice, not five
    times (a thousand late finals must not be a thousand rebuilds with the intake
    waiting behind each)."""
    stored, release, storing = [], asyncio.Event(), Changes()

    async def counted_store(report, real_store):
        stored.append(report.totals.requests)
        storing.changed()
        if len(stored) == 2:  # the first amendment: held while the others come
            await release.wait()
        return await real_store(report)

    async with _late_run(cluster, counted_store, duration=2) as run:
        try:
            assert await run.send("g-b", 0) == ""
            await _report(run.api, run.run_id)  # g-a never sent: finished by the deadline, 10 requests
            assert stored == [10]
            first = asyncio.create_task(run.send("g-a", 0))
            await storing.until(lambda: len(stored) == 2, 10, "the first amendment being stored")
            rest = [asyncio.create_task(run.send(g, s)) for g, s in (("g-a", 1), ("g-a", 2), ("g-b", 1), ("g-b", 2))]
            await until(lambda: run.coord.ended[run.run_id]._amended == 5, 10, "the others counted")
            release.set()
            assert await asyncio.gather(first, *rest) == [""] * 5
            assert stored == [10, 20, 60]  # the report, then one rebuild for the four together
            assert (await run.api.report(run.run_id)).totals.requests == 60
        finally:
            release.set()  # before the coordinator stops: it may be holding a report
