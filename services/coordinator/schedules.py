"""Schedules on the coordinator: the API (add, list, delete) and the leader's firing loop.

Exactly once across leader changes: a fire is first *claimed* with a KV create of its
key in ``surge_fires`` (only one coordinator can create it), then its run is started
with an id derived from the fire, then the fire is marked ``started``. A leader that
finds a fire claimed by a predecessor that died looks for that run id: found, the run
was started (and is recovered like any other run); not found, it starts it now.

A fire is on time within ``schedule_grace_s`` of its time. Later than that (the
coordinators were down) the schedule's ``missed`` policy decides: ``run_late`` runs the
latest missed fire once, ``skip`` records it as skipped; earlier missed fires of a cron
schedule are passed over either way (as a Kubernetes CronJob with a deadline does).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import Empty
from schemas.errors import BadRequest, Conflict, NotFound, SurgeError
from schemas.schedules import (
    Fire,
    Removed,
    Schedule,
    ScheduleAdd,
    ScheduleInfo,
    ScheduleList,
    ScheduleRef,
)
from services.common import bus
from services.coordinator import firing

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)
_schedule = msgspec.json.Decoder(Schedule)
_fire = msgspec.json.Decoder(Fire)


class Scheduler:
    def __init__(self, svc: Service, schedules: KeyValue, fires: KeyValue) -> None:
        self.svc = svc
        self.kv = schedules
        self.fires = fires
        self.cache: dict[str, Schedule] | None = None  # slug -> schedule, while leading
        self.handled: dict[str, float] = {}  # slug -> the last fire time dealt with
        self.term = -1

    # --- storage ------------------------------------------------------------------
    async def _load(self) -> dict[str, Schedule]:
        try:
            keys = await bus.kv_keys(self.kv)
        except NoKeysError:
            keys = []
        out = {}
        for key in keys:
            try:
                out[key] = _schedule.decode((await self.kv.get(key)).value)
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
        return out

    async def _last_fire(self, key: str) -> Fire | None:
        try:
            keys = await bus.kv_keys(self.fires)
        except NoKeysError:
            return None
        stamps = [int(tail) for head, _, tail in (k.rpartition(".") for k in keys)
                  if head == key and tail.isdigit()]
        if not stamps:
            return None
        try:
            return _fire.decode((await self.fires.get(f"{key}.{max(stamps)}")).value)
        except (KeyNotFoundError, msgspec.DecodeError):
            return None

    # --- API ------------------------------------------------------------------------
    async def schedule_add(self, ask: ScheduleAdd) -> ScheduleInfo:
        if (ask.test is None) == (ask.suite is None):
            raise BadRequest("give exactly one of test and suite", "test")
        if (ask.at is None) == (ask.cron is None):
            raise BadRequest("give exactly one of at and cron", "at")
        firing.zone(ask.tz)
        now = time.time()
        at = None
        if ask.at is not None:
            at = firing.parse_at(ask.at, ask.tz, now)
            if at < now - 1.0:
                raise BadRequest(f"{ask.at!r} is in the past", "at")
        if ask.cron is not None:
            firing.check_cron(ask.cron, ask.tz)
        if ask.test is not None:
            await self.svc.catalogue.latest(ask.test)  # not_found now, not at 2 a.m.
        else:
            await self.svc.suites.get_suite(ask.suite or "")
        s = Schedule(
            name=ask.name, test=ask.test, suite=ask.suite, at=at, cron=ask.cron, tz=ask.tz,
            missed=ask.missed, overrides=ask.overrides, author=ask.author, created_at=now,
        )
        info = ScheduleInfo(schedule=s, next_fires=firing.next_fires(s, now - 0.001))
        if ask.dry_run:
            return info
        key = firing.slug(ask.name)
        data = msgspec.json.encode(s)
        if ask.replace:
            await self.kv.put(key, data)
        else:
            try:
                await self.kv.create(key, data)
            except KeyWrongLastSequenceError:
                raise Conflict(f"a schedule {ask.name!r} exists (replace it with replace: true)",
                               "name") from None
        if self.cache is not None:
            self.cache[key] = s
            self.handled[key] = now - 0.001
        log.info("schedule added", schedule=s.name, at=at, cron=s.cron, tz=s.tz)
        await self._event(s.name, f"schedule {s.name} added by {ask.author}")
        return info

    async def schedule_list(self, _: Empty) -> ScheduleList:
        now = time.time()
        out = []
        for key, s in sorted((await self._load()).items()):
            last = await self._last_fire(key)
            after = max(now, last.fire_at if last else 0.0)
            out.append(ScheduleInfo(schedule=s, next_fires=firing.next_fires(s, after), last=last))
        return ScheduleList(schedules=out)

    async def schedule_delete(self, ref: ScheduleRef) -> Removed:
        key = firing.slug(ref.name)
        try:
            await self.kv.get(key)
        except KeyNotFoundError:
            raise NotFound(f"no schedule named {ref.name!r}", "name") from None
        await self.kv.purge(key)
        if self.cache is not None:
            self.cache.pop(key, None)
        await self._event(ref.name, f"schedule {ref.name} removed")
        return Removed(name=ref.name)

    # --- the leader's loop --------------------------------------------------------------
    async def tick(self) -> None:
        """Fire what is due. Called by the leader a few times a second."""
        term = self.svc.lease.term if self.svc.lease else 0
        if self.cache is None or term != self.term:
            self.cache = await self._load()
            self.handled = {}
            for key, s in self.cache.items():
                last = await self._last_fire(key)
                # a fire only claimed was cut short by a leader's death: deal with it again
                done = last.fire_at - (0.001 if last.state == "claimed" else 0.0) if last else 0.0
                self.handled[key] = max(s.created_at - 0.001, done)
            self.term = term
        now = time.time()
        grace = self.svc.config.schedule_grace_s
        for key, s in list(self.cache.items()):
            due = firing.next_after(s, self.handled.get(key, s.created_at))
            if due is None or due > now:
                continue
            late = now - due
            if late > grace:  # missed (coordinators down): the latest missed fire only
                due = firing.latest_at_or_before(s, now) or due
                late = now - due
                if late > grace and s.missed == "skip":
                    await self._claim(key, s, due, skip=True)
                    self.handled[key] = due
                    continue
            await self._claim(key, s, due)
            self.handled[key] = due

    async def _claim(self, key: str, s: Schedule, due: float, skip: bool = False) -> None:
        fkey = firing.fire_key(key, due)
        run_id = firing.fire_run_id(s.name, due)
        now = time.time()
        fire = Fire(schedule=s.name, fire_at=due, state="skipped" if skip else "claimed",
                    run_id=run_id, by=self.svc.id, at=now, late_s=round(now - due, 3))
        try:
            revision = await self.fires.create(fkey, msgspec.json.encode(fire))
        except KeyWrongLastSequenceError:  # a predecessor got there first
            entry = await self.fires.get(fkey)
            previous = _fire.decode(entry.value)
            if previous.state != "claimed":
                return
            revision = entry.revision
            if await self._started(s, run_id):
                fire = msgspec.structs.replace(previous, state="started", at=now)
                await self.fires.update(fkey, msgspec.json.encode(fire), last=revision)
                log.info("fire was started by the previous leader", schedule=s.name, run_id=run_id)
                return
            fire = msgspec.structs.replace(previous, by=self.svc.id, at=now,
                                           late_s=round(now - due, 3))
            revision = await self.fires.update(fkey, msgspec.json.encode(fire), last=revision)
        if skip:
            await self._event(s.name, f"schedule {s.name}: missed fire at {due:.0f} skipped "
                                      f"({now - due:.0f}s late)")
            return
        try:
            if s.test is not None:
                started = await self.svc.catalogue.start_test(s.test, None, s.overrides, run_id=run_id,
                                                              author=s.author)
                what = f"run {started.run_id} of {started.test} v{started.test_version}"
                if started.queued:
                    what += f" ({started.queued})"
            else:
                await self.svc.suites.start(s.suite or "", run_id, author=s.author, schedule=s.name)
                what = f"suite run {run_id} of {s.suite}"
            fire = msgspec.structs.replace(fire, state="started", at=time.time())
        except SurgeError as err:
            what = f"failed: {err.code}: {err.message}"
            fire = msgspec.structs.replace(fire, state="failed", error=f"{err.code}: {err.message}",
                                           at=time.time())
        try:
            await self.fires.update(fkey, msgspec.json.encode(fire), last=revision)
        except KeyWrongLastSequenceError:
            log.warning("fire record moved on meanwhile", schedule=s.name, fire=fkey)
        log.info("schedule fired", schedule=s.name, late_s=fire.late_s, outcome=what)
        await self._event(s.name, f"schedule {s.name} fired {fire.late_s:.1f}s after its time: {what}")

    async def _started(self, s: Schedule, run_id: str) -> bool:
        if s.test is not None:
            if run_id in self.svc.runs:
                return True
            try:
                await self.svc.runs_kv.get(run_id)
                return True
            except KeyNotFoundError:
                return False
        return await self.svc.suites.exists(run_id)

    async def _event(self, name: str, text: str) -> None:
        try:
            await self.svc.publish(subjects.schedule_events(firing.slug(name)),
                                   {"schedule": name, "at": time.time(), "event": text})
        except Exception as exc:
            log.warning("schedule event not published", error=str(exc))
