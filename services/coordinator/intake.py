"""Stats intake: every interval counted at once, made durable in flight, acked in batches.

An interval is checked and merged as soon as it arrives; its run-log write is
published asynchronously (JetStream acknowledges it later), and the generator's
acknowledgement waits for that write. Intervals from many generators are merged
while earlier writes are in flight: the coordinator never idles on a round trip.
Whatever cannot be made durable in time gets a 503, and the generator keeps it in its
outbox and sends it again (the aggregate counts each (generator, seq) once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.micro.request import Request

from schemas import subjects
from schemas.errors import BadRequest, NotLeader, SurgeError, Unavailable
from schemas.stats import IntervalStats, MergedPartial, StatsAck
from services.common import bus, histogram
from services.coordinator.aggregate import BadInterval

if TYPE_CHECKING:
    from services.coordinator.runs import Run
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)

ACK_TIMEOUT_S = 5.0  # a run-log write not acknowledged by then: 503, the generator resends

_Pending = tuple[Request, "Run", IntervalStats, asyncio.Future]
_ANSWERING = object()  # an interval that answers itself (a late one: Intake._late)
_ANSWERED = object()  # refused: the error is the answer


@contextlib.contextmanager
def _refused_as_bad_request(field: str = "requests") -> Iterator[None]:
    """A histogram or interval the aggregate refuses is the sender's error: 400 naming
    the field."""
    try:
        yield
    except histogram.HistogramDecodeError as exc:
        raise BadRequest(str(exc), field) from None
    except BadInterval as exc:
        raise BadRequest(str(exc), exc.field) from None


async def _or_error_reply(req: Request, work: Awaitable, what: str, **context) -> object:
    """``await work``; a ``SurgeError`` is answered as itself, anything else as an
    internal error (logged as ``what``). Returns ``_ANSWERED`` when it answered."""
    try:
        return await work
    except SurgeError as err:
        await bus.respond_error(req, err)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception(what, **context)
        await bus.respond_error(req, SurgeError(f"internal error: {type(exc).__name__}"))
    return _ANSWERED


class Intake:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._acker: asyncio.Task | None = None
        self._late_tasks: set[asyncio.Task] = set()
        self.in_flight = 0

    def start(self) -> None:
        if self._acker is None:
            self._acker = asyncio.create_task(self._ack_batches(), name="stats-acks")

    async def stop(self) -> None:
        for task in list(self._late_tasks):
            task.cancel()
        if self._acker is not None:
            self._acker.cancel()
            await asyncio.gather(self._acker, return_exceptions=True)
            self._acker = None

    async def handle(self, req: Request) -> None:
        """The ``stats_ingest`` endpoint: answers now (errors, resends) or once durable."""
        pending = await _or_error_reply(req, self._take(req), "stats intake failed")
        if pending is _ANSWERING or pending is _ANSWERED:
            return
        if pending is None:
            await _ack(req)
            return
        self.in_flight += 1
        future = pending[3]
        # answered as soon as its own write is acknowledged (not after the slowest of a
        # batch); what is done meanwhile is answered together by _ack_batches
        future.add_done_callback(lambda _: self._pending.put_nowait(pending))
        asyncio.get_running_loop().call_later(ACK_TIMEOUT_S, future.cancel)  # no-op once done

    async def _take(self, req: Request) -> _Pending | object | None:
        if not self.svc.leading():
            raise NotLeader("this coordinator is not the leader right now; retry")
        stats = bus.decode(req.data, IntervalStats)
        if req.subject != subjects.stats(stats.run_id, stats.generator_id):
            raise BadRequest("run_id/generator_id differ from the subject", "generator_id")
        run = self.svc.run_of(stats.run_id)
        if run.report is not None or run.finishing:  # around the report: on their own, so
            task = asyncio.create_task(self._late(req, run, stats))  # they amend it together
            self._late_tasks.add(task)
            task.add_done_callback(self._late_tasks.discard)
            return _ANSWERING
        with _refused_as_bad_request():
            if not run.accept(stats):
                return None  # in the run log already: a resend
        subject, msg_id = run.runlog_entry(stats)
        try:
            future = await self.svc.js.publish_async(
                subject, req.data, headers={"Nats-Msg-Id": msg_id}, wait_stall=ACK_TIMEOUT_S)
        except Exception as exc:  # counted, not durable: no ack, it comes again
            raise Unavailable(f"run log not writable right now: {exc or type(exc).__name__}") from None
        return req, run, stats, future

    async def _late(self, req: Request, run: Run, stats: IntervalStats) -> None:
        """An interval of a run whose report is being written (503) or stored (an
        amendment, answered once the amended report is stored)."""
        if await _or_error_reply(req, self._ingest_late(run, stats, req.data),
                                 "late interval failed", run_id=stats.run_id) is not _ANSWERED:
            await _ack(req, stats.seq)

    @staticmethod
    async def _ingest_late(run: Run, stats: IntervalStats, data: bytes) -> None:
        with _refused_as_bad_request():
            await run.ingest(stats, data)

    async def merged(self, req: Request) -> StatsAck:
        """``merged_ingest``: a merger worker's partial aggregate (its rows are durable)."""
        partial = bus.decode(req.data, MergedPartial)
        run = self.svc.run_of(partial.run_id)
        with _refused_as_bad_request("seconds"):
            await run.take_merged(partial)
        return StatsAck(ok=True, seq=partial.n)

    async def _ack_batches(self) -> None:
        """Answer every interval whose run-log write has completed since the last round."""
        while True:
            batch = [await self._pending.get()]  # writes acknowledged (or failed, or timed out)
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            for req, run, stats, future in batch:
                self.in_flight -= 1
                try:
                    if future.cancelled() or future.exception() is not None:
                        why = "timed out" if future.cancelled() else str(future.exception())
                        await bus.respond_error(req, Unavailable(f"run log write failed: {why}"))
                        continue
                    await run.made_durable(stats)
                    await _ack(req, stats.seq)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("acknowledging an interval failed", run_id=stats.run_id)


async def _ack(req: Request, seq: int | None = None) -> None:
    if seq is None:
        seq = msgspec.json.decode(req.data, type=IntervalStats).seq
    await req.respond(msgspec.json.encode(StatsAck(ok=True, seq=seq)))
