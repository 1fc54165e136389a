"""Quotas and approvals on the coordinator: admit, queue, approve, start in turn.

Every start (run.start, test.run, a schedule's fire, a suite's step) passes ``admit``.
A target system without a quota (config ``quotas``, by ``host:port``, ``*`` for the
rest) starts at once. With one, a run over a limit is refused (``over_limit: refuse``)
or waits for approval; a run that finds ``max_running`` runs on its system waits its
turn. Waiting runs are kept in KV ``surge_queue``; the leader starts them in order.
Every decision (queued, waiting for approval, approved or denied by whom, started) is
kept in the entry and published as an event of the run.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import Empty, RunStarted
from schemas.errors import Conflict, NoGenerators, NotFound, QuotaExceeded, SurgeError
from schemas.plan import Plan
from schemas.quotas import Approval, Decision, QueueList, QueuedRun, Quota
from services.common import bus
from services.coordinator import firing
from services.coordinator.catalogue import target_system
from services.plan import loader, profile

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)
_entry = msgspec.json.Decoder(QueuedRun)
KEEP_DONE_S = 24 * 3600.0  # started/denied entries are kept this long (the decisions)
RESCAN_S = 5.0  # with nothing waiting, the queue is read this often (a KV listing costs a consumer)


def in_hours(hours: str, tz: str, t: float) -> bool:
    """Is ``t`` inside "HH:MM-HH:MM" (which may wrap midnight) in zone ``tz``?"""
    start, end = ((int(h) * 60 + int(m)) for h, m in (p.split(":") for p in hours.split("-")))
    local = datetime.fromtimestamp(t, firing.zone(tz))
    now = local.hour * 60 + local.minute
    return start <= now < end if start <= end else now >= start or now < end


def violations(plan: Plan, q: Quota, now: float) -> list[str]:
    """The limits of ``q`` that ``plan`` is over, in words (empty: within its quota)."""
    out = []
    prof = profile.from_plan(plan)
    if q.max_rate is not None and profile.peak(prof) > q.max_rate:
        out.append(f"rate {profile.peak(prof):g}/s above the limit of {q.max_rate:g}/s")
    if q.max_duration_s is not None and profile.duration(prof) > q.max_duration_s:
        out.append(f"duration {profile.duration(prof):g}s above the limit of {q.max_duration_s:g}s")
    count = plan.generator_count
    if q.max_generators is not None and count is not None and count > q.max_generators:
        out.append(f"{count} generators above the limit of {q.max_generators}")
    if q.allowed_hours and not in_hours(q.allowed_hours, q.tz, now):
        out.append(f"outside the allowed hours {q.allowed_hours} ({q.tz})")
    return out


class Quotas:
    def __init__(self, svc: Service, kv: KeyValue) -> None:
        self.svc = svc
        self.kv = kv
        self._waiting = True  # something may wait: read the queue at the next tick
        self._scanned = 0.0

    def rule(self, system: str) -> Quota | None:
        quotas = self.svc.config.quotas
        return quotas.get(system) or quotas.get("*")

    def running(self, system: str) -> int:
        return sum(1 for r in self.svc.runs.values() if target_system(r.record.plan.target) == system)

    async def _entries(self) -> list[tuple[QueuedRun, int]]:
        try:
            keys = await bus.kv_keys(self.kv)
        except NoKeysError:
            return []
        out = []
        for key in keys:
            try:
                entry = await self.kv.get(key)
                out.append((_entry.decode(entry.value), entry.revision))
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
        return sorted(out, key=lambda e: e[0].requested_at)

    async def _get(self, run_id: str) -> tuple[QueuedRun, int] | None:
        try:
            entry = await self.kv.get(run_id)
        except KeyNotFoundError:
            return None
        return _entry.decode(entry.value), entry.revision

    async def entry(self, run_id: str) -> QueuedRun | None:
        found = await self._get(run_id)
        return found[0] if found else None

    # --- admission (every start) ------------------------------------------------------
    async def admit(self, plan: Plan, run_id: str, test: str | None, test_version: int | None,
                    author: str) -> tuple[Plan, RunStarted | None]:
        """The plan to start now (maybe capped to the quota's generators), or why it waits."""
        system = target_system(plan.target)
        q = self.rule(system)
        if q is None:
            return plan, None
        if q.max_generators is not None and plan.generator_count is None and not plan.generator_labels:
            plan = loader.with_overrides(plan, generators=q.max_generators)
        known = await self._get(run_id)
        if known is not None:  # a suite step or a fire asking again: it is waiting already
            return plan, self._waiting_reply(known[0])
        reasons = violations(plan, q, time.time())
        if reasons and q.over_limit == "refuse":
            raise QuotaExceeded(f"target system {system}: " + "; ".join(reasons))
        ahead = [e for e, _ in await self._entries() if e.target_system == system and e.state == "queued"]
        busy = self.running(system) >= q.max_running or bool(ahead)
        if not reasons and not busy:
            return plan, None
        now = time.time()
        what = ("waiting for approval: " + "; ".join(reasons)) if reasons else \
            f"queued: {system} runs {self.running(system)} of {q.max_running} at once"
        entry = QueuedRun(run_id=run_id, target_system=system, plan=plan,
                          state="waiting_approval" if reasons else "queued", reasons=reasons,
                          requested_by=author, requested_at=now, test=test, test_version=test_version,
                          decisions=[Decision(what, "coordinator", now)])
        try:
            await self.kv.create(run_id, msgspec.json.encode(entry))
        except KeyWrongLastSequenceError:
            raise Conflict(f"run {run_id} is queued already", "run_id") from None
        self._waiting = True
        await self._event(run_id, f"{what} (asked by {author})")
        return plan, self._waiting_reply(entry)

    @staticmethod
    def _waiting_reply(e: QueuedRun) -> RunStarted:
        why = e.decisions[-1].what if e.decisions else e.state
        return RunStarted(run_id=e.run_id, start_at=0.0, end_at=0.0, target_rps=0.0, generators={},
                          test=e.test, test_version=e.test_version, queued=why)

    # --- API ----------------------------------------------------------------------------
    async def run_queue(self, _: Empty) -> QueueList:
        return QueueList(runs=[e for e, _ in reversed(await self._entries())])

    async def run_approve(self, ask: Approval) -> QueuedRun:
        found = await self._get(ask.run_id)
        if found is None:
            raise NotFound(f"run {ask.run_id} is not waiting for anything", "run_id")
        entry, revision = found
        if entry.state != "waiting_approval":
            raise Conflict(f"run {ask.run_id} is {entry.state.replace('_', ' ')}; nothing to approve")
        what = ("approved" if ask.approve else "denied") + (f": {ask.reason}" if ask.reason else "")
        new = msgspec.structs.replace(
            entry, state="queued" if ask.approve else "denied",
            decisions=[*entry.decisions, Decision(what, ask.author, time.time())])
        try:
            await self.kv.update(ask.run_id, msgspec.json.encode(new), last=revision)
        except KeyWrongLastSequenceError:
            raise Conflict(f"run {ask.run_id} was decided meanwhile; look again") from None
        self._waiting = True
        log.info("run decision", run_id=ask.run_id, decision=what, by=ask.author)
        await self._event(ask.run_id, f"{what} by {ask.author}")
        return new

    # --- the leader's loop ----------------------------------------------------------------
    async def tick(self) -> None:
        """Start queued runs whose system has room, oldest first; forget old decided ones."""
        if not self._waiting and time.monotonic() - self._scanned < RESCAN_S:
            return
        self._scanned = time.monotonic()
        now = time.time()
        starting: dict[str, int] = {}
        entries = await self._entries()
        self._waiting = any(e.state == "queued" for e, _ in entries)  # approvals wake it
        for entry, revision in entries:
            if entry.state in ("started", "denied", "failed"):
                if now - entry.decisions[-1].at > KEEP_DONE_S:
                    await self.kv.purge(entry.run_id)
                continue
            if entry.state != "queued":
                continue
            q = self.rule(entry.target_system)
            limit = q.max_running if q else 1
            if self.running(entry.target_system) + starting.get(entry.target_system, 0) >= limit:
                starting[entry.target_system] = limit  # later entries of this system wait too
                continue
            try:
                await self.svc.start_plan(entry.plan, test=entry.test, test_version=entry.test_version,
                                          run_id=entry.run_id, admitted=True)
                state, what = "started", "started"
            except NoGenerators:
                continue  # try again next round
            except SurgeError as err:
                state, what = "failed", f"could not start: {err.code}: {err.message}"
            new = msgspec.structs.replace(entry, state=state,
                                          decisions=[*entry.decisions, Decision(what, "coordinator", now)])
            try:
                await self.kv.update(entry.run_id, msgspec.json.encode(new), last=revision)
            except KeyWrongLastSequenceError:
                log.warning("queue entry moved on meanwhile", run_id=entry.run_id)
            await self._event(entry.run_id, what)
            starting[entry.target_system] = starting.get(entry.target_system, 0) + 1

    async def _event(self, run_id: str, text: str) -> None:
        try:
            await self.svc.publish(subjects.events(run_id), {"run_id": run_id, "t": 0, "event": text})
        except Exception as exc:
            log.warning("queue event not published", error=str(exc))
