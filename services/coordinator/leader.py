"""The coordinator leader lease: one leader among any number of coordinators.

The lease is one key in KV ``surge_leader`` (bucket TTL = the lease time). A
coordinator claims it with ``create`` (only if absent) or, when the holder has
gone quiet, with ``update(last=revision)`` against the revision it watched go
stale; the leader keeps it with ``update(last=its revision)`` every ``renew_s``.
Compare-and-set by revision means two coordinators can never both succeed.

Staleness is judged by the observer's own monotonic clock (the revision has not
changed for ``lease_s``), so clock skew between hosts does not matter. A leader
that cannot renew for ``fence_s`` (< ``lease_s``) stops acting (``holds()``) before any
standby may take over: at most one coordinator acts at a time. It does not give
up its state: if the next renewal succeeds (a NATS restart, say, with nobody else
claiming the lease) it carries on; if the revision moved on, it has lost — unless the
newest value is its own, this term: a renewal whose answer a stalled server lost had
landed, and it carries on from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import Lease

log = structlog.get_logger(__name__)
_decoder = msgspec.json.Decoder(Lease)


class LeaderLease:
    def __init__(
        self,
        kv: KeyValue,
        holder: str,
        *,
        lease_s: float = 3.0,
        renew_s: float = 1.0,
        poll_s: float = 0.25,
        on_elected: Callable[[Lease | None], Awaitable[None]],
        on_lost: Callable[[str], Awaitable[None]],
    ) -> None:
        self.kv = kv
        self.holder = holder
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.poll_s = poll_s
        self.fence_s = lease_s * 0.7
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.is_leader = False
        self.term = 0
        self._revision = 0
        self._renewed_mono = 0.0
        self._seen: tuple[int, float] | None = None  # (revision, monotonic first seen)
        # the last lease a standby read: when the key has expired (bucket TTL) by the time
        # it claims, this is still who it takes over from and until when that one renewed
        self._last_lease: Lease | None = None
        self.log = log.bind(holder=holder)

    def holds(self) -> bool:
        """Leader, and recently enough confirmed so that no standby can have taken over."""
        return self.is_leader and time.monotonic() - self._renewed_mono < self.fence_s

    def _value(self) -> bytes:
        return msgspec.json.encode(
            Lease(holder=self.holder, term=self.term, renewed_at=time.time(), lease_s=self.lease_s)
        )

    async def run(self) -> None:
        while True:
            try:
                if self.is_leader:
                    await self._renew()
                else:
                    await self._try_claim()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep trying, fence below
                self.log.warning("lease round failed", error=str(exc), leader=self.is_leader)
            await asyncio.sleep(self.renew_s if self.is_leader else self.poll_s)

    async def _renew(self) -> None:
        """One renewal, bounded to ``renew_s`` (a publish in flight when NATS went away
        would otherwise wait nats-py's 5-s timeout, past the fence). A renewal whose
        answer was lost may still have landed; the next one then finds the revision moved
        on, by our own hand: ``_landed`` tells that from a takeover."""
        started = time.monotonic()
        try:
            self._revision = await asyncio.wait_for(
                self.kv.update(subjects.LEADER_KEY, self._value(), last=self._revision), self.renew_s)
        except KeyWrongLastSequenceError:
            if not await self._landed():
                await self._lose("lease taken over")
            return
        except KeyNotFoundError:
            await self._lose("lease expired")
            return
        self._renewed_mono = started

    async def _landed(self) -> bool:
        """The lease's newest value is ours, this term: a renewal we saw no answer to
        landed. Carry on from its revision (it is not counted as a renewal: when it landed
        is unknown, so the fence keeps the last one we saw answered)."""
        try:
            entry = await asyncio.wait_for(self.kv.get(subjects.LEADER_KEY), self.renew_s)
            lease = _decoder.decode(entry.value or b"")
        except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError):
            return False
        if lease.holder != self.holder or lease.term != self.term:
            return False
        self.log.info("a renewal with no answer had landed", revision=entry.revision)
        self._revision = entry.revision or 0
        return True

    async def _try_claim(self) -> None:
        previous: Lease | None = None
        started = time.monotonic()
        try:
            entry = await self.kv.get(subjects.LEADER_KEY)
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            self._seen = None
            previous = self._last_lease
            revision = await self._claim(None)
        else:
            try:
                previous = _decoder.decode(entry.value)
            except (msgspec.DecodeError, UnicodeDecodeError):
                previous = None
            self._last_lease = previous
            rev = entry.revision or 0
            if self._seen is None or self._seen[0] != rev:
                self._seen = (rev, time.monotonic())
                return  # fresh (to us): the holder is alive as far as we know
            if time.monotonic() - self._seen[1] < self.lease_s:
                return
            self.term = max(self.term, previous.term if previous else 0)
            revision = await self._claim(rev)
        if revision is None:
            return
        self._revision = revision
        self._renewed_mono = started
        self.is_leader = True
        self._seen = None
        self._last_lease = None
        self.log.info("leader lease acquired", term=self.term,
                      previous=previous.holder if previous else None)
        await self.on_elected(previous)

    async def _claim(self, last: int | None) -> int | None:
        self.term += 1
        try:
            if last is None:
                return await self.kv.create(subjects.LEADER_KEY, self._value())
            return await self.kv.update(subjects.LEADER_KEY, self._value(), last=last)
        except KeyWrongLastSequenceError:
            return None  # another standby was faster

    async def _lose(self, why: str) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        self.log.warning("leader lease lost", why=why)
        await self.on_lost(why)

    async def release(self) -> None:
        """Graceful shutdown: delete the key so a standby claims it at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            await self.kv.delete(subjects.LEADER_KEY, last=self._revision)
        except Exception as exc:
            self.log.warning("could not release the lease", error=str(exc))
