"""The live-generator registry as the coordinator sees it, fed by a KV watch.

A generator is gone only on evidence that it is gone, never because the coordinator
or the bus stalled. The evidence is the bus's own clock: every heartbeat is stored
by JetStream with the server's timestamp, and the watch hands them over in the
order they were stored. So once a beat stored at T has been read, every beat
stored before T has been read too, and a generator whose newest beat is older than
``T - dead_after_s`` really did not beat for that long, however late the
coordinator got to reading (a paused loop, a CPU-starved process, a backlog).

A member's newest beat read ``dead_after_s`` ago (the coordinator's healthy time) is
*overdue*: the evidence against it waits for the next entry anyone stores, up to a
heartbeat period later (a generator killed just after its beat lost its share 3.2 s
after the kill). The coordinator then has the bus stamp its own time in the same
stream (``Service.ask_bus_time``: a delete marker of ``BUS_CLOCK_KEY``), which the
watch reads in stored order like a beat: a beat the member stored before it is read
first, so the evidence is the same, only no longer late.

When nobody's beat arrives at all, the bus or every generator is silent: the
coordinator cannot tell which, so it waits ``silent_after_s`` of its own healthy
time (its loop's stalls do not count) before it calls them all gone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import msgspec
import structlog

from schemas.control import Heartbeat

log = structlog.get_logger(__name__)
_decoder = msgspec.json.Decoder(Heartbeat)

SILENT_AFTER_S = 7.0  # nobody's beat for this long (healthy time): everyone is gone


class Registry:
    def __init__(self, dead_after_s: float, silent_after_s: float = SILENT_AFTER_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.dead_after_s = dead_after_s
        self.silent_after_s = silent_after_s
        self._clock = clock
        self._wall = wall
        # id -> (beat, server time it was stored, local clock when read)
        self._beats: dict[str, tuple[Heartbeat, float, float]] = {}
        self.bus_time = 0.0  # the newest server timestamp read: how far the bus has got
        self.last_update = clock()  # any entry at all: is the feed itself alive?
        self._grace_until = 0.0  # local clock: judge nobody before (a reconnect, a takeover)

    def update(self, key: str, value: bytes | None, replay: bool = False,
               stored_at: float | None = None) -> None:
        """A KV entry arrived; ``stored_at`` is the server's timestamp of it (wall seconds).

        Without one (tests, old servers) the local wall clock stands in.
        """
        self.last_update = self._clock()
        stored = self._wall() if stored_at is None else stored_at
        if not value:
            self._beats.pop(key, None)
            self.bus_time = max(self.bus_time, stored)
            return
        try:
            beat = _decoder.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.warning("bad heartbeat ignored", key=key, error=str(exc)[:200])
            return
        if beat.id != key or not (math.isfinite(beat.capacity_rps) and beat.capacity_rps >= 0) \
                or not math.isfinite(beat.sent_at):
            log.warning("implausible heartbeat ignored", key=key)
            return
        known = self._beats.get(key)
        if replay and known is not None and known[1] > stored:
            return  # a watch restart must not make anyone older
        self._beats[key] = (beat, stored, self.last_update)
        self.bus_time = max(self.bus_time, stored)

    def stalled(self, seconds: float) -> None:
        """The coordinator's own loop did not run for ``seconds``: that silence is ours."""
        self.last_update += seconds
        self._beats = {k: (b, stored, seen + seconds) for k, (b, stored, seen) in self._beats.items()}

    def touch_all(self, extra_s: float = 0.0) -> None:
        """We were cut off from NATS, not they: judge nobody for ``extra_s`` more."""
        now = self._clock()
        self._grace_until = max(self._grace_until, now + extra_s)
        self.last_update = max(self.last_update, now)

    def quiet_for(self) -> float:
        """Seconds (healthy time) since any heartbeat arrived; long silence from all is the bus's."""
        return self._clock() - self.last_update if self._beats else 0.0

    def _is_gone(self, entry: tuple[Heartbeat, float, float] | None, silent: bool) -> bool:
        if entry is None:
            return True  # deleted: it said goodbye, or the bucket forgot it
        _, stored, _ = entry
        return silent or self.bus_time - stored >= self.dead_after_s

    def overdue(self, members: Iterable[str]) -> bool:
        """Some member's newest beat was read ``dead_after_s`` ago (healthy time) and the
        bus has not yet been read that far past it: a stamp of the bus's time settles it."""
        now = self._clock()
        if now < self._grace_until:
            return False
        for gid in members:
            entry = self._beats.get(gid)
            if entry is not None and now - entry[2] >= self.dead_after_s \
                    and self.bus_time - entry[1] < self.dead_after_s:
                return True
        return False

    def _silent(self) -> bool:
        return self.quiet_for() >= self.silent_after_s

    def gone(self, members: Iterable[str]) -> list[str]:
        """The members there is evidence against: the bus went on without them, or
        everyone has been silent for ``silent_after_s``. Nobody during a grace."""
        if self._clock() < self._grace_until:
            return []
        silent = self._silent()
        return [g for g in members if self._is_gone(self._beats.get(g), silent)]

    def alive(self) -> dict[str, Heartbeat]:
        silent = self._silent()
        return {k: e[0] for k, e in self._beats.items() if not self._is_gone(e, silent)}

    def is_alive(self, gid: str) -> bool:
        return not self._is_gone(self._beats.get(gid), self._silent())

    def get(self, gid: str) -> Heartbeat | None:
        entry = self._beats.get(gid)
        return entry[0] if entry else None

    def stored_at(self, gid: str) -> float | None:
        """The server time of ``gid``'s newest beat read."""
        entry = self._beats.get(gid)
        return entry[1] if entry else None
