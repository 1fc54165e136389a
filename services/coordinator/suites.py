"""Phased suites on the coordinator: definitions, suite runs, and the leader's stepping loop.

A suite run is a list of steps fixed when it starts (test, version, rate), kept in KV
``surge_suites`` (key ``run.<id>``) and moved on by the leader: start a step's run (id
``<suite run id>-<n>``, so a new leader can tell whether it was started), wait for its
verdict, pause, next. With ``stop_on_fail`` the first failed verdict skips the rest.
Every change is written with compare-and-set, so a takeover continues where it was.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import ENDED_STATES, Empty, RunRecord
from schemas.errors import BadRequest, Conflict, NoGenerators, NotFound, SurgeError
from schemas.schedules import (
    Suite,
    SuiteList,
    SuiteRun,
    SuiteRunRef,
    SuiteRunRequest,
    SuiteSave,
    SuiteStep,
)
from services.common import bus
from services.coordinator import firing

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)
_suite = msgspec.json.Decoder(Suite)
_run = msgspec.json.Decoder(SuiteRun)
_record = msgspec.json.Decoder(RunRecord)
NO_GENERATORS_PATIENCE_S = 30.0  # generators of the previous step may still be winding down
LISTED_RUNS = 50


def new_suite_run_id() -> str:
    import secrets

    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-u" + secrets.token_hex(3)


class Suites:
    def __init__(self, svc: Service, kv: KeyValue) -> None:
        self.svc = svc
        self.kv = kv
        self.active: dict[str, tuple[SuiteRun, int]] | None = None  # id -> (run, KV revision)
        self.waiting_since: dict[str, float] = {}  # step run id -> first "no generators"
        self.term = -1

    # --- storage ------------------------------------------------------------------
    async def get_suite(self, name: str) -> Suite:
        try:
            return _suite.decode((await self.kv.get(f"def.{firing.slug(name)}")).value)
        except KeyNotFoundError:
            raise NotFound(f"no suite named {name!r}", "suite") from None

    async def _runs(self) -> dict[str, tuple[SuiteRun, int]]:
        try:
            keys = [k for k in await bus.kv_keys(self.kv) if k.startswith("run.")]
        except NoKeysError:
            return {}
        out = {}
        for key in keys:
            try:
                entry = await self.kv.get(key)
                run = _run.decode(entry.value)
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
            out[run.id] = (run, entry.revision)
        return out

    async def exists(self, run_id: str) -> bool:
        try:
            await self.kv.get(f"run.{run_id}")
            return True
        except KeyNotFoundError:
            return False

    # --- API ------------------------------------------------------------------------
    async def suite_save(self, ask: SuiteSave) -> Suite:
        if ask.mode == "stages" and (len(ask.tests) != 1 or not ask.rates):
            raise BadRequest("a suite in stages names one test and its rates", "rates")
        for name in ask.tests:
            await self.svc.catalogue.latest(name)
        suite = Suite(name=ask.name, mode=ask.mode, tests=list(ask.tests), rates=list(ask.rates),
                      pause_s=ask.pause_s, stop_on_fail=ask.stop_on_fail, overrides=ask.overrides,
                      author=ask.author, saved_at=time.time())
        await self.kv.put(f"def.{firing.slug(ask.name)}", msgspec.json.encode(suite))
        return suite

    async def suite_list(self, _: Empty) -> SuiteList:
        try:
            keys = [k for k in await bus.kv_keys(self.kv) if k.startswith("def.")]
        except NoKeysError:
            keys = []
        suites = []
        for key in sorted(keys):
            try:
                suites.append(_suite.decode((await self.kv.get(key)).value))
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
        runs = sorted((r for r, _ in (await self._runs()).values()), key=lambda r: r.started_at,
                      reverse=True)
        return SuiteList(suites=suites, runs=runs[:LISTED_RUNS])

    async def suite_run(self, ask: SuiteRunRequest) -> SuiteRun:
        return await self.start(ask.name, new_suite_run_id(), author=ask.author)

    async def suite_get(self, ref: SuiteRunRef) -> SuiteRun:
        try:
            return _run.decode((await self.kv.get(f"run.{ref.id}")).value)
        except KeyNotFoundError:
            raise NotFound(f"no suite run {ref.id}", "id") from None

    async def start(self, name: str, run_id: str, author: str = "anonymous",
                    schedule: str | None = None) -> SuiteRun:
        """Fix the steps of a suite run and store it; the loop starts its first step."""
        suite = await self.get_suite(name)
        steps: list[SuiteStep] = []
        if suite.mode == "stages":
            test, _ = await self.svc.catalogue.latest(suite.tests[0])
            for i, rate in enumerate(suite.rates):
                steps.append(SuiteStep(test=test.name, version=test.version, rate=rate,
                                       run_id=f"{run_id}-{i + 1}"))
        else:
            names = list(suite.tests) or [
                t.name for t in (await self.svc.catalogue.summaries()) if t.suite == suite.name]
            for i, test_name in enumerate(names):
                test, _ = await self.svc.catalogue.latest(test_name)
                steps.append(SuiteStep(test=test.name, version=test.version,
                                       run_id=f"{run_id}-{i + 1}"))
        if not steps:
            raise BadRequest(f"suite {name!r} has no tests", "suite")
        run = SuiteRun(id=run_id, suite=suite.name, state="running", steps=steps,
                       pause_s=suite.pause_s, stop_on_fail=suite.stop_on_fail,
                       started_at=time.time(), schedule=schedule, author=author)
        try:
            revision = await self.kv.create(f"run.{run_id}", msgspec.json.encode(run))
        except KeyWrongLastSequenceError:
            raise Conflict(f"suite run {run_id} exists") from None
        if self.active is not None:
            self.active[run_id] = (run, revision)
        await self._event(run, f"suite {suite.name} started ({len(steps)} steps) by {author}")
        return run

    # --- the leader's loop --------------------------------------------------------------
    async def tick(self) -> None:
        term = self.svc.lease.term if self.svc.lease else 0
        if self.active is None or term != self.term:
            self.active = {k: v for k, v in (await self._runs()).items() if v[0].state == "running"}
            self.term = term
        for run_id in list(self.active):
            run, revision = self.active[run_id]
            try:
                new = await self._advance(run)
            except SurgeError as err:
                log.warning("suite step failed", suite_run=run_id, error=err.message)
                continue
            if new is run:
                continue
            try:
                revision = await self.kv.update(f"run.{run_id}", msgspec.json.encode(new), last=revision)
            except KeyWrongLastSequenceError:  # written elsewhere: read it again next time
                self.active = None
                return
            if new.state == "running":
                self.active[run_id] = (new, revision)
            else:
                del self.active[run_id]

    async def _advance(self, run: SuiteRun) -> SuiteRun:
        now = time.time()
        steps = list(run.steps)
        i = next((k for k, s in enumerate(steps) if s.state in ("pending", "running")), None)
        if i is None:
            return self._ended(run, steps, now)
        step = steps[i]
        if step.state == "running":
            record = await self._record(step.run_id)
            if record is None:  # waiting in the quota queue, or denied there
                waiting = await self.svc.quotas.entry(step.run_id)
                if waiting is not None and waiting.state in ("denied", "failed"):
                    steps[i] = msgspec.structs.replace(step, state="error", ended_at=now,
                                                       error=waiting.decisions[-1].what)
                    steps = [s if s.state != "pending" else msgspec.structs.replace(s, state="skipped")
                             for s in steps]
                    await self._event(run, f"step {i + 1} ({step.test}) {waiting.decisions[-1].what}")
                    return msgspec.structs.replace(self._ended(run, steps, now), state="error")
                return run
            if record.state not in ENDED_STATES:
                return run
            passed = record.verdict == "pass" and record.state != "failed"
            steps[i] = msgspec.structs.replace(step, state="passed" if passed else "failed",
                                               verdict=record.verdict,
                                               ended_at=record.ended_at or now)
            await self._event(run, f"step {i + 1} ({step.test} v{step.version}) "
                                   f"{'passed' if passed else 'failed'}: run {step.run_id}")
            if not passed and run.stop_on_fail:
                steps = [s if s.state != "pending" else msgspec.structs.replace(s, state="skipped")
                         for s in steps]
                return self._ended(run, steps, now)
            return msgspec.structs.replace(run, steps=steps)
        # pending: after the pause that follows the previous step
        previous_end = steps[i - 1].ended_at if i > 0 else None
        if previous_end is not None and now < previous_end + run.pause_s:
            return run
        if await self._record(step.run_id) is None:
            try:
                suite = await self._suite_or_none(run.suite)
                await self.svc.catalogue.start_test(
                    step.test, step.version, suite.overrides if suite else None,
                    run_id=step.run_id, rate=step.rate, author=run.author)
            except NoGenerators:
                first = self.waiting_since.setdefault(step.run_id, now)
                if now - first < NO_GENERATORS_PATIENCE_S:
                    return run
                raise
            except SurgeError as err:
                steps[i] = msgspec.structs.replace(step, state="error", ended_at=now,
                                                   error=f"{err.code}: {err.message}")
                await self._event(run, f"step {i + 1} ({step.test}) could not start: {err.message}")
                steps = [s if s.state != "pending" else msgspec.structs.replace(s, state="skipped")
                         for s in steps]
                return msgspec.structs.replace(self._ended(run, steps, now), state="error")
            self.waiting_since.pop(step.run_id, None)
        steps[i] = msgspec.structs.replace(step, state="running", started_at=now)
        await self._event(run, f"step {i + 1} of {len(steps)}: {step.test} v{step.version}"
                               + (f" at {step.rate:g}/s" if step.rate else "") + f", run {step.run_id}")
        return msgspec.structs.replace(run, steps=steps)

    def _ended(self, run: SuiteRun, steps: list[SuiteStep], now: float) -> SuiteRun:
        ok = all(s.state == "passed" for s in steps)
        return msgspec.structs.replace(run, steps=steps, state="passed" if ok else "failed",
                                       ended_at=now)

    async def _suite_or_none(self, name: str) -> Suite | None:
        try:
            return await self.get_suite(name)
        except NotFound:
            return None

    async def _record(self, run_id: str) -> RunRecord | None:
        active = self.svc.runs.get(run_id)
        if active is not None:
            return active.record
        try:
            return _record.decode((await self.svc.runs_kv.get(run_id)).value)
        except KeyNotFoundError:
            return None

    async def _event(self, run: SuiteRun, text: str) -> None:
        log.info("suite", suite_run=run.id, what=text)
        try:
            await self.svc.publish(subjects.suite_events(run.id),
                                   {"suite_run": run.id, "suite": run.suite, "at": time.time(),
                                    "event": text})
        except Exception as exc:
            log.warning("suite event not published", error=str(exc))
