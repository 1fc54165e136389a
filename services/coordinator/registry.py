"""The live-generator registry as the coordinator sees it, fed by a KV watch.

A generator is alive while its heartbeats keep coming: ``dead_after_s`` without one
and it is gone, whether or not the bucket's TTL has removed its key yet.
"""

from __future__ import annotations

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

    def update(self, key: str, value: bytes | None, replay: bool = False) -> None:
        """A KV entry arrived; ``replay`` entries (watch start) are aged by their own clock."""
        if not value:
            self._beats.pop(key, None)
            return
        try:
            beat = _decoder.decode(value)
        except msgspec.DecodeError as exc:
            log.warning("bad heartbeat ignored", key=key, error=str(exc))
            return
        seen = time.monotonic()
        if replay:
            seen -= min(max(time.time() - beat.sent_at, 0.0), self.dead_after_s * 10)
        self._beats[key] = (beat, seen)

    def alive(self) -> dict[str, Heartbeat]:
        now = time.monotonic()
        return {k: b for k, (b, seen) in self._beats.items() if now - seen < self.dead_after_s}

    def is_alive(self, gid: str) -> bool:
        entry = self._beats.get(gid)
        return entry is not None and time.monotonic() - entry[1] < self.dead_after_s

    def get(self, gid: str) -> Heartbeat | None:
        entry = self._beats.get(gid)
        return entry[0] if entry else None
