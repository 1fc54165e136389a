"""A run's report: built once at the run's end, amended by what reaches it later.

``_finish`` closes the last seconds, builds the report (verdict, baseline, hosts) and
stores it, then lets the generators go. Once a run's report is being built, an interval gets a 503 and stays in the generator's
outbox; once the report is stored, an interval that comes (or a merger worker's partial)
**amends** it: counted, the report built again and stored, an event says so, and only
then is it acknowledged. ``Run`` takes these methods (``class Run(..., Reporting)``).
With merger workers, the sweep of the run log before the report counts what no
partial brought.

Any ended run can be amended, not only one still in memory: its run log is kept after
the report (until retention removes the run, or the stream's max age), so a coordinator
that restarted, or a new leader, reopens the run from what is stored (``reopen``): the
intervals of its run log, counted again, and its stored report's timeline, events and
hosts section, kept as they were.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from schemas import subjects
from schemas.control import RunRecord
from schemas.errors import Conflict, NotFound, Unavailable
from schemas.host import HostsReport
from schemas.stats import IntervalStats, LiveSnapshot, MergedPartial, Report
from services.coordinator.aggregate import RunAggregate, check_interval
from services.coordinator.baseline import Against
from services.coordinator.config import Config
from services.coordinator.hosts import HostsRecorder, seconds_of
from services.plan import profile

if TYPE_CHECKING:
    from services.coordinator.runs import Fleet
    from services.coordinator.store import RunStore

HOSTS_WAIT_S = 2.5  # for the monitors' samples of the run's last second
_EVENT = re.compile(r"t=(-?\d+)s (.*)", re.DOTALL)  # a report's event: "t=<second>s <text>"


class Reporting:
    """A run's report, at its end and after (runs.py)."""

    record: RunRecord
    store: RunStore
    fleet: Fleet
    config: Config
    shares: dict[str, float]
    lost: set[str]
    next_seq: int
    stop_s: float | None
    done: asyncio.Event
    agg: RunAggregate
    hosts: HostsRecorder
    report: Report | None
    finishing: bool
    durable: set[tuple[str, int]]
    log: structlog.typing.FilteringBoundLogger
    _lock: asyncio.Lock
    _ended: tuple[str, float] | None
    _against: Against | None
    _amended: int  # late intervals (or partials) counted since the report
    _stored_upto: int  # ... of which the stored report has this many
    _storing: asyncio.Task | None  # the amended report being built and stored
    _hosts_as_stored: HostsReport | None  # a reopened run's: its hosts section, kept
    _reopened: bool
    # and of Run's methods: run_id, elapsed_s, is_member, _max_seq, _close, _save,
    # _event, made_durable

    def _build_report(self, state: str, ended_at: float) -> Report:
        r = self.record
        end_s = profile.duration(r.profile)

        def hosts(seconds: int) -> HostsReport | None:
            if self._reopened:  # the monitors' samples were not stored: keep the section
                return self._hosts_as_stored
            try:
                return self.hosts.section(seconds)
            except Exception:  # the report matters more than its hosts section
                self.log.exception("hosts section failed; report written without it")
                return None

        return self.agg.report(
            state=state, ended_at=ended_at, profile_=r.profile, duration_s=max(end_s, 0.001),
            aborted=bool(r.aborted), hosts=hosts, against=self._against,
        )

    def _seconds(self) -> int:
        return seconds_of(profile.duration(self.record.profile), len(self.agg.timeline))

    async def _finish(self) -> None:
        self.finishing = True
        r = self.record
        end_s = profile.duration(r.profile)
        last_seq = max(math.ceil(end_s) - 1, max(self.agg.open, default=-1))
        while self.next_seq <= last_seq:
            self._close(self.next_seq)
        if self.config.mergers:
            await self._sweep_run_log()
        state = "stopped" if self.stop_s is not None else "finished"
        if r.error:
            state = "failed" if not self.agg.seen else "stopped"
        ended_at = time.time()
        await self._hosts_heard(self._seconds())
        self._against = await self.store.against(r)  # amendments rebuild with the same
        report = await self.store.store_report(self._build_report(state, ended_at))
        self._ended = (state, ended_at)
        self.report = report  # from here on, late intervals amend the stored report
        totals = report.totals
        await self._save(
            state=state, ended_at=ended_at, verdict=report.verdict,
            requests=totals.requests, errors=totals.errors,
            p99_ms=totals.latency_ms.p99 if totals.latency_ms else None,
        )
        await self.store.publish(subjects.live(self.run_id), _final_marker(self, state))
        for gid in list(self.shares) + list(self.lost):
            await self.store.clear_assignment(gid, self.run_id)
        self.log.info("run ended", state=state, verdict=report.verdict, requests=totals.requests)
        self.done.set()
        self.fleet.run_ended(self)

    async def _hosts_heard(self, seconds: int) -> None:
        """The monitors' samples of the last second come up to one sample after it: wait
        for them (briefly) so the hosts section covers the whole run."""
        deadline = time.monotonic() + HOSTS_WAIT_S
        while not self.hosts.covered(seconds) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    @classmethod
    async def reopen(cls, record: RunRecord, *, store: RunStore, fleet: Fleet, config: Config):
        """An ended run, rebuilt from what is stored so that a late interval can amend its
        report: every interval of its run log counted again (the totals, per name, per
        generator, the histograms), the stored report's timeline, events and hosts
        section kept as they were. Not found without a stored report; a conflict when
        the run log no longer holds what the report counted (retention, max age)."""
        run = cls(record, store, fleet, config)  # type: ignore[call-arg]
        stored = await store.stored_report(record.run_id)
        if stored is None:
            raise NotFound(f"run {record.run_id} has no report to amend", "run_id")
        skipped = 0
        for entry in await store.replay(record.run_id):
            if isinstance(entry, IntervalStats):  # events: the stored report has them all
                try:
                    run.agg.add(entry)
                    run.durable.add((entry.generator_id, entry.seq))
                except Exception as exc:
                    skipped += 1
                    run.log.warning("run log entry skipped", error=str(exc))
        for seq in sorted(run.agg.open):  # into the totals; the timeline is the stored one
            run.agg.close_second(seq, state=record.state, profile_=record.profile, lost=set())
        run.agg.timeline = {entry.t: entry for entry in stored.timeline}
        run.agg.events = {}
        for line in stored.events:
            m = _EVENT.fullmatch(line)
            seq, text = (int(m[1]), m[2]) if m else (0, line)
            run.agg.events.setdefault(seq, []).append(text)
        counted = run.agg.totals_counts().requests
        short = {g: t.requests for g, t in stored.generators.items()
                 if g not in run.agg.gens or run.agg.gens[g].counts.requests < t.requests}
        if counted < stored.totals.requests or short or skipped:
            raise Conflict(f"run {record.run_id} cannot be amended: its run log holds "
                           f"{counted} of the {stored.totals.requests} requests of its report "
                           "(removed by retention or its max age)", "run_id")
        run._reopened, run._hosts_as_stored = True, stored.hosts
        run.finishing, run.report = True, stored
        run._ended = (stored.state, stored.ended_at)
        run._against = await store.against(record)
        run.next_seq = max(stored.timeline[-1].t + 1 if stored.timeline else 0, run.next_seq)
        run.done.set()
        if counted > stored.totals.requests:  # logged, then the report was not stored
            run.agg.note(run.next_seq, f"{counted - stored.totals.requests} requests of the run "
                         "log were not in the stored report and were added to it")
        # the stored report may lag its run log (a write between the two was cut): the
        # first amendment stores the report as the log has it
        run._amended = 1
        run.log.info("ended run reopened for an amendment", requests=counted)
        return run

    async def amend(self, stats: IntervalStats, raw: bytes) -> None:
        """An interval that arrived after the report: count it, write it to the run log
        and store the report again.

        Acknowledged only once the amended report is stored, so what a generator had
        acknowledged is always in the stored report (and in the run log, for an
        amendment after a restart).
        """
        key = (stats.generator_id, stats.seq)

        def apply() -> bool:
            if (stats.generator_id, stats.seq) in self.agg.seen:
                return False
            check_interval(stats, self.is_member, self._max_seq())
            self.agg.add(stats)
            self.hosts.add_interval(stats)
            self.agg.note(stats.seq, f"interval {stats.seq} of generator {stats.generator_id} "
                          "arrived after the report and was added to it")
            return True

        async def log_it() -> None:
            if key in self.durable:
                return
            subject, msg_id = self.runlog_entry(stats)
            try:
                await self.store.persist(subject, raw, msg_id)
            except Exception as exc:  # no ack: the generator sends it again
                raise Unavailable(f"run log not writable right now: {exc or type(exc).__name__}") from None
            self.durable.add(key)

        await self._amend_with(apply, stats.generator_id, stats.seq, durable=log_it)

    async def take_merged(self, m: MergedPartial) -> None:
        """A merger worker's partial aggregate (SURGE_MERGERS): its rows are in the run log
        already; counted once, whenever it comes (after the report: an amendment)."""
        if self.report is not None:
            await self._amend_with(lambda: bool(self._merge(m)), m.merger_id, m.n)
            return
        if self.finishing:
            raise Unavailable(f"the report of run {self.run_id} is being written; send again")
        seqs = [second.seq for second in m.seconds if second.rows]
        if seqs:  # a worker hands rows over in the order it took them
            self.merged_upto[m.merger_id] = max(self.merged_upto.get(m.merger_id, -1), *seqs)
        for row in self._merge(m):
            await self.made_durable(row)

    def _merge(self, m: MergedPartial) -> list[IntervalStats]:
        new: list[IntervalStats] = []
        for second in m.seconds:
            if self.agg.add_merged(second):
                for row in second.rows:
                    self.hosts.add_interval(row)
                new.extend(second.rows)
        return new

    async def _sweep_run_log(self) -> None:
        """With merger workers: before the report, count every interval of the run log that
        no partial brought (a worker that died between acknowledging and handing over, or
        a partial the leader could not split after a takeover). The log is the truth of
        what was acknowledged; a failure here leaves the report as the partials made it."""
        try:
            entries = await self.store.replay(self.run_id)
        except Exception as exc:
            self.log.warning("run log sweep failed", error=str(exc) or type(exc).__name__)
            return
        missed = 0
        for entry in entries:
            if isinstance(entry, IntervalStats) and (entry.generator_id, entry.seq) not in self.agg.seen:
                try:
                    self.agg.add(entry)
                    self.hosts.add_interval(entry)
                    self.durable.add((entry.generator_id, entry.seq))
                    missed += 1
                except Exception as exc:
                    self.log.warning("run log entry skipped", error=str(exc))
        if missed:
            await self._event(f"{missed} intervals no merger handed over were taken from the run log")

    async def _amend_with(
        self, apply: Callable[[], bool], *what: object,
        durable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Count a late interval (``apply``), make it durable, and return once a stored
        report holds it. Amendments that come together share one rebuild of the report
        (a thousand generators' late finals are a few rebuilds, not a thousand)."""
        async with self._lock:
            assert self._ended is not None
            if apply():
                self._amended += 1
            if durable is not None:  # in the run log before the report says it
                await durable()
            mine = self._amended
        while self._stored_upto < mine:  # else counted and stored already: a resend
            if self._storing is None or self._storing.done():
                self._storing = asyncio.create_task(self._store_amended(what))
            try:
                await asyncio.shield(self._storing)
            except Exception as exc:  # no ack: the generator sends it again
                raise Unavailable(f"amended report not stored: {exc or type(exc).__name__}") from None

    async def _store_amended(self, what: tuple[object, ...]) -> None:
        async with self._lock:
            upto = self._amended
            report = self._build_report(*self._ended)  # type: ignore[misc]
        report = await self.store.store_report(report)
        totals = report.totals
        await self._save(verdict=report.verdict, requests=totals.requests, errors=totals.errors,
                         p99_ms=totals.latency_ms.p99 if totals.latency_ms else None)
        self.report = report
        self._stored_upto = max(self._stored_upto, upto)
        self.log.info("report amended", what=what, amendments=upto, requests=totals.requests)


def _final_marker(run: Reporting, state: str) -> LiveSnapshot:
    """The last message on surge.live.<run>: the run has ended and its report is stored."""
    last = run.agg.totals_counts()
    return LiveSnapshot(
        run_id=run.run_id, plan_name=run.record.plan.name, state=state, seq=run.next_seq,
        at=time.time(), elapsed_s=run.elapsed_s(), duration_s=profile.duration(run.record.profile),
        target_rps=0.0, rps=0.0, requests=0, errors=0, error_rate=0.0, late=0, dropped=0,
        in_flight=0, p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None,
        total_requests=last.requests, total_errors=last.errors, per_request={}, generators={},
        final=True,
    )
