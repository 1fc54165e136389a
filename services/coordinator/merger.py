"""A merger worker: takes a share of the generators' intervals and hands the leader sums.

    SURGE_MERGERS=2 on the coordinator; python -m services.coordinator.merger (twice)

Merger workers subscribe to ``surge.stats.>`` as one NATS queue group, so NATS
spreads the generators' interval requests among them; the leader (started with
``SURGE_MERGERS`` > 0) takes none itself. A worker checks each interval as the
leader would, writes it to the run log (JetStream, deduplicated by the same message
id the leader uses) and acknowledges it to its generator once written. An interval
the run log reports as a duplicate was counted by whoever wrote it first (a resend
that went to another worker), so each is counted once across all workers.

Every ``merger_flush_s`` (0.25 s) a worker sends the leader, per run and second, the rows it took
(the intervals without their histograms) and their histograms summed per request
name: the leader decodes one histogram per name per worker and flush, not one per
generator. Partials are request/reply with resends until the leader acknowledges;
the leader counts a partial once (all its rows seen: a resend) and amends the report
for partials that arrive after it. docs/design.md ("Scale") has the arithmetic.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

import msgspec
import nats.errors
import structlog

from schemas import subjects
from schemas.control import RunRecord
from schemas.errors import BadRequest, SurgeError, Unavailable
from schemas.stats import IntervalStats, MergedHistograms, MergedPartial, MergedSecond, StatsAck
from services.common import bus, histogram
from services.common.runner import cancel_tasks
from services.common.identity import default_id
from services.coordinator.aggregate import BadInterval, check_interval
from services.coordinator.config import Config
from services.plan import profile

log = structlog.get_logger(__name__)

ACK_TIMEOUT_S = 5.0
_record = msgspec.json.Decoder(RunRecord)


class _Second:
    __slots__ = ("rows", "names", "p99")

    def __init__(self) -> None:
        self.rows: list[IntervalStats] = []
        self.names: dict[str, tuple] = {}  # name -> (latency counts, service counts)
        self.p99: dict[str, float | None] = {}


class Merger:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.id = config.merger_id or f"merger-{default_id()}"
        self.records: dict[str, tuple[RunRecord, float]] = {}  # run id -> (record, read at)
        self.known: dict[str, set[str]] = collections.defaultdict(set)  # members seen
        self.pending: dict[str, dict[int, _Second]] = {}  # run -> seq -> what to hand over
        self.outbox: collections.deque[MergedPartial] = collections.deque()
        self.n = 0
        self._writes: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._closed = asyncio.Event()
        self.log = log.bind(merger_id=self.id)

    async def start(self) -> None:
        self.nc = await bus.connect(self.config.nats_url, f"surge-merger {self.id}")
        self.js = self.nc.jetstream()
        self.runs_kv = await bus.key_value(self.js, subjects.RUNS_BUCKET,
                                          replicas=self.config.kv_replicas)
        await bus.stream(self.js, subjects.RUNLOG_STREAM, [subjects.RUNLOG_ALL],
                         self.config.runlog_max_age_s, replicas=self.config.kv_replicas)
        self.sub = await self.nc.subscribe(subjects.STATS_ALL, queue=subjects.MERGER_QUEUE,
                                           cb=self._on_interval)
        self._tasks = [asyncio.create_task(self._acks(), name="merger-acks"),
                       asyncio.create_task(self._flush_loop(), name="merger-flush")]
        self.log.info("merging", queue=subjects.MERGER_QUEUE)

    async def wait(self) -> None:
        await self._closed.wait()

    async def stop(self) -> None:
        await self.sub.unsubscribe()
        deadline = time.monotonic() + 3.0  # hand over what is merged already
        while (self.pending or self.outbox) and self.nc.is_connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await cancel_tasks(self._tasks)
        await bus.disconnect(self.nc, logger=self.log)  # bounded, whatever NATS does
        self._closed.set()

    # --- intake -------------------------------------------------------------------
    async def _record_of(self, run_id: str, gid: str) -> RunRecord:
        cached = self.records.get(run_id)
        fresh = cached is not None and (gid in cached[0].generators or gid in self.known[run_id]
                                        or time.monotonic() - cached[1] < 1.0)
        if fresh:
            return cached[0]
        try:
            entry = await self.runs_kv.get(run_id)
        except Exception:
            if cached is not None:
                return cached[0]
            raise Unavailable(f"run {run_id} is not known here (yet)") from None
        record = _record.decode(entry.value)
        self.records[run_id] = (record, time.monotonic())
        return record

    async def _on_interval(self, msg) -> None:
        try:
            stats = bus.decode(msg.data, IntervalStats)
            if msg.subject != subjects.stats(stats.run_id, stats.generator_id):
                raise BadRequest("run_id/generator_id differ from the subject", "generator_id")
            record = await self._record_of(stats.run_id, stats.generator_id)
            members = self.known[stats.run_id]
            max_seq = max(math.ceil(record.end_at - record.start_at),
                          math.ceil(profile.duration(record.profile))) + 1
            try:
                check_interval(stats, lambda g: g in record.generators or g in members, max_seq)
                decoded = {name: (histogram.decode_sparse(r.latency), histogram.decode_sparse(r.service))
                           for name, r in stats.requests.items()}
            except histogram.HistogramDecodeError as exc:
                raise BadRequest(str(exc), "requests") from None
            except BadInterval as exc:
                raise BadRequest(str(exc), exc.field) from None
            for name, (lat, svc) in decoded.items():
                if lat.total > stats.requests[name].count or svc.total > stats.requests[name].count:
                    raise BadRequest(f"requests.{name}: histogram holds more values than its count",
                                     "requests")
            members.add(stats.generator_id)
            future = await self.js.publish_async(
                subjects.runlog_interval(stats.run_id, stats.generator_id), msg.data,
                headers={"Nats-Msg-Id": f"{stats.run_id}:i:{stats.generator_id}:{stats.seq}"},
                wait_stall=ACK_TIMEOUT_S)
        except SurgeError as err:
            await _respond_error(msg, err)
            return
        except Exception as exc:
            await _respond_error(msg, Unavailable(f"run log not writable: {exc or type(exc).__name__}"))
            return
        item = (msg, stats, decoded, future)
        future.add_done_callback(lambda _: self._writes.put_nowait(item))
        asyncio.get_running_loop().call_later(ACK_TIMEOUT_S, future.cancel)  # no-op once done

    async def _acks(self) -> None:
        while True:
            batch = [await self._writes.get()]  # writes completed since the last round
            while not self._writes.empty():
                batch.append(self._writes.get_nowait())
            for msg, stats, decoded, future in batch:
                try:
                    if future.cancelled() or future.exception() is not None:
                        await _respond_error(msg, Unavailable("run log write failed; send again"))
                        continue
                    if not future.result().duplicate:  # else counted by its first writer
                        self._merge(stats, decoded)
                    await msg.respond(msgspec.json.encode(StatsAck(ok=True, seq=stats.seq)))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("acknowledging an interval failed")

    def _merge(self, stats: IntervalStats, decoded: dict) -> None:
        second = self.pending.setdefault(stats.run_id, {}).get(stats.seq)
        if second is None:
            second = self.pending[stats.run_id][stats.seq] = _Second()
        second.rows.append(msgspec.structs.replace(stats, requests={
            name: msgspec.structs.replace(r, latency="", service="")
            for name, r in stats.requests.items()}))
        for name, (lat, svc) in decoded.items():
            sums = second.names.get(name)
            if sums is None:
                sums = second.names[name] = (histogram.zeros(), histogram.zeros())
            histogram.add_sparse(sums[0], lat)
            histogram.add_sparse(sums[1], svc)
        second.p99[stats.generator_id] = histogram.sparse_percentile_ms(
            [lat for lat, _ in decoded.values()], 99.0)

    # --- hand-over ------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.merger_flush_s)
            self._flush()
            await self._send()

    def _flush(self) -> None:
        pending, self.pending = self.pending, {}
        for run_id, seconds in pending.items():
            self.n += 1
            self.outbox.append(MergedPartial(run_id=run_id, merger_id=self.id, n=self.n, seconds=[
                MergedSecond(seq=seq, rows=s.rows, p99_ms=s.p99, names={
                    name: MergedHistograms(latency=histogram.encode_counts(lat),
                                           service=histogram.encode_counts(svc))
                    for name, (lat, svc) in s.names.items()})
                for seq, s in sorted(seconds.items())]))

    async def _send(self) -> None:
        while self.outbox:
            partial = self.outbox[0]
            try:
                reply = await self.nc.request(subjects.merged(partial.run_id),
                                              msgspec.json.encode(partial), timeout=2.0)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return  # no leader right now: keep it, try again at the next flush
            except Exception as exc:
                self.log.warning("partial not sent", error=str(exc))
                return
            code = reply.headers.get("Nats-Service-Error-Code", "") if reply.headers else ""
            if code.startswith("5"):
                return
            if code:
                self.log.error("leader refused a partial", run_id=partial.run_id, n=partial.n,
                               error=reply.data[:300].decode(errors="replace"))
            self.outbox.popleft()


async def _respond_error(msg, err: SurgeError) -> None:
    """A structured error reply with the NATS service error headers, as bus.endpoint sends."""
    headers = {"Nats-Service-Error": f"{err.code}: {err.message}"[:1000],
               "Nats-Service-Error-Code": str(err.status)}
    if msg.reply:
        await msg._client.publish(msg.reply, bus.error_reply(err), headers=headers)


def main() -> None:
    from services.common.runner import run_service

    config = Config.from_env()
    run_service("merger", config, lambda: Merger(config))


if __name__ == "__main__":
    main()
