"""Per-generator control of a running run (docs/fleet.md): one generator's own rate, a
generator stopped or started, and the checks every rate change makes.

A generator's own rate holds from now to the end of the run, like ``surge rate``; the
profile is held at the sum, so the timeline's target is the new total. ``Run`` takes
these methods (``class Run(GeneratorControl, ...)``): they share its state and its lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec

from schemas.control import RunRecord
from schemas.errors import Conflict, NotFound
from services.common import labels
from services.coordinator import slicing
from services.plan import profile

if TYPE_CHECKING:
    from services.coordinator.runs import Fleet


class GeneratorControl:
    """The per-generator requests of the API, on a run's state (runs.py)."""

    record: RunRecord
    fleet: Fleet
    shares: dict[str, float]
    held: dict[str, float]
    paused: dict[str, float]
    joined_at: dict[str, float]
    changes_waiting: dict[int, tuple[float, set[str], list[float]]]
    _lock: asyncio.Lock
    # and of Run's methods: run_id, elapsed_s, _capacities, _assign_all, _save, _event

    def _controllable(self, what: str) -> None:
        if self.record.state != "running":
            raise Conflict(f"run {self.run_id} is {self.record.state}; cannot {what}")
        if self.record.plan.model == "closed":  # virtual users: the rate is their outcome
            raise Conflict(f"run {self.run_id} runs virtual users (closed model); cannot {what}")

    def _member(self, gid: str) -> None:
        if gid not in self.shares:
            raise NotFound(f"generator {gid} is not in run {self.run_id} "
                           f"(its generators: {', '.join(sorted(self.shares))})", "generator")

    def _rates_now(self, at: float) -> dict[str, float]:
        total = profile.rate_at(self.record.profile, at)
        return {g: total * s for g, s in self.shares.items()}

    async def _apply_held(self, at: float, total: float) -> int:
        """Hold the run's total from ``at``; shares follow ``held`` (the lock is held)."""
        total, self.shares = slicing.split(total, self._capacities(), self.held)
        self.record = msgspec.structs.replace(
            self.record, profile=profile.hold_rate(self.record.profile, at, total),
            epoch=self.record.epoch + 1,
        )
        await self._assign_all()
        await self._save(target_rps=total)
        self.changes_waiting[self.record.epoch] = (time.time(), set(self.shares), [])
        return self.record.epoch

    async def set_generator_rate(self, gid: str, rate: float, by: str = "") -> int:
        async with self._lock:
            self._controllable("change a generator's rate")
            self._member(gid)
            at = max(self.elapsed_s(), 0.0)
            rates = self._rates_now(at)
            self.paused.pop(gid, None)
            self.held[gid] = rate
            total = sum(rates.values()) - rates[gid] + rate
            epoch = await self._apply_held(at, total)
            await self._event(f"generator {gid} rate set to {rate:g}/s{by_whom(by)}; "
                              f"total {self.record.target_rps:g}/s")
            return epoch

    async def stop_generator(self, gid: str, by: str = "") -> int:
        async with self._lock:
            self._controllable("stop a generator")
            self._member(gid)
            if gid in self.paused:
                raise Conflict(f"generator {gid} is already stopped in run {self.run_id}")
            at = max(self.elapsed_s(), 0.0)
            rates = self._rates_now(at)
            self.paused[gid] = rates[gid]
            self.held[gid] = 0.0
            epoch = await self._apply_held(at, sum(rates.values()) - rates[gid])
            await self._event(f"generator {gid} stopped{by_whom(by)}; total {self.record.target_rps:g}/s")
            return epoch

    async def start_generator(self, gid: str, by: str = "") -> int:
        """Restart a generator stopped in this run at its rate before, or add an idle
        one of the run's pool at the running members' mean rate; the total grows."""
        async with self._lock:
            self._controllable("start a generator")
            at = max(self.elapsed_s(), 0.0)
            rates = self._rates_now(at)
            if gid in self.paused:
                rate = self.paused.pop(gid)
                what = "started again"
            elif gid in self.shares:
                raise Conflict(f"generator {gid} is already running in run {self.run_id}")
            else:
                self._joinable(gid)
                running = [rates[g] for g in self.shares if g not in self.paused]
                pool = running or list(self.paused.values())
                rate = sum(pool) / len(pool) if pool else 0.0
                self.shares[gid] = 0.0
                self.joined_at[gid] = time.time()  # its idle beats until it starts are no silence
                what = "added"
            self.held[gid] = rate
            epoch = await self._apply_held(at, sum(rates.values()) + rate)
            await self._event(f"generator {gid} {what}{by_whom(by)} at {rate:g}/s; "
                              f"total {self.record.target_rps:g}/s")
            return epoch

    def _joinable(self, gid: str) -> None:
        beat = self.fleet.registry.alive().get(gid)
        if beat is None:
            raise NotFound(f"no live generator {gid}", "generator")
        wanted = self.record.plan.generator_labels
        if gid not in self.fleet.idle_generators():
            raise Conflict(f"generator {gid} is busy ({beat.run_id or beat.state})", "generator")
        if not labels.matches(beat.labels, wanted):
            raise Conflict(f"generator {gid} ({labels.show(beat.labels) or 'no labels'}) is not in "
                           f"the run's pool {labels.show(wanted)}", "generator")


def by_whom(who: str) -> str:
    """`` by <who>`` for an event's text: who asked for the change (empty: nobody said)."""
    return f" by {who}" if who else ""
