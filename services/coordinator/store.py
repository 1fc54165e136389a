"""``RunStore``: everything a ``Run`` keeps durable or says on the bus, and nothing else.

The one seam between a run and NATS (httpx's transport seam): the run record (KV
``surge_runs``), the assignments (KV ``surge_assign``), the run log (stream
``SURGE_RUNLOG``: intervals before they are acknowledged, run events), the report (object
store ``surge_reports``), and the run's messages (live snapshots, events). A ``Run`` is
given a store, not the service; the service keeps lifecycle, leadership and the API.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError, ObjectNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from schemas import subjects
from schemas.control import ENDED_STATES, Assignment, RunEvent, RunRecord
from schemas.stats import IntervalStats, Report
from services.common import runlogs
from services.coordinator.baseline import Against

log = structlog.get_logger(__name__)

_record = msgspec.json.Decoder(RunRecord)
_assignment = msgspec.json.Decoder(Assignment)
_interval = msgspec.json.Decoder(IntervalStats)
_event = msgspec.json.Decoder(RunEvent)
_report = msgspec.json.Decoder(Report)


class RunStore:
    def __init__(
        self, nc: Client, js: JetStreamContext, runs: KeyValue, assignments: KeyValue,
        reports: ObjectStore,
        against: Callable[[RunRecord], Awaitable[Against | None]] | None = None,
    ) -> None:
        self.nc, self.js = nc, js
        self.runs, self.assignments, self.reports = runs, assignments, reports
        self._against = against  # the archive's: what a run's report is judged against

    # --- the run record -----------------------------------------------------------
    async def save_record(self, record: RunRecord) -> None:
        await self.runs.put(record.run_id, msgspec.json.encode(record))

    async def unfinished_records(self) -> list[RunRecord]:
        """Every run record not in an ended state (what a new leader takes over)."""
        try:
            keys = await self.runs.keys()
        except NoKeysError:  # an empty bucket; anything else (a timeout) fails the recovery
            return []
        records = []
        for key in keys:
            try:
                record = _record.decode((await self.runs.get(key)).value)
            except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError):
                continue
            if record.state not in ENDED_STATES:
                records.append(record)
        return records

    # --- assignments --------------------------------------------------------------
    async def put_assignment(self, gid: str, assignment: Assignment) -> None:
        await self.assignments.put(gid, msgspec.json.encode(assignment))

    async def clear_assignment(self, gid: str, run_id: str) -> None:
        """Remove a generator's assignment if it still belongs to this run."""
        try:
            entry = await self.assignments.get(gid)
            if entry.value and _assignment.decode(entry.value).run_id == run_id:
                await self.assignments.delete(gid)
        except KeyNotFoundError:
            pass
        except Exception as exc:
            log.warning("could not clear assignment", generator_id=gid, error=str(exc))

    async def live_epochs(self, run_id: str) -> dict[str, int]:
        """generator id -> epoch of every assignment of this run that is not a stop."""
        try:
            keys = await self.assignments.keys()
        except NoKeysError:
            keys = []
        epochs: dict[str, int] = {}
        for gid in keys:
            try:
                a = _assignment.decode((await self.assignments.get(gid)).value)
            except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError, TypeError):
                continue
            if a.run_id == run_id and not a.stop:
                epochs[gid] = a.epoch
        return epochs

    # --- the run log --------------------------------------------------------------
    async def persist(self, subject: str, data: bytes, msg_id: str) -> None:
        """Into the run log, acknowledged by JetStream (deduplicated by ``msg_id``; an
        interval's subject and id: ``Run.runlog_entry``)."""
        await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})

    async def last_words(self, run_id: str, gid: str) -> str:
        """``; its last error: ...``: the newest warning or error a lost generator shipped
        for the run (SURGE_LOGS), often why it died; "" when there is none."""
        try:
            line = await asyncio.wait_for(runlogs.last_trouble(self.js, run_id, gid), 1.5)
        except Exception:  # the stream is slow or away: the event goes out without
            return ""
        return f"; its last {line.level}: {line.message[:300]}" if line else ""

    async def log_event(self, run_id: str, event: RunEvent) -> None:
        await self.persist(subjects.runlog_event(run_id), msgspec.json.encode(event),
                           f"{run_id}:e:{event.t}:{zlib.crc32(event.event.encode()):x}")

    async def replay(self, run_id: str) -> list[IntervalStats | RunEvent]:
        """Every entry of one run's log, oldest first; an entry that does not decode is
        skipped (one bad entry must not cost the rest of the run)."""
        subject = subjects.runlog_of_run(run_id)
        info = await self.js.stream_info(subjects.RUNLOG_STREAM, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        if not total:
            return []
        sub = await self.js.subscribe(
            subject, stream=subjects.RUNLOG_STREAM, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        msgs = []
        try:
            while len(msgs) < total:
                msg = await sub.next_msg(timeout=5.0)
                msgs.append(msg)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        entries: list[IntervalStats | RunEvent] = []
        for msg in msgs:
            try:
                is_event = msg.subject == subjects.runlog_event(run_id)
                entries.append(_event.decode(msg.data) if is_event else _interval.decode(msg.data))
            except Exception as exc:
                log.warning("run log entry skipped", run_id=run_id, error=str(exc))
        return entries

    async def forget_log(self, run_id: str) -> None:
        """Drop a run's log (retention removed the run: nothing can amend it any more)."""
        try:
            await self.js.purge_stream(subjects.RUNLOG_STREAM, subject=subjects.runlog_of_run(run_id))
        except Exception as exc:
            log.warning("could not purge the run log", run_id=run_id, error=str(exc))

    # --- the report ----------------------------------------------------------------
    async def against(self, record: RunRecord) -> Against | None:
        """What a run's report is judged against (its test, the test's baseline report),
        read before the report is built; None for a run of no test, or when it cannot be
        read (the report goes out without its comparison rather than not at all)."""
        if self._against is None:
            return None
        try:
            return await self._against(record)
        except Exception:
            log.exception("baseline comparison failed", run_id=record.run_id)
            return None

    async def stored_report(self, run_id: str) -> Report | None:
        """A run's report as stored; None when it has none (not ended, or removed)."""
        try:
            return _report.decode((await self.reports.get(run_id)).data)
        except ObjectNotFoundError:
            return None

    async def store_report(self, report: Report) -> Report:
        """Store a run's report as it was built; the report as stored."""
        await self.reports.put(report.run_id, msgspec.json.encode(report))
        return report

    # --- what the run says on the bus -------------------------------------------------
    async def publish(self, subject: str, message: Any) -> None:
        await self.nc.publish(subject, msgspec.json.encode(message))

    def publish_nowait(self, subject: str, message: Any) -> None:
        asyncio.get_running_loop().create_task(self.publish(subject, message))
