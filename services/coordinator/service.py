"""The coordinator service: the ``surge-coordinator`` API, the registry, stats intake.

It owns the NATS connection and the JetStream buckets. The API is the table in
``schemas/api.py``: each row's request is decoded at the edge (``bus.typed``) and its
handler, named after the row, takes the typed request and returns the typed reply: here
(starting a run, the plan check), in ``runs_api.RunsApi`` (stopping, steering, reading runs)
or in the class that owns a noun (catalogue, schedules, suites, archive, quotas); runs
themselves live in ``runs.Run``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE
from nats.micro import add_service
from nats.micro.request import Request

from schemas import api, subjects
from schemas.control import (
    ENDED_STATES,
    Lease,
    PlanValid,
    RunRecord,
    RunStarted,
)
from schemas.errors import (
    Conflict,
    InvalidPlan,
    NoGenerators,
    NotFound,
    NotLeader,
    SurgeError,
    Unavailable,
)
from schemas.host import HostSample
from schemas.plan import Plan
from schemas.stats import Report
from services.common import bus, labels
from services.common.runner import cancel_tasks
from services.common.identity import VERSION, default_id
from services.plan import profile
from services.coordinator import recovery, slicing
from services.plan import loader
from services.coordinator.intake import Intake
from services.coordinator.archive import Archive
from services.coordinator.catalogue import Catalogue
from services.coordinator.runs_api import RunsApi
from services.coordinator.quotas import Quotas
from services.coordinator.schedules import Scheduler
from services.coordinator.suites import Suites
from services.coordinator.config import Config
from services.coordinator.leader import LeaderLease
from services.coordinator.registry import Registry
from services.coordinator.runs import Run
from services.coordinator.store import RunStore

log = structlog.get_logger(__name__)

ENDED_KEPT = 20  # ended runs kept in memory for late intervals (any other one is reopened)
BUS_CLOCK_EVERY_S = 0.2  # an overdue member: the bus's time asked for at most this often
LOOP_STALL_S = 0.25  # an oversleep longer than this is counted as the coordinator's stall
_record_decoder = msgspec.json.Decoder(RunRecord)
_host_decoder = msgspec.json.Decoder(HostSample)


def _decode_plan(data: bytes) -> Plan:
    """A plan request's body: its errors are ``invalid_plan``, naming the field."""
    if len(data) > loader.MAX_PLAN_BYTES:
        raise InvalidPlan(f"plan is larger than {loader.MAX_PLAN_BYTES} bytes")
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidPlan(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidPlan("JSON nested too deeply") from None
    return loader.from_obj(raw)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry(config.dead_after_s)
        self._clock_task: asyncio.Task | None = None  # ask_bus_time's stamp in flight
        self._clock_asked_at = 0.0
        self.intake = Intake(self)
        self.runs_api = RunsApi(self)  # the API rows that steer and read runs (runs_api.py)
        self.runs: dict[str, Run] = {}  # active runs
        self.ended: dict[str, Run] = {}  # recently ended runs, oldest first
        self._reopening: dict[str, asyncio.Task] = {}  # ended runs being reopened (Run.reopen)
        self._tasks: list[asyncio.Task] = []
        self._closed = asyncio.Event()
        self.id = config.coordinator_id or default_id()
        self.micro: Any = None
        self.lease: LeaderLease | None = None
        self._leading: asyncio.Task | None = None
        self._rewatch = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        self.nc = await bus.connect(
            c.nats_url, f"surge-coordinator {self.id}", on_reconnect=self._on_reconnect
        )
        js = self.js = self.nc.jetstream()
        r = c.kv_replicas
        self.generators_kv = await bus.key_value(
            js, subjects.GENERATORS_BUCKET, ttl_s=c.registry_ttl_s, replicas=r
        )
        self.assignments = await bus.key_value(js, subjects.ASSIGN_BUCKET, replicas=r)
        self.runs_kv = await bus.key_value(js, subjects.RUNS_BUCKET, replicas=r)
        self.reports = await bus.object_store(js, subjects.REPORTS_STORE, replicas=r)
        self.catalogue = Catalogue(self, await bus.key_value(js, subjects.TESTS_BUCKET, replicas=r))
        self.scheduler = Scheduler(
            self, await bus.key_value(js, subjects.SCHEDULES_BUCKET, replicas=r),
            await bus.key_value(js, subjects.FIRES_BUCKET, replicas=r))
        self.suites = Suites(self, await bus.key_value(js, subjects.SUITES_BUCKET, replicas=r))
        self.archive = Archive(self, await bus.key_value(js, subjects.ARCHIVE_BUCKET, replicas=r))
        self.store = RunStore(self.nc, js, self.runs_kv, self.assignments, self.reports,
                              against=self.archive.against)
        self.quotas = Quotas(self, await bus.key_value(js, subjects.QUEUE_BUCKET, replicas=r))
        self._tasks.append(asyncio.create_task(self._schedule_loop(), name="schedules"))
        leader_kv = await bus.key_value(js, subjects.LEADER_BUCKET, ttl_s=c.lease_s, replicas=r)
        await bus.stream(js, subjects.RUNLOG_STREAM, [subjects.RUNLOG_ALL],
                         c.runlog_max_age_s, replicas=r)
        await bus.stream(js, subjects.LOGS_STREAM, [subjects.LOGS_ALL], c.logs_max_age_s,
                         replicas=r, max_bytes=c.logs_max_bytes)
        # standbys keep the registry warm, so a takeover does not mistake every
        # generator for dead; they take no stats and answer no API request
        self.intake.start()
        self._tasks.append(asyncio.create_task(self._watch_registry(), name="registry"))
        self._tasks.append(asyncio.create_task(self._watch_health(), name="registry-health"))
        # every monitor's samples, kept by the runs going on here (the report's hosts)
        await self.nc.subscribe(subjects.HOST_ALL, cb=self._on_host_sample)
        await self._serve(leader=False)
        self.lease = LeaderLease(
            leader_kv, self.id, lease_s=c.lease_s, renew_s=c.lease_renew_s,
            on_elected=self._elected, on_lost=self._lost,
        )
        self._tasks.append(asyncio.create_task(self.lease.run(), name="lease"))

    async def _serve(self, leader: bool) -> None:
        """(Re)register the micro service: with every endpoint as leader, none as standby."""
        old, self.micro = self.micro, None
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), 3)
            except Exception as exc:
                log.warning("micro stop failed", error=str(exc))
        micro = await add_service(
            self.nc,
            name=subjects.COORDINATOR_SERVICE,
            version=VERSION,
            description="Surge coordinator: runs, slicing, merged stats, reports",
            metadata={"role": "leader" if leader else "standby", "coordinator_id": self.id},
        )
        if leader:
            for ep in api.ENDPOINTS:  # each row's handler is the method of its name
                decoder = _decode_plan if ep.request is Plan else None
                await micro.add_endpoint(
                    name=ep.name, subject=ep.subject,
                    handler=bus.endpoint(
                        self._gated(bus.typed(ep, self._handler(ep.name), decoder)), ep.name
                    ),
                )
            # not leading right now: 503, and the generator keeps the interval and resends
            if not self.config.mergers:  # else merger workers take them (merger.py)
                await micro.add_endpoint(
                    name="stats_ingest", subject=subjects.STATS_ALL,
                    handler=self.intake.handle,  # answers itself, once the interval is durable
                )
            await micro.add_endpoint(
                name="merged_ingest", subject=subjects.MERGED_ALL,
                handler=bus.endpoint(self._gated(self.intake.merged), "merged_ingest"),
            )
        self.micro = micro

    #: classes besides this one that own nouns of the API, each with handlers named after rows
    API_OWNERS: tuple[type, ...] = (RunsApi, Catalogue, Scheduler, Suites, Archive, Quotas)

    @classmethod
    def handler_of(cls, name: str):
        """The (unbound) method named after an API row: here, or in a class that owns a noun."""
        for owner in (cls, *cls.API_OWNERS):
            if hasattr(owner, name):
                return getattr(owner, name)
        raise AttributeError(f"no handler for API endpoint {name}")

    def _handler(self, name: str):
        """The bound handler of an API row (see ``handler_of``)."""
        for instance in (self, self.runs_api, self.catalogue, self.scheduler, self.suites,
                         self.archive, self.quotas):
            if hasattr(type(instance), name):
                return getattr(instance, name)
        raise AttributeError(f"no handler for API endpoint {name}")

    def _gated(self, handler):
        async def gated(req: Request):
            if not self.leading():
                raise NotLeader("this coordinator is not the leader right now; retry")
            return await handler(req)

        return gated

    async def _elected(self, previous: Lease | None) -> None:
        """Won the lease: recover every unfinished run, then open the API and stats intake."""
        self._leading = asyncio.create_task(self._take_over(previous), name="take-over")

    async def _take_over(self, previous: Lease | None) -> None:
        started = time.monotonic()
        while True:  # NATS may hiccup mid-recovery: retry until done or the lease is lost
            try:
                recovered = await recovery.recover_runs(self.store, self, self.config, previous, self.id)
                break
            except Exception as exc:
                log.warning("recovery failed; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
        # whatever kept the old leader from renewing may have kept heartbeats from us
        # too: every generator gets a fresh dead timer from the takeover on
        self.registry.touch_all(extra_s=self.config.dead_after_s)
        for run in recovered:
            self.runs[run.run_id] = run
            run.resume()
        while True:
            try:
                await self._serve(leader=True)
                break
            except Exception as exc:
                log.warning("could not open the API; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
        log.info("leading", coordinator_id=self.id, recovered=len(recovered),
                 previous=previous.holder if previous else None,
                 took_ms=round((time.monotonic() - started) * 1000))

    async def _lost(self, why: str) -> None:
        """Lost the lease: stop acting at once; the new leader recovers the runs."""
        if self._leading is not None:
            self._leading.cancel()
            await asyncio.gather(self._leading, return_exceptions=True)
            self._leading = None
        for run in list(self.runs.values()):
            run.abandon()
        self.runs.clear()
        try:
            await self._serve(leader=False)
        except Exception as exc:
            log.warning("could not re-register as standby", error=str(exc))

    async def wait(self) -> None:
        await self._closed.wait()

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        await self.intake.stop()
        if self._leading is not None:
            self._leading.cancel()
        for run in list(self.runs.values()):
            run.abandon()
        if self.lease is not None and self.nc.is_connected:  # no bus: a standby waits out its TTL
            try:
                await asyncio.wait_for(self.lease.release(), 2)
            except Exception:
                pass
        # bounded: NATS may be going down at the same time (surge up's Ctrl-C)
        micro = self.micro
        await bus.disconnect(self.nc, *([micro.stop] if micro is not None else []), logger=log)
        self._closed.set()

    # --- what runs see of the coordinator (runs.Fleet), and the bus ------------------
    async def publish(self, subject: str, message: Any) -> None:
        await self.nc.publish(subject, msgspec.json.encode(message))

    def busy_generators(self) -> set[str]:
        return {g for run in self.runs.values() for g in run.shares}

    def idle_generators(self, wanted: dict[str, str] | None = None) -> list[str]:
        """Idle generators, or only those carrying every label in ``wanted`` (a pool)."""
        busy = self.busy_generators()
        return sorted(
            gid for gid, beat in self.registry.alive().items()
            if gid not in busy and beat.state == "idle" and labels.matches(beat.labels, wanted or {})
        )

    def ask_bus_time(self) -> None:
        """Have the bus stamp its time among the beats (registry.py, ``overdue``): a delete
        marker of BUS_CLOCK_KEY, one at a time, at most every BUS_CLOCK_EVERY_S."""
        now = time.monotonic()
        if (self._clock_task is not None and not self._clock_task.done()) \
                or now - self._clock_asked_at < BUS_CLOCK_EVERY_S:
            return
        self._clock_asked_at = now
        self._clock_task = asyncio.create_task(self._stamp_bus_time(), name="bus-clock")

    async def _stamp_bus_time(self) -> None:
        try:  # bounded: an answer lost with a NATS restart must not hold the next one back
            await asyncio.wait_for(self.generators_kv.delete(subjects.BUS_CLOCK_KEY), 1.0)
        except Exception as exc:  # the bus is down or slow: no evidence, nobody judged
            log.info("bus clock not stamped", error=str(exc) or type(exc).__name__)

    def run_ended(self, run: Run) -> None:
        self.runs.pop(run.run_id, None)
        # a late interval of an ended run amends its report (Run.amend) rather than
        # being refused and lost; the last few runs are kept for that, any other one
        # is reopened from what is stored (ended_run)
        self.ended[run.run_id] = run
        while len(self.ended) > ENDED_KEPT:
            self.ended.pop(next(iter(self.ended)))

    def run_of(self, run_id: str) -> Run:
        """The run an interval or a merger's partial belongs to: running, ended here, or
        an ended run reopened from what is stored (after a restart or a change of leader).
        Reopening reads the run's whole log, so it goes on in the background and the
        sender is told 503 meanwhile (the generator keeps the interval and sends it again)."""
        run = self.runs.get(run_id) or self.ended.get(run_id)
        if run is not None:
            return run
        task = self._reopening.get(run_id)
        if task is None:
            if len(self._reopening) >= 64:  # answers nobody came back for (unknown runs)
                for done in [r for r, t in self._reopening.items() if t.done()]:
                    del self._reopening[done]
            task = self._reopening[run_id] = asyncio.create_task(
                self._reopen(run_id), name=f"reopen-{run_id}")
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # read here
        if not task.done():
            raise Unavailable(f"run {run_id} has ended; its report is being reopened for an "
                              "amendment; send again")
        del self._reopening[run_id]  # done: the next interval of an unknown run asks again
        run = task.result()  # raises what _reopen raised: not found, a conflict, 503
        self.run_ended(run)
        return run

    async def _reopen(self, run_id: str) -> Run:
        try:
            record = await self._record(run_id)
        except NotFound:
            raise NotFound(f"run {run_id} is not running here", "run_id") from None
        if record.state not in ENDED_STATES:
            raise NotFound(f"run {run_id} is not running here", "run_id")
        try:
            return await Run.reopen(record, store=self.store, fleet=self, config=self.config)
        except SurgeError:
            raise
        except Exception as exc:  # NATS trouble: the next try reads it again
            log.warning("could not reopen an ended run", run_id=run_id, error=str(exc))
            raise Unavailable(f"run {run_id} could not be reopened: {exc or type(exc).__name__}") from None

    async def _on_reconnect(self) -> None:
        # we were cut off, not the generators: nobody is declared lost for our outage;
        # the server may have lost the watch's consumer, so start it over
        self.registry.touch_all(extra_s=self.config.dead_after_s)
        self._rewatch.set()

    async def _on_host_sample(self, msg) -> None:
        if not self.runs:
            return
        try:
            sample = _host_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("malformed host sample skipped", subject=msg.subject, error=str(exc))
            return
        for run in self.runs.values():
            run.hosts.add_sample(sample)

    def leading(self) -> bool:
        """Only a coordinator that holds the lease right now may act or answer."""
        return self.lease is not None and self.lease.holds() and self.nc.is_connected

    async def _watch_registry(self) -> None:
        def on_entry(entry, replay: bool) -> None:
            deleted = entry.operation in (KV_DEL, KV_PURGE)
            stored = entry.created.timestamp() if entry.created is not None else None
            self.registry.update(entry.key, None if deleted else entry.value, replay, stored)

        await bus.watch_kv(self.generators_kv, ">", on_entry, self._rewatch, "registry")

    async def _watch_health(self) -> None:
        """Heartbeats come every second: a registry silent for longer has a dead watch
        (a JetStream leader change can drop its consumer without any reconnect).

        It also measures this process's own loop lag: time the loop did not run is
        the coordinator's silence, not the generators' (registry.stalled)."""
        last = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.5)
            lag = time.monotonic() - before - 0.5
            if lag > LOOP_STALL_S:
                self.registry.stalled(lag)
                log.warning("event loop stalled", seconds=round(lag, 3))
            if self.registry.quiet_for() > 1.5 and time.monotonic() - last > 2.0:
                last = time.monotonic()
                self._rewatch.set()

    # --- API (one handler per row of schemas/api.py, named after it) ---------------
    def _admit(self, plan: Plan) -> Plan:
        loader.check_target_allowed(plan, self.config.target_allow)
        self._check_limits(plan)
        return plan

    def _check_limits(self, plan: Plan) -> None:
        c = self.config
        prof = profile.from_plan(plan)
        if profile.peak(prof) > c.max_rate:
            raise InvalidPlan(f"rate above this coordinator's limit of {c.max_rate:g}/s", "rate")
        if profile.duration(prof) > c.max_duration_s:
            raise InvalidPlan(f"longer than the limit of {c.max_duration_s:g}s", "duration")
        if plan.connections > c.max_connections:
            raise InvalidPlan(f"more than {c.max_connections} connections", "connections")

    async def plan_validate(self, plan: Plan) -> PlanValid:
        self._admit(plan)
        prof = profile.from_plan(plan)
        return PlanValid(
            ok=True,
            plan=plan,
            duration_s=profile.duration(prof),
            peak_rps=profile.peak(prof),
            total_requests=round(profile.arrivals(prof, 0, profile.duration(prof)), 3),
        )

    async def run_start(self, plan: Plan) -> RunStarted:
        return await self.start_plan(plan)

    async def start_plan(
        self, plan: Plan, *, test: str | None = None, test_version: int | None = None,
        run_id: str | None = None, admitted: bool = False, author: str = "anonymous",
    ) -> RunStarted:
        """Start a run of a plan (run.start, test.run, schedules, suites); ``test`` names its
        origin; a given ``run_id`` (a schedule's fire, a suite's step) is started once.
        Unless ``admitted`` (the queue starting it), the target system's quota may make it
        wait (the reply says ``queued``) or refuse it (quotas.py)."""
        self._admit(plan)
        if run_id is not None and (run_id in self.runs or await self._stored(run_id)):
            raise Conflict(f"run {run_id} exists", "run_id")
        if not admitted:
            run_id = run_id or new_run_id()
            plan, waiting = await self.quotas.admit(plan, run_id, test, test_version, author)
            if waiting is not None:
                return waiting
        alive = self.registry.alive()
        idle = self.idle_generators(plan.generator_labels)
        why = slicing.pool_shortfall(
            plan.generator_labels, plan.generator_count,
            {g: alive[g].labels for g in self.idle_generators()},
            busy=len(alive) - len(self.idle_generators()),
        )
        if why is not None:
            raise NoGenerators(why, "generators")
        caps = {g: alive[g].capacity_rps for g in idle}
        chosen = slicing.pick(caps, plan.generator_count)
        shares = slicing.shares({g: caps[g] for g in chosen})
        run = Run.create(plan, shares, store=self.store, fleet=self, config=self.config,
                         run_id=run_id or new_run_id(), test=test, test_version=test_version)
        record = run.record
        self.runs[record.run_id] = run
        await run.launch()
        log.info("run started", run_id=record.run_id, plan=plan.name, generators=len(shares))
        return RunStarted(
            run_id=record.run_id, start_at=record.start_at, end_at=record.end_at,
            target_rps=record.target_rps, generators=shares, test=test, test_version=test_version,
        )

    async def _stored(self, run_id: str) -> bool:
        try:
            await self.runs_kv.get(run_id)
            return True
        except KeyNotFoundError:
            return False

    def serving(self) -> bool:
        """Leading, and done taking over (the runs of the previous leader are recovered)."""
        return self.leading() and self._leading is not None and self._leading.done()

    async def _schedule_loop(self) -> None:
        """The leader fires schedules and moves suite runs on (schedules.py, suites.py)."""
        while True:
            await asyncio.sleep(0.2)
            if not self.serving():
                continue
            for what in (self.quotas.tick, self.scheduler.tick, self.suites.tick, self.archive.tick):
                try:
                    await what()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduling round failed", what=what.__qualname__)

    async def _record(self, run_id: str) -> RunRecord:
        run = self.runs.get(run_id)
        if run is not None:
            return run.record
        try:
            entry = await self.runs_kv.get(run_id)
        except KeyNotFoundError:
            raise NotFound(f"no run {run_id}", "run_id") from None
        return _record_decoder.decode(entry.value)
