"""This generator's log lines for a run, shipped to the SURGE_LOGS stream, bounded.

Every line the generator process logs at info or above (the logging tap of
``services.common.logs``) while it runs a test goes to ``surge.logs.<run>.<gen>``:
at most ``per_s`` info lines a second, the rest counted and said in one line when the
next second begins; warnings and errors always. Publishing is fire-and-forget (a core
publish the stream captures): a log line never holds up load or stats. What a run's
seconds say in that log (trouble when it happens, progress every 10 s) is ``log_second``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client

from schemas import subjects
from schemas.logs import LogLevel, LogLine
from schemas.stats import IntervalStats

log = structlog.get_logger(__name__)

_LEVELS: dict[str, LogLevel] = {"info": "info", "warning": "warning", "warn": "warning",
                                "error": "error", "exception": "error", "critical": "error"}
_NOT_SHOWN = {"event", "level", "timestamp", "service", "generator_id", "run_id", "exception"}


class LogBudget:
    """At most ``per_s`` info lines per whole second; warnings and errors always. Pure."""

    def __init__(self, per_s: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = max(per_s, 0)
        self.clock = clock
        self.second = -1
        self.used = 0
        self.suppressed = 0

    def admit(self, level: LogLevel) -> tuple[bool, int]:
        """(ship this line?, info lines held back in the seconds before: say so first)."""
        now = int(self.clock())
        held_back = 0
        if now != self.second:
            self.second, self.used = now, 0
            held_back, self.suppressed = self.suppressed, 0
        if level != "info":
            return True, held_back
        if self.used < self.per_s:
            self.used += 1
            return True, held_back
        self.suppressed += 1
        return False, held_back


def message_of(event_dict: dict[str, Any]) -> str:
    """``event key=value ...``, and an exception's last line (its type and message)."""
    parts = [str(event_dict.get("event", ""))]
    parts += [f"{k}={v}" for k, v in event_dict.items() if k not in _NOT_SHOWN]
    exc = event_dict.get("exception")
    if exc:
        parts.append("| " + str(exc).strip().splitlines()[-1])
    return " ".join(parts)


class RunLog:
    """The tap: ships the current run's lines; ``publish(subject, data)`` must not block."""

    def __init__(self, generator_id: str, per_s: int, publish: Callable[[str, bytes], None]) -> None:
        self.generator_id = generator_id
        self.budget = LogBudget(per_s)
        self.publish = publish
        self.run_id: str | None = None  # the run being carried out, if any
        self._inside = False

    def __call__(self, level: str, event_dict: dict[str, Any]) -> None:
        lvl = _LEVELS.get(level)
        run_id = event_dict.get("run_id") or self.run_id
        if lvl is None or not run_id or self._inside:
            return
        self._inside = True  # whatever publishing logs is not shipped again
        try:
            ship, held_back = self.budget.admit(lvl)
            if held_back:
                self.ship(run_id, "info", f"{held_back} info lines not shipped "
                                          f"(limit {self.budget.per_s}/s; warnings always are)")
            if ship:
                self.ship(run_id, lvl, message_of(event_dict))
        finally:
            self._inside = False

    def ship(self, run_id: str, level: LogLevel, message: str) -> None:
        line = LogLine(run_id=str(run_id), generator_id=self.generator_id, at=time.time(),
                       level=level, message=message[:4000])
        self.publish(subjects.logs(str(run_id), self.generator_id), msgspec.json.encode(line))


def publisher(nc: Client) -> Callable[[str, bytes], None]:
    """A core publish from synchronous code (the log tap): never waits, never raises."""
    def publish(subject: str, data: bytes) -> None:
        if nc.is_closed:
            return
        task = asyncio.get_running_loop().create_task(nc.publish(subject, data))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    return publish


def log_second(s: IntervalStats, why: dict[str, str] | None = None, closed: bool = False) -> None:
    """A run's second in its log (SURGE_LOGS): trouble each second it happens (with the
    first reason of each error kind, ``why``), progress every 10 s. ``closed``: a closed
    model's second, where nothing falls due (its users send as they go)."""
    errors: dict[str, int] = {}
    late = dropped = done = 0
    for r in s.requests.values():
        done += r.count
        late += r.late
        dropped += r.dropped
        for kind, n in r.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    if errors:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(errors.items()))
        log.warning(f"second {s.seq}: {sum(errors.values())} errors ({kinds})", run_id=s.run_id)
        for kind, text in sorted((why or {}).items()):
            log.warning(f"second {s.seq}: {kind}: {text}", run_id=s.run_id)
    if late or dropped:
        log.warning(f"second {s.seq}: behind its schedule, {late} late, {dropped} dropped",
                    run_id=s.run_id)
    if s.final or s.seq % 10 == 0:
        due = "" if closed else f" of {s.target:g} due"
        log.info(f"second {s.seq}: sent {s.sent}{due}, {done} completed, "
                 f"{s.in_flight} in flight", run_id=s.run_id)
