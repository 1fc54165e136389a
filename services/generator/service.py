"""The generator service: registry heartbeat, assignment reconciling, stats delivery.

It owns the NATS connection. Load itself is the ``Engine``'s; this module only
turns assignments into engine calls and intervals into acknowledged messages.
Intervals stay in the outbox until the coordinator acknowledges them, so a
coordinator restart or takeover loses no counts.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import socket
import time

import msgspec
import nats.errors
import psutil
import structlog
from nats.js.kv import KV_DEL, KV_PURGE
from nats.micro import add_service

from schemas import subjects
from schemas.control import Assignment, Heartbeat
from schemas.plan import Plan
from schemas.stats import EpochChange, IntervalStats, StatsAck
from schemas.tryout import SendOnceResult
from services.common import bus, logs
from services.common.runner import cancel_tasks
from services.common.identity import VERSION, default_id
from services.plan import profile
from services.generator.config import Config
from services.generator.cpumeter import CpuMeter, engine_cores
from services.generator.load import LoadEngine, engine_for
from services.generator.pacing import start_schedule
from services.generator.workers import WorkerPool
from services.generator.ready import mark_not_ready, mark_ready
from services.generator.runlog import RunLog, log_second, publisher
from services.generator.capacity import Capacity, CapacityMeter, usable_cores

log = structlog.get_logger(__name__)

_assignment_decoder = msgspec.json.Decoder(Assignment)
_ack_decoder = msgspec.json.Decoder(StatsAck)
SEND_SPREAD_S = 0.3  # intervals go out over the first 0.3 s of each second (by position)
RETRY_5XX = 240  # ~2 minutes of "try again" for one interval, then it is given up


def arrivals_of(a: Assignment) -> dict:
    """How this generator's arrivals sit among the run's: generator k of n at phase k/n
    (the merged stream is the plan's, docs/engine.md), or its own seeded Poisson process."""
    slot = None
    if a.count > 1 and a.phase is not None:  # shares differ: own a slice of the plan's stream
        slot = (a.phase, min(a.phase + a.share, 1.0))
    return {"phase": a.index / a.count if a.count > 1 else 0.0, "slot": slot,
            "arrivals": a.plan.arrivals, "seed": (a.plan.seed << 16) + a.index}


async def sleep_until(deadline: float, stopping: asyncio.Event) -> bool:
    """Sleep until ``time.monotonic()`` reaches ``deadline``; True if ``stopping`` was set
    first. Never returns before the deadline otherwise: uvloop's timers count whole
    milliseconds and fire up to ~1 ms early (1 in 5 sleeps measured). The run's end came
    that early: pacing stopped at that moment, so the arrivals due in the last fraction
    of a millisecond were neither sent nor counted dropped — a report 1-2 requests short
    of its schedule at 2,000/s, without a word (seen under load in test_fleet's split)."""
    while True:
        delay = deadline - time.monotonic()
        if delay <= 0:
            return stopping.is_set()
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return True
        except TimeoutError:
            pass  # early or on time: the loop's check decides


class RunTask:
    """One assignment being carried out: the engine plus the per-second interval clock."""

    def __init__(self, service: Service, assignment: Assignment, after_seq: int | None = None) -> None:
        # when the assignment came, not when its engine is built: building one (a flow
        # plan's compiled steps, its first imports) can take longer than the start delay
        # on a busy machine, and a member assigned before the start is not a late joiner
        self.received_at = time.time()
        self.service = service
        self.a = assignment
        self.loop = asyncio.get_running_loop()
        self.engine: LoadEngine = engine_for(assignment, self.loop, service.workers)
        self.schedule = start_schedule(assignment.profile, assignment.share, **arrivals_of(assignment))
        self.end_s = min(profile.duration(assignment.profile), service.config.max_run_s)
        self.t0 = time.monotonic() + (assignment.start_at - time.time())  # engine clock
        self.stopping = asyncio.Event()
        self.stop_s: float | None = None
        self.prev_count = 0
        self.last_rps = 0.0
        self.changes: list[EpochChange] = []  # reported with the next interval
        self.error: str | None = None  # why the run failed here (sent with the final interval)
        self.task: asyncio.Task | None = None
        # taken back into a run it had finished here (lost, then joined again): its
        # seconds go on after the last one it sent, never under a number already sent
        self.after_seq = after_seq
        self.last_seq = -1  # the newest second this task has emitted

    def start(self) -> None:
        self.first_seq = 0
        if self.received_at > self.a.start_at:  # joined a running test: start from now, do not catch up
            joined_s = time.monotonic() - self.t0
            self.schedule = start_schedule(self.a.profile, self.a.share, from_s=joined_s,
                                           **arrivals_of(self.a))
            self.first_seq = int(joined_s)
        if self.after_seq is not None:
            self.first_seq = max(self.first_seq, self.after_seq + 1)
        self.service.capacity_meter.mark()  # idle time is not load's cost
        self.engine.start(self.schedule, self.t0)
        self.task = self.loop.create_task(self._intervals(), name=f"run-{self.a.run_id}")

    def update(self, a: Assignment, written_at: float | None = None) -> None:
        """A newer epoch: follow its profile × share from now, or stop."""
        self.a = a
        self.engine.reassign(a)
        now_s = self.engine.now_s()
        if a.stop:
            self.stop(now_s)
            return
        how = arrivals_of(a)
        self.schedule = self.schedule.rebased(max(now_s, 0.0), a.profile, a.share,
                                              phase=how["phase"], slot=how["slot"])
        self.end_s = min(profile.duration(a.profile), self.service.config.max_run_s)
        self.engine.rebase(self.schedule)
        # the interval that carries this says how long the change took to reach the wire
        self.changes.append(EpochChange(epoch=a.epoch, written_at=written_at, applied_at=time.time()))

    def stop(self, at_s: float | None = None) -> None:
        if self.stop_s is None:
            self.stop_s = self.engine.now_s() if at_s is None else at_s
            self.engine.stop_pacing()
            self.stopping.set()

    def target_rps(self) -> float:
        return profile.rate_at(self.a.profile, self.engine.now_s()) * self.a.share

    async def _sleep_until(self, rel_s: float) -> bool:
        """Sleep until run time ``rel_s``; True if woken early by a stop."""
        return await sleep_until(self.t0 + rel_s, self.stopping)

    async def _intervals(self) -> None:
        k = self.first_seq
        if not await self._sleep_until(float(k)):
            self.service.cpu.take()  # the CPU of this run's first second counts from here
        try:
            while True:
                boundary = float(k + 1)
                if boundary >= self.end_s:
                    await self._sleep_until(self.end_s)
                    break
                if await self._sleep_until(boundary):
                    break
                await self.engine.gather()  # the worker processes' part of this second
                stats = self._emit(k, boundary, send=False)
                await self._sleep_until(boundary + self.send_spread_s())  # wakes early on a stop
                self.service.enqueue(stats)
                k += 1
            end = self.end_s if self.stop_s is None else min(self.stop_s, self.end_s)
            await self.engine.drain(self.a.plan.timeout)
            self._emit(k, max(end, 0.0), final=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:1000]
            log.exception("run failed", run_id=self.a.run_id)
            self._emit(k, self.engine.now_s(), final=True)
        finally:
            self.service.run_finished(self)

    def send_spread_s(self) -> float:
        """When, after each second's boundary, this generator sends the second's interval:
        spread by its position so that a thousand generators do not all send at once."""
        return SEND_SPREAD_S * self.a.index / max(self.a.count, 1)

    def _emit(self, seq: int, boundary_s: float, final: bool = False,
              send: bool = True) -> IntervalStats:
        self.last_seq = max(self.last_seq, seq)
        count = math.ceil(self.schedule.count_at(boundary_s) - 1e-9)
        target, self.prev_count = max(count - self.prev_count, 0), max(count, self.prev_count)
        interval = self.engine.take_interval()
        self.last_rps = float(interval.completed())
        if not final:
            self.service.capacity_meter.observe_second(int(self.last_rps))
        stats = interval.to_stats(
            self.engine.names,
            run_id=self.a.run_id,
            generator_id=self.service.id,
            epoch=self.a.epoch,
            seq=seq,
            target=target,
            in_flight=self.engine.in_flight(),
            final=final,
        )
        svc = self.service  # its CPU this second: the report's hosts section
        stats = msgspec.structs.replace(stats, changes=self.changes, cpu_pct=svc.cpu.take(),
                                        cpu_cores=svc.cores, host=svc.host)
        self.changes = []
        if final and self.error:
            stats = msgspec.structs.replace(stats, error=self.error)
        log_second(stats, interval.why, closed=self.a.plan.model == "closed")
        if send:
            self.service.enqueue(stats)
        return stats


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.id = config.generator_id or default_id()
        self.host = config.host_name or socket.gethostname()
        self.started_at = time.time()
        self.outbox: collections.deque[IntervalStats] = collections.deque()
        self._retries = 0  # 5xx answers for the interval at the head of the outbox
        self._outbox_ready = asyncio.Event()
        self.run: RunTask | None = None
        self.epoch = 0
        # run id -> (the epoch it finished at, the last second it sent): an assignment of
        # that run with a newer epoch takes this generator back in (lost, then joined)
        self.finished_runs: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._tasks: list[asyncio.Task] = []
        self._closed = asyncio.Event()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self.cpu = CpuMeter()  # per interval, for the report's hosts section
        self.cores = engine_cores(config.workers)
        self.log = log.bind(generator_id=self.id)
        self.labels = config.labels()
        self.runlog: RunLog | None = None
        self.capacity = Capacity(usable_cores(config.workers))
        self.capacity_meter = CapacityMeter(self.capacity)
        self.workers = WorkerPool(config.workers) if config.workers > 1 else None

    async def start(self) -> None:
        if self.workers is not None:
            await self.workers.start()
        self._rewatch = asyncio.Event()  # set on reconnect: the watch's consumer may be gone
        self._beat_now = asyncio.Event()  # set on reconnect: register again at once
        self._watch_deliveries = 0  # assignment entries the watch has handed us
        self._watch_revision = 0  # the newest KV revision among them
        self.nc = await bus.connect(
            self.config.nats_url, f"surge-generator {self.id}", on_reconnect=self._on_reconnect
        )
        js = self.nc.jetstream()
        self.runlog = RunLog(self.id, self.config.log_lines_per_s, publisher(self.nc))
        logs.add_tap(self.runlog)
        self.registry = await bus.key_value(
            js, subjects.GENERATORS_BUCKET, ttl_s=self.config.registry_ttl_s
        )
        self.assignments = await bus.key_value(js, subjects.ASSIGN_BUCKET)
        self.micro = await add_service(
            self.nc,
            name=subjects.GENERATOR_SERVICE,
            version=VERSION,
            description="Surge load generator",
            metadata={"generator_id": self.id, "host": self.host},
        )
        await self.micro.add_endpoint(  # the request builder's "send once" (tryout.py)
            name="send_once", subject=subjects.send_once(self.id),
            handler=bus.endpoint(self._send_once, "send_once"))
        if self.workers is not None:  # no run (no registration) before every engine can send
            await self.workers.ready()
        await bus.patient(self._beat, "heartbeat")  # a JetStream cluster may still be electing
        mark_ready(self.config.ready_file)  # registered: ready
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._watch_loop(), name="watch"),
            asyncio.create_task(self._send_loop(), name="send"),
        ]

    async def wait(self) -> None:
        await self._closed.wait()

    async def _send_once(self, req) -> SendOnceResult:
        from services.generator import tryout

        return await tryout.send_once(bus.decode(req.data, Plan), self.id)

    async def stop(self) -> None:
        mark_not_ready(self.config.ready_file)
        if self.run is not None:
            self.run.stop()
            if self.run.task is not None:
                await asyncio.wait({self.run.task}, timeout=self.run.a.plan.timeout + 1)
        # give the coordinator a moment to take the last intervals (if the bus is there)
        deadline = time.monotonic() + 2.0
        while self.outbox and self.nc.is_connected and time.monotonic() < deadline:
            self._outbox_ready.set()
            await asyncio.sleep(0.05)
        await cancel_tasks(self._tasks)
        if self.runlog is not None:
            logs.remove_tap(self.runlog)
        # bounded whatever NATS does (it may be going down with us): then closed
        await bus.disconnect(self.nc, lambda: self.registry.delete(self.id), self.micro.stop,
                             logger=self.log)
        if self.workers is not None:
            await self.workers.close()
        self._closed.set()

    # --- registry ------------------------------------------------------------
    def heartbeat(self) -> Heartbeat:
        run = self.run
        cores = len(os.sched_getaffinity(0)) or 1  # the pod's cores, not the node's
        return Heartbeat(
            id=self.id,
            host=self.host,
            pid=os.getpid(),
            cores=cores,
            version=VERSION,
            started_at=self.started_at,
            sent_at=time.time(),
            # one engine per core does ~20k/s with room to spare (docs/engine.md)
            # SURGE_CAPACITY_RPS, else measured CPU per request × usable cores (capacity.py)
            capacity_rps=self.config.capacity_rps or self.capacity.rps(),
            cpu_us_per_request=self.capacity.cpu_us_per_request(),
            state="running" if run else "idle",
            run_id=run.a.run_id if run else None,
            epoch=run.a.epoch if run else 0,
            target_rps=round(run.target_rps(), 3) if run else 0.0,
            achieved_rps=run.last_rps if run else 0.0,
            in_flight=run.engine.in_flight() if run else 0,
            cpu_percent=self._proc.cpu_percent(None),
            workers=self.config.workers,
            labels=self.labels,
        )

    async def _beat(self) -> None:
        await self.registry.put(self.id, msgspec.json.encode(self.heartbeat()))

    async def _heartbeat_loop(self) -> None:
        """A beat every ``heartbeat_s`` from the start of the last one, and one at once
        after a reconnect. Each request is bounded by the period: a request in flight when
        NATS went away never gets its answer, and nats-py's 5-s timeout held the loop that
        long — a live generator silent past the coordinator's 2.2 s, declared lost after
        a NATS restart and hot-added again a few seconds later."""
        period = self.config.heartbeat_s
        due = time.monotonic() + period
        while True:
            try:
                await asyncio.wait_for(self._beat_now.wait(), max(due - time.monotonic(), 0.0))
            except TimeoutError:
                pass
            self._beat_now.clear()
            due = time.monotonic() + period
            for step in (self._beat, self._resync):
                try:
                    await asyncio.wait_for(step(), period)
                except Exception as exc:
                    self.log.warning("heartbeat failed", error=str(exc) or type(exc).__name__)

    async def _resync(self) -> None:
        """Read the assignment again: a missed watch update must not leave us on an old epoch.

        The answer may be older than what the watch has delivered meanwhile (the read
        was issued before the assignment was written, the watch started the run before
        the answer came): an answer that crossed a watch delivery is ignored, and an
        entry older than the watch's latest revision never overrides it.
        """
        deliveries = self._watch_deliveries
        try:
            entry = await self.assignments.get(self.id)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if self._watch_deliveries != deliveries:
            return  # the watch spoke while we asked: its news is at least as new
        if entry is not None and entry.value:
            if (entry.revision or 0) >= self._watch_revision:
                self._on_assignment(entry.value)
        elif self.run is not None and not self.run.stopping.is_set():
            self.log.info("assignment removed", run_id=self.run.a.run_id)
            self.run.stop()

    # --- assignments ---------------------------------------------------------
    async def _on_reconnect(self) -> None:
        self._rewatch.set()
        self._beat_now.set()

    async def _watch_loop(self) -> None:
        def on_entry(entry, replay: bool) -> None:
            self._watch_deliveries += 1
            self._watch_revision = max(self._watch_revision, entry.revision or 0)
            if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                if self.run is not None:
                    self.run.stop()
                return
            created = entry.created.timestamp() if entry.created is not None else None
            self._on_assignment(entry.value, created)

        await bus.watch_kv(self.assignments, self.id, on_entry, self._rewatch, "assignment")

    def _on_assignment(self, data: bytes, written_at: float | None = None) -> None:
        try:
            a = _assignment_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises both
            self.log.error("bad assignment ignored", error=str(exc)[:200])
            return
        a = self._tagged(a)
        run = self.run
        if run is not None and run.a.run_id == a.run_id:
            if a.epoch > run.a.epoch:
                self.log.info("assignment update", run_id=a.run_id, epoch=a.epoch,
                              share=a.share, stop=a.stop)
                run.update(a, written_at)
            return
        done = self.finished_runs.get(a.run_id)
        if a.stop or a.end_at <= time.time() or (done is not None and a.epoch <= done[0]):
            return
        if run is not None:
            run.stop()  # a newer run replaces it; its final interval still goes out
        self.log.info("run assigned" if done is None else "run assigned again", run_id=a.run_id,
                      epoch=a.epoch, share=a.share, generator=f"{a.index + 1} of {a.count}")
        try:
            task = RunTask(self, a, after_seq=None if done is None else done[1])
            task.start()
        except Exception as exc:  # the engine could not even start: say why, and be done
            self.log.exception("run could not start", run_id=a.run_id)
            self._failed_to_start(a, f"{type(exc).__name__}: {exc}"[:1000])
            return
        self.run = task
        if self.runlog is not None:
            self.runlog.run_id = a.run_id

    def _tagged(self, a: Assignment) -> Assignment:
        """The plan with this generator's header added (SURGE_GENERATOR_HEADER), so the
        target can count what each generator sent; a plan's own header of that name wins."""
        name = self.config.generator_header
        if not name or any(k.lower() == name.lower() for k in a.plan.headers):
            return a
        plan = msgspec.structs.replace(a.plan, headers={name: self.id, **a.plan.headers})
        return msgspec.structs.replace(a, plan=plan)

    def _failed_to_start(self, a: Assignment, error: str) -> None:
        """One final, empty interval that carries the reason to the run's events."""
        self.finished_runs[a.run_id] = (a.epoch, 0)
        self.enqueue(IntervalStats(
            run_id=a.run_id, generator_id=self.id, epoch=a.epoch, seq=0, target=0.0, sent=0,
            in_flight=0, requests={}, final=True, error=error,
        ))

    def run_finished(self, run: RunTask) -> None:
        self.finished_runs[run.a.run_id] = (run.a.epoch, run.last_seq)
        self.finished_runs.move_to_end(run.a.run_id)
        while len(self.finished_runs) > 100:
            self.finished_runs.popitem(last=False)
        if self.run is run:
            self.run = None
            if self.runlog is not None:
                self.runlog.run_id = None
            # say "idle" now, not at the next beat: a next run may be waiting for us
            beat = asyncio.get_running_loop().create_task(self._beat())
            beat.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.log.info("run finished", run_id=run.a.run_id, error=run.error or "none")

    # --- stats delivery --------------------------------------------------------
    def enqueue(self, stats: IntervalStats) -> None:
        self.outbox.append(stats)
        while len(self.outbox) > self.config.outbox_max:
            lost = self.outbox.popleft()
            self.log.error("outbox full: oldest interval dropped", run_id=lost.run_id, seq=lost.seq)
        self._outbox_ready.set()

    async def _send_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self.outbox:
                stats = self.outbox[0]
                subject = subjects.stats(stats.run_id, self.id)
                try:
                    msg = await self.nc.request(subject, msgspec.json.encode(stats), timeout=2.0)
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                        nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                    await asyncio.sleep(0.5)  # no coordinator right now: keep and retry
                    continue
                except Exception as exc:
                    self.log.warning("stats send failed", error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                code = msg.headers.get("Nats-Service-Error-Code", "") if msg.headers else ""
                if code.startswith("5") and self._retries < RETRY_5XX:
                    # the coordinator could not take it *now* (not leader yet, its store
                    # is electing a leader): keep it; 4xx means the interval itself is bad
                    self._retries += 1
                    await asyncio.sleep(0.5)
                    continue
                self._retries = 0
                if code:
                    self.log.error("coordinator refused interval", run_id=stats.run_id,
                                   seq=stats.seq, error=msg.data[:200].decode(errors="replace"))
                else:
                    try:
                        _ack_decoder.decode(msg.data)
                    except msgspec.DecodeError:
                        self.log.error("bad stats ack", data=msg.data[:200])
                self.outbox.popleft()
