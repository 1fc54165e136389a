"""One run's lifecycle on the coordinator: assign, watch, rebalance, merge, report.

A ``Run`` writes declarative assignments (profile × share, common start time,
epoch) and then only reacts: a second ends → publish its merged snapshot; a
generator goes silent → its share moves to the others (hot remove); an idle
generator appears → it gets a share (hot add); a rate change or stop → a new
epoch. When every generator has sent its final interval, the report is written.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

import msgspec
import structlog

from schemas import subjects
from schemas.control import Assignment, Lease, RunEvent, RunRecord
from schemas.errors import Conflict, Unavailable
from schemas.plan import Plan
from schemas.host import HostsReport
from schemas.stats import IntervalStats, Report
from services.plan import profile
from services.coordinator import slicing
from services.coordinator.aggregate import RunAggregate, check_interval
from services.coordinator.reporting import Reporting
from services.coordinator.baseline import Against
from services.coordinator.hosts import HostsRecorder
from services.coordinator.config import Config
from services.coordinator.control import GeneratorControl, by_whom
from services.coordinator.membership import FINAL_GRACE_S, Membership
from services.coordinator.registry import Registry
from services.coordinator.store import RunStore

log = structlog.get_logger(__name__)

TICK_S = 0.1
CHANGE_REPORT_S = 30.0  # a rate change not taken up by every member by then is not reported


class Fleet(Protocol):
    """What a run sees of its coordinator besides the store: who is alive or idle, whether
    it may act at all (it holds the lease), and whom to tell that it ended."""

    registry: Registry

    def idle_generators(self, wanted: dict[str, str] | None = None) -> list[str]: ...

    def leading(self) -> bool: ...

    def ask_bus_time(self) -> None: ...

    def run_ended(self, run: Run) -> None: ...


class Run(GeneratorControl, Membership, Reporting):
    """One run, given a ``RunStore`` (everything it writes) and a ``Fleet`` (what it reads
    of the coordinator). ``Run.create`` starts a new one, ``Run.recover`` takes one over."""

    def __init__(self, record: RunRecord, store: RunStore, fleet: Fleet, config: Config) -> None:
        self.store = store
        self.fleet = fleet
        self.config = config
        self.record = record
        self.agg = RunAggregate(record.run_id, record.plan, record.start_at)
        self.hosts = HostsRecorder(record.start_at)  # the machines, for the report
        self.shares: dict[str, float] = dict(record.generators)
        self.held: dict[str, float] = dict(record.held)  # per-generator rates, rps (0: stopped)
        self.paused: dict[str, float] = dict(record.paused)  # stopped ones: their rate before
        self.lost: set[str] = set()
        self.next_seq = 0
        self.finish_by: float | None = None  # wall time after which we stop waiting
        self.stop_s: float | None = None
        self.judged_upto = 0  # abort_on_fail: the seconds already judged
        self.report: Report | None = None
        self.done = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.durable: set[tuple[str, int]] = set()  # intervals in the run log (ackable)
        self.finishing = False  # the report is being built: intervals get a 503, kept
        self._ended: tuple[str, float] | None = None  # (state, ended_at) of the report
        self._against: Against | None = None  # its test and baseline, read once before the report
        self._amended = 0  # late intervals counted after the report (Reporting._amend_with)
        self._stored_upto = 0  # ... of them in the stored report
        self._storing: asyncio.Task | None = None
        self._reopened = False  # rebuilt after its end from what is stored (Run.reopen)
        self._hosts_as_stored: HostsReport | None = None
        self.quiet_below = 0  # seconds below this were published by a previous leader
        self._reshared_at = 0.0  # monotonic time of the last rebalance
        self.joined_at: dict[str, float] = {}  # hot-added members: when (wall time)
        self.silent: set[str] = set()  # members that never ran their assignment
        self.merged_upto: dict[str, int] = {}  # merger id -> the latest second it handed rows of
        # rate changes not yet taken up by every member: epoch -> (asked at, who is left,
        # each one's delay from the assignment write to its engine following it, ms)
        self.changes_waiting: dict[int, tuple[float, set[str], list[float]]] = {}
        self.log = log.bind(run_id=record.run_id)

    @classmethod
    def create(
        cls, plan: Plan, shares: dict[str, float], *, store: RunStore, fleet: Fleet, config: Config,
        run_id: str, test: str | None = None, test_version: int | None = None,
    ) -> Run:
        """A new run of ``plan`` on the generators of ``shares``, starting after the
        configured delay; ``launch()`` makes it durable and assigns it."""
        prof = profile.from_plan(plan)
        now = time.time()
        start_at = now + config.start_delay_s
        record = RunRecord(
            run_id=run_id,
            plan=plan,
            state="starting",
            created_at=now,
            start_at=start_at,
            end_at=start_at + profile.duration(prof),
            profile=prof,
            epoch=1,
            generators=shares,
            target_rps=profile.rate_at(prof, 0.0),
            test=test,
            test_version=test_version,
        )
        return cls(record, store, fleet, config)

    @classmethod
    async def recover(
        cls, record: RunRecord, *, store: RunStore, fleet: Fleet, config: Config,
        previous: Lease | None, by: str,
    ) -> Run:
        """Rebuild an unfinished run from what is durable (services/coordinator/recovery.py
        says how); ``resume()`` starts its loop again. ``by`` is the new leader's id."""
        run = cls(record, store, fleet, config)
        intervals = events = 0
        for entry in await store.replay(record.run_id):
            try:
                if isinstance(entry, RunEvent):
                    run.agg.note(entry.t, entry.event, gap=entry.gap)
                    events += 1
                else:
                    run.agg.add(entry)
                    run.hosts.add_interval(entry)  # the generators' CPU survives a takeover
                    run.durable.add((entry.generator_id, entry.seq))
                    intervals += 1
            except Exception as exc:  # one bad entry must not cost the rest of the run
                run.log.warning("run log entry skipped", error=str(exc))
        run.lost = set(run.agg.gens) - set(run.shares)
        run.quiet_below = run._published_before(previous)
        if record.state == "stopping":
            run.stop_s = profile.duration(record.profile)
            run.finish_by = time.time() + record.plan.timeout + FINAL_GRACE_S
        await run._reconcile_assignments()
        holder = previous.holder if previous else "nobody"
        now_s = run.second_now()
        if previous is not None:
            for seq in range(max(int(previous.renewed_at - record.start_at), 0), now_s + 1):
                run.agg.gaps.add(seq)
        await run._event(f"coordinator takeover: {by} took over from {holder}", gap=True)
        run.log.info("run recovered", intervals=intervals, events=events, epoch=run.record.epoch,
                     generators=sorted(run.shares), quiet_below=run.quiet_below)
        return run

    def _published_before(self, previous: Lease | None) -> int:
        """The first second the previous leader may not have published as a live snapshot."""
        r = self.record
        last = math.ceil(profile.duration(r.profile))
        renewed = previous.renewed_at if previous else 0.0
        seq = 0
        while seq < last:
            complete = all((g, seq) in self.durable for g in r.generators)
            timed_out = r.start_at + seq + 1 + self.config.merge_wait_s <= renewed
            if not (complete or timed_out):
                break
            seq += 1
        return seq

    async def _reconcile_assignments(self) -> None:
        """Make the assignments match the record, whatever the old leader left half done.

        A generator holding a live assignment of this run stays a member (a hot add the
        record had not caught up with); a member without the record's epoch is rewritten.
        """
        r = self.record
        epochs = await self.store.live_epochs(r.run_id)
        members = set(self.shares) | set(epochs)
        top = max([r.epoch, *epochs.values()])
        if members == set(self.shares) and all(epochs.get(g) == r.epoch for g in members):
            return  # consistent: nothing to write, no generator disturbed
        for gid in members - set(self.shares):
            self.shares[gid] = 0.0
        self.record = msgspec.structs.replace(r, epoch=top)
        if r.state == "stopping":
            self.record = msgspec.structs.replace(self.record, epoch=top + 1)
            await self._assign_all(stop=True)
            await self._save()
        else:
            await self._reshare()

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def fixed_count(self) -> bool:
        return self.record.plan.generator_count is not None

    def elapsed_s(self) -> float:
        return time.time() - self.record.start_at

    def second_now(self) -> int:
        return max(int(self.elapsed_s()), 0)

    # --- start ------------------------------------------------------------------
    async def launch(self) -> None:
        await self._save()  # durable before any generator starts: a new leader finds it
        await self._assign_all()
        await self._save(state="running")
        self.resume()

    def resume(self) -> None:
        """Start (or, after a takeover, restart) the run's tick loop."""
        self._task = asyncio.create_task(self._loop(), name=f"run-{self.run_id}")

    def abandon(self) -> None:
        """This coordinator lost the lease: stop acting for the run, write nothing."""
        if self._task is not None:
            self._task.cancel()
        self.done.set()

    async def _assign_all(self, stop: bool = False, only: set[str] | None = None) -> None:
        r = self.record
        ids = sorted(self.shares)
        even = len({self.shares[g] for g in ids}) <= 1
        before = 0.0  # cumulative share: each generator's slice of the plan's arrivals
        for index, gid in enumerate(ids):
            phase, before = (None if even else before), before + self.shares[gid]
            if only is not None and gid not in only:
                continue
            a = Assignment(
                run_id=r.run_id,
                epoch=r.epoch,
                share=self.shares[gid],
                start_at=r.start_at,
                end_at=r.end_at,
                profile=r.profile,
                plan=r.plan,
                index=index,
                count=len(ids),
                phase=phase,
                stop=stop,
            )
            await self.store.put_assignment(gid, a)

    async def _release(self, gid: str) -> None:
        """Tell a generator that left the run to stop, should it still be listening."""
        r = self.record
        a = Assignment(
            run_id=r.run_id, epoch=r.epoch, share=0.0, start_at=r.start_at, end_at=r.end_at,
            profile=r.profile, plan=r.plan, stop=True,
        )
        try:
            await self.store.put_assignment(gid, a)
        except Exception as exc:
            self.log.warning("could not release generator", generator_id=gid, error=str(exc))

    async def _save(self, **changes) -> None:
        self.record = msgspec.structs.replace(
            self.record, generators=dict(self.shares), held=dict(self.held),
            paused=dict(self.paused), **changes
        )
        await self.store.save_record(self.record)

    async def _event(self, text: str, gap: bool = False, seq: int | None = None) -> None:
        seq = self.second_now() if seq is None else seq
        self.agg.note(seq, text, gap=gap)
        self.log.info("run event", what=text)
        event = RunEvent(t=seq, event=text, gap=gap)
        try:
            await self.store.log_event(self.run_id, event)
        except Exception as exc:
            self.log.warning("event not persisted", error=str(exc))
        await self.store.publish(subjects.events(self.run_id), {"run_id": self.run_id, "t": seq, "event": text})

    # --- requests from the API --------------------------------------------------
    async def change_rate(self, rate: float, by: str = "") -> int:
        async with self._lock:
            self._controllable("change its rate")
            at = max(self.elapsed_s(), 0.0)
            if self.held:  # generators stopped by request stay stopped; the rest share it
                self.held = {g: 0.0 for g in self.paused}
                epoch = await self._apply_held(at, rate)
                await self._event(f"rate changed to {rate:g}/s{by_whom(by)}")
                return epoch
            new_profile = profile.hold_rate(self.record.profile, at, rate)
            self.record = msgspec.structs.replace(
                self.record, profile=new_profile, epoch=self.record.epoch + 1
            )
            await self._assign_all()
            await self._save(target_rps=rate)
            await self._event(f"rate changed to {rate:g}/s{by_whom(by)}")
            self.changes_waiting[self.record.epoch] = (time.time(), set(self.shares), [])
            return self.record.epoch

    async def stop(self, by: str = "") -> int:
        async with self._lock:
            if self.record.state not in ("starting", "running"):
                raise Conflict(f"run {self.run_id} is already {self.record.state}")
            return await self._stop(f"stop requested{by_whom(by)}")

    def _capacities(self) -> dict[str, float]:
        alive = self.fleet.registry.alive()
        return {g: (alive[g].capacity_rps if g in alive else 1.0) for g in self.shares}

    async def _stop(self, why: str, **record: object) -> int:
        """Cut the profile at now and tell every member to stop (the lock is held)."""
        at = max(self.elapsed_s(), 0.0)
        self.stop_s = at
        self.record = msgspec.structs.replace(
            self.record, profile=profile.cut(self.record.profile, at),
            epoch=self.record.epoch + 1,
        )
        await self._assign_all(stop=True)
        await self._save(state="stopping", **record)
        await self._event(why)
        self.finish_by = time.time() + self.record.plan.timeout + FINAL_GRACE_S
        return self.record.epoch

    async def _abort_if_failing(self) -> None:
        """thresholds.abort_on_fail: stop the run once the run so far breaks a limit."""
        th = self.record.plan.thresholds
        if (not th.abort_on_fail or self.record.state != "running" or self.record.aborted
                or self.next_seq < th.abort_after or self.next_seq == self.judged_upto):
            return
        self.judged_upto = self.next_seq  # once per closed second, not per tick
        failing = self.agg.failing_so_far(self.next_seq)
        if not failing:
            return
        first = failing[0]
        why = (f"threshold {first.label} failed: {first.value:.4g} against a limit of {first.limit:g}"
               f" over the first {self.next_seq} s")
        self.log.warning("aborting the run", reason=why)
        await self._stop(f"aborted: {why}", aborted=why)

    def _max_seq(self) -> int:
        r = self.record
        return max(math.ceil(r.end_at - r.start_at), math.ceil(profile.duration(r.profile))) + 1

    def is_member(self, gid: str) -> bool:
        """Part of the run now, once, or counted already: its intervals are welcome."""
        return gid in self.shares or gid in self.lost or gid in self.agg.gens

    def add_stats(self, stats: IntervalStats) -> bool:
        return self.agg.add(stats)

    async def ingest(self, stats: IntervalStats, raw: bytes) -> None:
        """Count an interval and make it durable in the run log; only then may it be acked.

        A leader that dies after the ack leaves the interval in the log for the next
        one; a leader that dies before it leaves it in the generator's outbox.
        (The stats intake does the same without waiting: ``accept``, an asynchronous
        run-log write, ``made_durable``.)
        """
        key = (stats.generator_id, stats.seq)
        if key in self.durable:
            return
        if self.report is not None:
            await self.amend(stats, raw)
            return
        if self.finishing:  # the report is being built: not now, and not into the void
            raise Unavailable(f"the report of run {self.run_id} is being written; send again")
        self.accept(stats)
        subject, msg_id = self.runlog_entry(stats)
        try:
            await self.store.persist(subject, raw, msg_id)
        except Exception as exc:  # no ack: the generator keeps it and sends it again
            raise Unavailable(f"run log not writable right now: {exc or type(exc).__name__}") from None
        await self.made_durable(stats)

    def accept(self, stats: IntervalStats) -> bool:
        """Check and count an interval now; True while it is not in the run log yet.

        Raises on a bad interval or histogram before anything of it is counted.
        """
        if (stats.generator_id, stats.seq) in self.durable:
            return False
        check_interval(stats, self.is_member, self._max_seq())
        self.agg.add(stats)  # raises on a bad histogram before anything is counted
        self.hosts.add_interval(stats)
        if stats.seq == self.next_seq and self.agg.reported_count(stats.seq) >= len(self.shares):
            self._publish_due(time.time())  # the last of its second: no wait for the tick
        return True

    def runlog_entry(self, stats: IntervalStats) -> tuple[str, str]:
        """The run-log subject and the deduplicating message id of an interval."""
        return (subjects.runlog_interval(self.run_id, stats.generator_id),
                f"{self.run_id}:i:{stats.generator_id}:{stats.seq}")

    async def made_durable(self, stats: IntervalStats) -> None:
        """The interval is in the run log: it may be acknowledged."""
        self.durable.add((stats.generator_id, stats.seq))
        if stats.changes and self.changes_waiting:
            await self._changes_taken_up(stats)
        if stats.error:  # its part of the run failed: the reason goes into the run's events
            await self._event(f"generator {stats.generator_id} failed: {stats.error}", gap=True)

    async def _changes_taken_up(self, stats: IntervalStats) -> None:
        """Once every member has taken up a rate change, say how long it took (an event)."""
        now = time.time()
        for change in stats.changes:
            waiting = self.changes_waiting.get(change.epoch)
            if waiting is None:
                continue
            _, left, delays_ms = waiting
            left.discard(stats.generator_id)
            if change.written_at is not None:
                delays_ms.append((change.applied_at - change.written_at) * 1000)
            left &= set(self.shares)  # a member lost meanwhile will not answer
            if not left:
                del self.changes_waiting[change.epoch]
                n = len(delays_ms)
                if n:
                    await self._event(f"rate change applied by {n} generator{'s' if n > 1 else ''} "
                                      f"within {max(delays_ms):.1f} ms of its assignment write")
        for epoch, (asked_at, _, _) in list(self.changes_waiting.items()):
            if now - asked_at > CHANGE_REPORT_S:  # superseded by a later epoch: not reported
                del self.changes_waiting[epoch]

    # --- the loop -----------------------------------------------------------------
    async def _loop(self) -> None:
        paused = False
        try:
            while not self.done.is_set():
                await asyncio.sleep(TICK_S)
                if not self.fleet.leading():
                    paused = True
                    continue  # cut off from NATS or the lease: act on nothing
                if paused:  # we could not hear heartbeats either: nobody is lost for it
                    self.fleet.registry.touch_all(extra_s=self.config.dead_after_s)
                    paused = False
                try:
                    async with self._lock:
                        await self._tick()
                except Exception:
                    self.log.exception("run tick failed")
        except asyncio.CancelledError:
            raise

    async def _tick(self) -> None:
        r = self.record
        now = time.time()
        if r.state == "running":
            await self._check_members()
            await self._check_silent(now)
            if not self.fixed_count:
                await self._hot_add()
        self._publish_due(now)
        await self._abort_if_failing()
        r = self.record
        ending = r.state == "stopping" or now >= r.end_at
        if ending:
            if self.finish_by is None:
                self.finish_by = r.end_at + r.plan.timeout + FINAL_GRACE_S
            members = set(self.shares)
            if members <= self.agg.finals or now >= self.finish_by or not members:
                await self._finish()

    async def _reshare(self) -> None:
        caps = self._capacities()
        if self.held:  # some hold their own rate: the total stays, the others share the rest
            at = max(self.elapsed_s(), 0.0)
            await self._apply_held(at, profile.rate_at(self.record.profile, at))
            return
        self.shares = slicing.shares(caps)
        self._reshared_at = time.monotonic()
        self.record = msgspec.structs.replace(self.record, epoch=self.record.epoch + 1)
        await self._assign_all()
        await self._save()

    def _publish_due(self, now: float) -> None:
        r = self.record
        last_seq = math.ceil(profile.duration(r.profile)) - 1
        while self.next_seq <= last_seq:
            seq = self.next_seq
            boundary = r.start_at + seq + 1
            if now < boundary:
                return
            expected = set(self.shares)
            reported = self.agg.reported(seq)
            if not (expected <= reported or now >= boundary + self.config.merge_wait_s):
                return
            self._close(seq)

    def _close(self, seq: int) -> None:
        snap = self.agg.close_second(
            seq, state=self.record.state, profile_=self.record.profile,
            lost=self.lost,
        )
        self.next_seq = seq + 1
        if seq >= self.quiet_below:
            self.store.publish_nowait(subjects.live(self.run_id), snap)
