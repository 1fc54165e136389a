"""When schedules fire: times, cron expressions in time zones, and fire identities. Pure.

Cron expressions are read by ``cronsim`` (5 fields, or 6 with seconds first) in the
schedule's IANA time zone, so "0 2 * * *" in Europe/Berlin stays at 02:00 local time
across daylight-saving changes. A fire is named by its schedule and its time; the run
it starts has an id derived from both, the same on whichever coordinator fires it.
"""

from __future__ import annotations

import re
import time
import zlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from schemas.errors import BadRequest, InvalidPlan
from schemas.schedules import Schedule
from services.plan import loader

MAX_LOOKAHEAD = 5


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)",
                         "tz") from None


def check_cron(expr: str, tz: str) -> None:
    try:
        CronSim(expr, datetime.now(zone(tz)))
    except CronSimError as exc:
        raise BadRequest(f"not a cron expression: {expr!r} ({exc})", "cron") from None


def parse_at(value: str | float, tz: str, now: float | None = None) -> float:
    """ISO 8601 (an offset-less time is in ``tz``), unix seconds, or ``+30s``/``+2h`` from now."""
    now = time.time() if now is None else now
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    if text.startswith("+"):
        try:
            return now + float(loader.parse_duration(text[1:], "at"))
        except InvalidPlan:
            raise BadRequest(f"not a duration after '+': {value!r} (use e.g. +30s, +2h)", "at") from None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadRequest(f"not an ISO 8601 time: {value!r} (e.g. 2026-12-01T02:00:00+01:00, "
                         "or +30s from now)", "at") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return dt.timestamp()


def next_after(s: Schedule, t: float) -> float | None:
    """The schedule's first fire strictly after ``t``, or None (a one-off already past)."""
    if s.at is not None:
        return s.at if s.at > t else None
    start = datetime.fromtimestamp(t, zone(s.tz))
    return next(iter(CronSim(s.cron or "", start))).timestamp()


def latest_at_or_before(s: Schedule, t: float) -> float | None:
    """The schedule's last fire at or before ``t`` (None if it has none)."""
    if s.at is not None:
        return s.at if s.at <= t else None
    start = datetime.fromtimestamp(t, zone(s.tz)) + timedelta(seconds=1)
    return next(iter(CronSim(s.cron or "", start.replace(microsecond=0), reverse=True))).timestamp()


def next_fires(s: Schedule, after: float, n: int = MAX_LOOKAHEAD) -> list[float]:
    out: list[float] = []
    t = after
    while len(out) < n:
        nxt = next_after(s, t)
        if nxt is None:
            break
        out.append(nxt)
        t = nxt
    return out


def fire_key(slug: str, fire_at: float) -> str:
    """KV key of one fire: the schedule's slug and the fire time in milliseconds."""
    return f"{slug}.{round(fire_at * 1000)}"


def fire_run_id(name: str, fire_at: float) -> str:
    """The id of the run a fire starts: the same on every coordinator that handles it."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(fire_at))
    return f"{stamp}-s{zlib.crc32(name.encode()):08x}"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "schedule"
