"""The coordinator service: the ``surge-coordinator`` API, the registry, stats intake.

It owns the NATS connection and the JetStream buckets. Each API endpoint decodes
its request once (``bus.decode``) and hands a typed value to a small handler;
runs themselves live in ``runs.Run``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, ObjectNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE
from nats.micro import add_service
from nats.micro.request import Request

from schemas import subjects
from schemas.control import (
    Assignment,
    Empty,
    GeneratorList,
    PlanValid,
    RateChange,
    RunList,
    RunListRequest,
    RunRecord,
    RunRef,
    RunStarted,
    Ok,
)
from schemas.errors import BadRequest, Conflict, InvalidPlan, NoGenerators, NotFound
from schemas.plan import Plan
from schemas.stats import IntervalStats, Report, StatsAck
from services.common import bus, histogram, profile
from services.coordinator import plans, slicing
from services.coordinator.config import Config
from services.coordinator.registry import Registry
from services.coordinator.runs import Run

log = structlog.get_logger(__name__)

VERSION = "0.1.0"
_record_decoder = msgspec.json.Decoder(RunRecord)
_assignment_decoder = msgspec.json.Decoder(Assignment)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry(config.dead_after_s)
        self.runs: dict[str, Run] = {}  # active runs
        self._tasks: list[asyncio.Task] = []
        self._closed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        self.nc = await bus.connect(self.config.nats_url, "surge-coordinator")
        js = self.nc.jetstream()
        self.generators_kv = await bus.key_value(
            js, subjects.GENERATORS_BUCKET, ttl_s=self.config.registry_ttl_s
        )
        self.assignments = await bus.key_value(js, subjects.ASSIGN_BUCKET)
        self.runs_kv = await bus.key_value(js, subjects.RUNS_BUCKET)
        self.reports = await bus.object_store(js, subjects.REPORTS_STORE)
        self._tasks.append(asyncio.create_task(self._watch_registry(), name="registry"))
        self.micro = await add_service(
            self.nc,
            name=subjects.COORDINATOR_SERVICE,
            version=VERSION,
            description="Surge coordinator: runs, slicing, merged stats, reports",
        )
        handlers = {
            "run_start": self.run_start,
            "run_stop": self.run_stop,
            "run_rate": self.run_rate,
            "run_get": self.run_get,
            "run_list": self.run_list,
            "plan_validate": self.plan_validate,
            "generators_list": self.generators_list,
            "report_get": self.report_get,
        }
        for name, subject in subjects.API_ENDPOINTS.items():
            await self.micro.add_endpoint(
                name=name, subject=subject, handler=bus.endpoint(handlers[name], name)
            )
        await self.micro.add_endpoint(
            name="stats_ingest",
            subject=subjects.STATS_ALL,
            handler=bus.endpoint(self.stats_ingest, "stats_ingest"),
        )

    async def wait(self) -> None:
        await self._closed.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for run in list(self.runs.values()):
            if run._task is not None:
                run._task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.micro.stop()
            await self.nc.drain()
        except Exception as exc:
            log.warning("unclean disconnect", error=str(exc))
        self._closed.set()

    # --- helpers used by runs -------------------------------------------------------
    async def save_record(self, record: RunRecord) -> None:
        await self.runs_kv.put(record.run_id, msgspec.json.encode(record))

    async def store_report(self, report: Report) -> None:
        await self.reports.put(report.run_id, msgspec.json.encode(report))

    async def publish(self, subject: str, message: Any) -> None:
        await self.nc.publish(subject, msgspec.json.encode(message))

    def publish_nowait(self, subject: str, message: Any) -> None:
        asyncio.get_running_loop().create_task(self.publish(subject, message))

    async def clear_assignment(self, gid: str, run_id: str) -> None:
        """Remove a generator's assignment if it still belongs to this run."""
        try:
            entry = await self.assignments.get(gid)
            if entry.value and _assignment_decoder.decode(entry.value).run_id == run_id:
                await self.assignments.delete(gid)
        except KeyNotFoundError:
            pass
        except Exception as exc:
            log.warning("could not clear assignment", generator_id=gid, error=str(exc))

    def busy_generators(self) -> set[str]:
        return {g for run in self.runs.values() for g in run.shares}

    def idle_generators(self) -> list[str]:
        busy = self.busy_generators()
        return sorted(
            gid for gid, beat in self.registry.alive().items()
            if gid not in busy and beat.state == "idle"
        )

    def run_ended(self, run: Run) -> None:
        self.runs.pop(run.run_id, None)

    async def _watch_registry(self) -> None:
        while True:
            try:
                watcher = await self.generators_kv.watchall()
                replay = True
                async for entry in watcher:
                    if entry is None:
                        replay = False
                        continue
                    deleted = entry.operation in (KV_DEL, KV_PURGE)
                    self.registry.update(entry.key, None if deleted else entry.value, replay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry watch failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    # --- API ----------------------------------------------------------------------
    def _plan_from(self, data: bytes) -> Plan:
        if len(data) > plans.MAX_PLAN_BYTES:
            raise InvalidPlan(f"plan is larger than {plans.MAX_PLAN_BYTES} bytes")
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidPlan(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidPlan("JSON nested too deeply") from None
        plan = plans.from_obj(raw)
        plans.check_target_allowed(plan, self.config.target_allow)
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

    async def plan_validate(self, req: Request) -> PlanValid:
        plan = self._plan_from(req.data)
        prof = profile.from_plan(plan)
        return PlanValid(
            ok=True,
            plan=plan,
            duration_s=profile.duration(prof),
            peak_rps=profile.peak(prof),
            total_requests=round(profile.arrivals(prof, 0, profile.duration(prof)), 3),
        )

    async def run_start(self, req: Request) -> RunStarted:
        plan = self._plan_from(req.data)
        idle = {g: self.registry.alive()[g].capacity_rps for g in self.idle_generators()}
        if not idle:
            raise NoGenerators("no idle generators are registered")
        if plan.generators is not None and len(idle) < plan.generators:
            raise NoGenerators(
                f"plan asks for {plan.generators} generators; {len(idle)} idle", "generators"
            )
        chosen = slicing.pick(idle, plan.generators)
        shares = slicing.shares({g: idle[g] for g in chosen})
        prof = profile.from_plan(plan)
        now = time.time()
        start_at = now + self.config.start_delay_s
        record = RunRecord(
            run_id=new_run_id(),
            plan=plan,
            state="starting",
            created_at=now,
            start_at=start_at,
            end_at=start_at + profile.duration(prof),
            profile=prof,
            epoch=1,
            generators=shares,
            target_rps=profile.rate_at(prof, 0.0),
        )
        run = Run(self, record)
        self.runs[record.run_id] = run
        await run.launch()
        log.info("run started", run_id=record.run_id, plan=plan.name, generators=len(shares))
        return RunStarted(
            run_id=record.run_id, start_at=record.start_at, end_at=record.end_at,
            target_rps=record.target_rps, generators=shares,
        )

    def _active(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise Conflict(f"run {run_id} is not running") if run_id else NotFound("no run id")
        return run

    async def _record(self, run_id: str) -> RunRecord:
        run = self.runs.get(run_id)
        if run is not None:
            return run.record
        try:
            entry = await self.runs_kv.get(run_id)
        except KeyNotFoundError:
            raise NotFound(f"no run {run_id}", "run_id") from None
        return _record_decoder.decode(entry.value)

    async def run_stop(self, req: Request) -> Ok:
        ref = bus.decode(req.data, RunRef)
        await self._record(ref.run_id)  # 404 for unknown runs, 409 for ended ones
        epoch = await self._active(ref.run_id).stop()
        return Ok(run_id=ref.run_id, epoch=epoch)

    async def run_rate(self, req: Request) -> Ok:
        change = bus.decode(req.data, RateChange)
        if change.rate > self.config.max_rate:
            raise BadRequest(f"rate above the limit of {self.config.max_rate:g}/s", "rate")
        await self._record(change.run_id)
        epoch = await self._active(change.run_id).change_rate(change.rate)
        return Ok(run_id=change.run_id, epoch=epoch)

    async def run_get(self, req: Request) -> RunRecord:
        return await self._record(bus.decode(req.data, RunRef).run_id)

    async def run_list(self, req: Request) -> RunList:
        q = bus.decode(req.data, RunListRequest, empty_ok=True)
        records: dict[str, RunRecord] = {}
        try:
            keys = await self.runs_kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            keys = []
        for key in keys:
            try:
                entry = await self.runs_kv.get(key)
                records[key] = _record_decoder.decode(entry.value)
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
        for run in self.runs.values():
            records[run.run_id] = run.record
        runs = sorted(records.values(), key=lambda r: r.created_at, reverse=True)
        if q.state is not None:
            runs = [r for r in runs if r.state == q.state]
        return RunList(runs=runs[: q.limit])

    async def generators_list(self, req: Request) -> GeneratorList:
        bus.decode(req.data, Empty, empty_ok=True)
        beats = self.registry.alive()
        return GeneratorList(generators=[beats[k] for k in sorted(beats)])

    async def report_get(self, req: Request) -> bytes:
        ref = bus.decode(req.data, RunRef)
        try:
            result = await self.reports.get(ref.run_id)
        except ObjectNotFoundError:
            record = await self._record(ref.run_id)
            raise Conflict(f"run {ref.run_id} is {record.state}; no report yet") from None
        return result.data

    async def stats_ingest(self, req: Request) -> StatsAck:
        stats = bus.decode(req.data, IntervalStats)
        run = self.runs.get(stats.run_id)
        if run is None:
            raise NotFound(f"run {stats.run_id} is not running here", "run_id")
        try:
            run.add_stats(stats)
        except histogram.HistogramDecodeError as exc:
            raise BadRequest(str(exc), "requests") from None
        return StatsAck(ok=True, seq=stats.seq)
