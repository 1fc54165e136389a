"""Who is in a run: members lost (on evidence), members silent, idle generators joining.

Every tick of a running run asks the registry (registry.py) who is gone and who beats
without running the assignment, and moves their shares to the others (a new epoch, at
most one a second, a gap in the timeline and an event); a run whose plan does not fix
``generators:`` takes idle generators of its pool as they appear (hot add).
``Run`` takes these methods (``class Run(..., Membership, ...)``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from schemas.control import RunRecord
from services.plan import profile

if TYPE_CHECKING:
    from services.coordinator.aggregate import RunAggregate
    from services.coordinator.config import Config
    from services.coordinator.runs import Fleet
    from services.coordinator.store import RunStore

FINAL_GRACE_S = 3.0  # after the last request may have timed out, stop waiting for finals
SILENT_AFTER_S = 0.5  # a beat stored this long after the start saying "not running": silent
RESHARE_EVERY_S = 1.0  # at most one rebalance (new epoch of shares) a second


class Membership:
    """A running run's members, kept honest (runs.py)."""

    record: RunRecord
    store: RunStore
    fleet: Fleet
    agg: RunAggregate
    config: Config
    shares: dict[str, float]
    held: dict[str, float]
    paused: dict[str, float]
    lost: set[str]
    silent: set[str]
    merged_upto: dict[str, int]
    joined_at: dict[str, float]
    finish_by: float | None
    _reshared_at: float
    # and of Run's methods: run_id, elapsed_s, _reshare, _release, _save, _event

    async def _check_members(self) -> None:
        # Evidence only (registry.gone): a member is gone when the bus went on without
        # its beat, or when everyone has been silent for long; a stall of ours or of the
        # bus's, or a backlog of beats not read yet, is no evidence.
        if self.fleet.registry.overdue(self.shares):
            self.fleet.ask_bus_time()  # read back by the watch within a tick or two
        gone = self.fleet.registry.gone(self.shares)
        if not gone or not self._may_reshare():
            return
        for gid in gone:
            del self.shares[gid]
            self.held.pop(gid, None)
            self.paused.pop(gid, None)
            self.lost.add(gid)
            await self._event(f"generator {gid} lost{await self.store.last_words(self.run_id, gid)}",
                              gap=True)
        if not self.shares:
            self.log.error("every generator of the run is gone")
            await self._save(state="stopping", error="all generators lost")
            self.finish_by = time.time() + FINAL_GRACE_S
            return
        await self._reshare()
        for gid in gone:
            await self._release(gid)

    async def _check_silent(self, now: float) -> None:
        """A member alive but not running its assignment (its heartbeat, stored well after
        the assignment, says so), or alive and saying it runs but none of whose intervals
        came while the others' came for a later second (its first second closed without
        it): it sends nothing. Say so, mark the second, move its share."""
        if now >= self.record.end_at - 1.0:
            return  # members finishing on time say "idle" too
        silent: dict[str, str] = {}
        start_at = self.record.start_at
        for gid in self.shares:
            if gid in self.paused:
                continue
            beat = self.fleet.registry.get(gid)
            stored = self.fleet.registry.stored_at(gid)
            if beat is None or stored is None:
                continue
            since = max(start_at, self.joined_at.get(gid, 0.0))
            if not (beat.state == "running" and beat.run_id == self.run_id):
                if stored >= since + SILENT_AFTER_S:
                    silent[gid] = "is alive but not running its assignment"
            elif gid not in self.agg.gens:
                # evidence, not a clock: the bus brought the others' intervals of a second
                # after its first, and that first second waited for it as long as any does
                first = int(since - start_at) + (since > start_at)  # a hot add's first whole second
                if (self._newest_merged() > first
                        and now >= start_at + first + 1 + self.config.merge_wait_s):
                    silent[gid] = "says it runs its assignment but sends no intervals"
        if not silent or not self._may_reshare():
            return
        for gid, why in silent.items():
            del self.shares[gid]
            self.held.pop(gid, None)
            self.lost.add(gid)
            self.silent.add(gid)
            await self._event(f"generator {gid} {why}; its share moved", gap=True)
        if not self.shares:
            await self._save(state="stopping", error="no generator runs the assignment")
            self.finish_by = now + FINAL_GRACE_S
            return
        await self._reshare()
        for gid in silent:
            await self._release(gid)

    def _newest_merged(self) -> int:
        """The latest second whose intervals the bus has brought: with merger workers,
        the one every worker has handed rows of (a worker that hands over late still
        holds some generators' earlier seconds, which is no evidence against them; one
        that has handed nothing over yet leaves no evidence at all)."""
        if not self.config.mergers:
            return self.agg.newest_seq
        upto = self.merged_upto
        return min(upto.values()) if len(upto) >= self.config.mergers else -1

    def _may_reshare(self) -> bool:
        """At most one new epoch of shares per RESHARE_EVERY_S: what changes meanwhile
        (more generators lost or joining) is taken together in the next one."""
        return time.monotonic() - self._reshared_at >= RESHARE_EVERY_S

    async def _hot_add(self) -> None:
        if self.elapsed_s() > profile.duration(self.record.profile) - 1.0:
            return  # too late to be worth it
        joining = self.fleet.idle_generators(self.record.plan.generator_labels)  # its pool only
        if not joining or not self._may_reshare():
            return
        joining = [g for g in joining if g not in self.silent]
        if not joining:
            return
        for gid in joining:
            self.shares[gid] = 0.0
            self.joined_at[gid] = time.time()
            # one lost earlier and back (a stall, a bus restart) runs again from its next
            # second: the run waits for its new final interval, not the one it sent then
            self.agg.finals.discard(gid)
            await self._event(f"generator {gid} joined")
        await self._reshare()
