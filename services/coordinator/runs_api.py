"""The coordinator API rows that steer and read runs: stop, rate, a generator started, get, list.

Each handler is named after its row of ``schemas/api.py`` (``Service.handler_of`` finds
it here); it acts on a run the service holds (``Service.runs``) or reads what is stored
(``Service._record``, the runs bucket, the reports store). Starting a run stays in
``Service.start_plan``: the catalogue, schedules, suites and the queue start runs too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import KeyNotFoundError, ObjectNotFoundError

from schemas.control import (
    Empty,
    GeneratorList,
    GeneratorStart,
    Ok,
    RateChange,
    RunList,
    RunListRequest,
    RunRecord,
    RunRef,
    StopRequest,
)
from schemas.errors import BadRequest, Conflict, NotFound
from services.common import bus

if TYPE_CHECKING:
    from services.coordinator.runs import Run
    from services.coordinator.service import Service

_record_decoder = msgspec.json.Decoder(RunRecord)


class RunsApi:
    """The API rows that act on one run or read runs (see the module docstring)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def _active(self, run_id: str) -> Run:
        run = self.svc.runs.get(run_id)
        if run is None:
            raise Conflict(f"run {run_id} is not running") if run_id else NotFound("no run id")
        return run

    async def run_stop(self, ref: StopRequest) -> Ok:
        await self.svc._record(ref.run_id)  # 404 for unknown runs, 409 for ended ones
        run = self._active(ref.run_id)
        if ref.generator is not None:
            epoch = await run.stop_generator(ref.generator, ref.by)
        else:
            epoch = await run.stop(ref.by)
        return Ok(run_id=ref.run_id, epoch=epoch)

    async def run_rate(self, change: RateChange) -> Ok:
        if change.rate > self.svc.config.max_rate:
            raise BadRequest(f"rate above the limit of {self.svc.config.max_rate:g}/s", "rate")
        await self.svc._record(change.run_id)
        run = self._active(change.run_id)
        if change.generator is not None:
            epoch = await run.set_generator_rate(change.generator, change.rate, change.by)
        else:
            epoch = await run.change_rate(change.rate, change.by)
        return Ok(run_id=change.run_id, epoch=epoch)

    async def run_generator_start(self, ask: GeneratorStart) -> Ok:
        await self.svc._record(ask.run_id)
        epoch = await self._active(ask.run_id).start_generator(ask.generator, ask.by)
        return Ok(run_id=ask.run_id, epoch=epoch)

    async def run_get(self, ref: RunRef) -> RunRecord:
        return await self.svc._record(ref.run_id)

    async def run_list(self, q: RunListRequest) -> RunList:
        records: dict[str, RunRecord] = {}
        try:
            keys = await bus.kv_keys(self.svc.runs_kv)
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            keys = []
        for key in keys:
            try:
                entry = await self.svc.runs_kv.get(key)
                records[key] = _record_decoder.decode(entry.value)
            except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError):
                continue
        for run in self.svc.runs.values():
            records[run.run_id] = run.record
        runs = sorted(records.values(), key=lambda r: r.created_at, reverse=True)
        if q.state is not None:
            runs = [r for r in runs if r.state == q.state]
        return RunList(runs=runs[: q.limit])

    async def generators_list(self, _: Empty) -> GeneratorList:
        beats = self.svc.registry.alive()
        return GeneratorList(generators=[beats[k] for k in sorted(beats)])

    async def report_get(self, ref: RunRef) -> bytes:
        """The report as stored (``Report`` JSON): passed on, not decoded and encoded again."""
        try:
            result = await self.svc.reports.get(ref.run_id)
        except ObjectNotFoundError:
            record = await self.svc._record(ref.run_id)
            raise Conflict(f"run {ref.run_id} is {record.state}; no report yet") from None
        return result.data
