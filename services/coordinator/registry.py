"""The live-generator registry as the coordinator sees it, fed by a KV watch.

A generator is alive while its heartbeats keep coming: ``dead_after_s`` without one
and it is gone, whether or not the bucket's TTL has removed its key yet.
"""

from __future__ import annotations

import math
import time

import msgspec
import structlog

from schemas.control import Heartbeat

log = structlog.get_logger(__name__)
_decoder = msgspec.json.Decoder(Heartbeat)


class Registry:
    def __init__(self, dead_after_s: float) -> None:
        self.dead_after_s = dead_after_s
        self._beats: dict[str, tuple[Heartbeat, float]] = {}  # id -> (beat, monotonic seen)
        self.last_update = time.monotonic()  # any entry at all: is the feed itself alive?

    def update(self, key: str, value: bytes | None, replay: bool = False) -> None:
        """A KV entry arrived; ``replay`` entries (watch start) are aged by their own clock."""
        self.last_update = time.monotonic()
        if not value:
            self._beats.pop(key, None)
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
        seen = time.monotonic()
        if replay:
            seen -= min(max(time.time() - beat.sent_at, 0.0), self.dead_after_s * 10)
            known = self._beats.get(key)
            if known is not None:  # a watch restart must not make anyone older
                seen = max(seen, known[1])
        self._beats[key] = (beat, seen)

    def touch_all(self, extra_s: float = 0.0) -> None:
        """We were cut off from NATS, not they: restart every generator's dead timer."""
        now = time.monotonic() + extra_s
        self._beats = {k: (b, max(seen, now)) for k, (b, seen) in self._beats.items()}

    def quiet_for(self) -> float:
        """Seconds since any heartbeat arrived; long silence from everyone is the bus's."""
        return time.monotonic() - self.last_update if self._beats else 0.0

    def alive(self) -> dict[str, Heartbeat]:
        now = time.monotonic()
        return {k: b for k, (b, seen) in self._beats.items() if now - seen < self.dead_after_s}

    def is_alive(self, gid: str) -> bool:
        entry = self._beats.get(gid)
        return entry is not None and time.monotonic() - entry[1] < self.dead_after_s

    def get(self, gid: str) -> Heartbeat | None:
        entry = self._beats.get(gid)
        return entry[0] if entry else None
