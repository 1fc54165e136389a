"""The fast path's closed model: users on the engine's own keep-alive connections.

One user is one connection (``http.Connection``), as a k6 VU, a JMeter thread or a wrk
connection each has its own: it sends its next request (the next entry of the weighted
request table) as soon as its previous response completes, after ``think_s`` if given
(a ``call_later``, no task). Latency counts from when the request was due — the previous
response's end, or the think time's — so with no think time it is the service time.

How many users (``ClosedLoop.users``): a fixed number (``Engine.start_closed``: tests and
the bench's primitive), or the plan's closed model for a plan with static or templated
requests (``users`` + ``duration``, or ``user_stages``; ``Engine.start``): this
generator's part of the users the plan asks for at each moment
(``profile.users_of``: by its position among the run's generators, which a rebalance
changes, then split among its ``SURGE_WORKERS`` engines the same way, so the parts add
up). Every ``USERS_EVERY_S`` the number is looked at again: a new user opens a
connection and sends once it is up; a user beyond the number retires after its current
response (a request in flight is never cut). ``connections`` does not cap users here
(docs/engine.md, "Closed model"). No request starts at or after the run's end (the
schedule's end, a stop, a drain); what is in flight then is the drain's.

The per-response path (``next_for``) is one comparison more than a request: everything
else (a retirement, the end, a think time) waits behind ``until``, the time from which
a response looks at more than its user's next request (0 with a think time: always).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from services.generator.pacing import INF
from services.plan.profile import users_for, users_of

if TYPE_CHECKING:
    from services.generator.engine import Engine
    from services.generator.http import Connection

USERS_EVERY_S = 0.050  # how often the plan's number of users is looked at (here and flows.Users)
CONNECT_RETRY_S = 0.05  # a user whose connect failed tries again after this (no hot spin)

_now = time.monotonic


class ClosedLoop:
    """An engine's users (see the module's doc). ``users``: a fixed number for the whole
    engine's generator (split among its worker engines), or None: the plan's."""

    def __init__(self, engine: Engine, users: int | None = None, think_s: float = 0.0) -> None:
        self.engine = engine
        self.fixed = users
        self.think_s = max(think_s, 0.0)
        self.end_at = INF  # loop time of the run's end: no request starts at or after it
        self.until = INF  # a response at or after this does more than send (retire, end, think)
        self.arrivals, self.table, self.payloads = engine.arrivals, engine.table, engine.payloads
        self._timer: asyncio.TimerHandle | None = None
        self.retrying = 0  # users whose connect failed, waiting ``CONNECT_RETRY_S`` to dial again

    def users(self, t: float) -> int:
        """This engine's users at run time ``t``."""
        eng = self.engine
        if self.fixed is not None:
            return users_for(self.fixed, eng.worker, eng.stride)
        return users_of(eng.plan, t, eng.index, eng.count, eng.worker, eng.stride)

    # --- control (the engine calls these) ------------------------------------------
    def attach(self, t0: float, end_s: float = INF) -> None:
        """Take over the engine's free connections from run time 0 (loop time ``t0``) until
        ``end_s``; no user yet."""
        eng = self.engine
        eng.closed, eng.closed_loop, eng.pacing, eng.t0 = self, True, True, t0
        eng.max_conns = 0
        eng._next_for = self.next_for  # type: ignore[method-assign]
        self.end_at = t0 + end_s
        self.until = 0.0 if self.think_s else self.end_at

    def start(self, t0: float, end_s: float = INF) -> None:
        """Users from loop time ``t0`` (now, if it has passed)."""
        self.attach(t0, end_s)
        self._timer = self.engine.loop.call_later(max(t0 - _now(), 0.0), self.follow)

    def look(self) -> None:
        """The number may have changed (a rebalance): look at it on the loop's next pass."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self.engine.loop.call_soon(self.follow)  # type: ignore[assignment]

    def rebase(self, end_s: float) -> None:
        """A new schedule: the run now ends at ``end_s`` (a stop cuts it)."""
        self.end_at = self.engine.t0 + end_s
        self.until = min(self.until, self.end_at)
        self.look()

    def stop(self) -> None:
        """No user sends again; a request in flight goes on (the drain's)."""
        self.until = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def follow(self) -> None:
        """Open connections for new users, let users beyond the number retire after their
        response, end the run at its end; then again in ``USERS_EVERY_S``."""
        self._timer = None
        eng = self.engine
        if not eng.pacing:
            return
        now = _now()
        if now < eng.t0:  # a rebalance before the start
            self._timer = eng.loop.call_later(eng.t0 - now, self.follow)
            return
        if now >= self.end_at:  # the run's end, as the open model's pacer ends it
            eng.pacing = False
            self.stop()
            return
        want = self.users(now - eng.t0)
        have = len(eng.conns) + eng.connecting + self.retrying  # a user waiting to redial is one
        eng.max_conns = want
        for _ in range(want - have):
            eng._open()
        if have > want:
            self.until = 0.0  # the next responses retire users
        if self.fixed is None or self.end_at < INF:
            delay = USERS_EVERY_S if self.fixed is None else INF
            self._timer = eng.loop.call_later(min(delay, self.end_at - now), self.follow)

    # --- a user's next request -------------------------------------------------------
    def next_for(self, conn: Connection, now: float) -> None:
        """Its response came (or its connection is up): the user sends its next request."""
        if now >= self.until and self._held(conn, now):
            return
        arr = self.arrivals  # its request count: the next entry of the whole table
        i = arr.i
        arr.i = i + 1
        table = self.table
        name_i = table[i % len(table)]
        self.engine.cur.sent += 1
        conn.send(name_i, self.payloads[name_i], now, now)

    def _think_done(self, conn: Connection, due: float) -> None:
        eng = self.engine
        eng.thinking -= 1
        if conn.closed or conn not in eng.conns:
            return  # its connection was lost meanwhile; a replacement carries the user
        now = _now()
        if self._stops(conn, now):
            return
        name_i = self._next_name()
        eng.cur.sent += 1
        # latency from when the user meant to send (the timer may fire a tick late)
        conn.send(name_i, self.payloads[name_i], min(due, now), now)

    def _next_name(self) -> int:
        """The request a user sends next (``next_for`` has it inline): each engine walks
        the whole weighted table, so its users' requests follow the plan's weights
        whatever its part of the users (every ``workers``-th entry, as the open model's
        arrivals are split, made a rare request one engine process's only)."""
        arr = self.arrivals
        i = arr.i
        arr.i = i + 1
        return self.table[i % len(self.table)]

    def _held(self, conn: Connection, now: float) -> bool:
        """True when the user does not send now: it stops (``_stops``) or thinks first;
        else ``until`` moves on to the end."""
        if self._stops(conn, now):
            return True
        if self.think_s:
            eng = self.engine
            eng.thinking += 1  # a thinking user is not idle: in_flight counts it
            eng.loop.call_later(self.think_s, self._think_done, conn, now + self.think_s)
            return True
        self.until = self.end_at
        return False

    def _stops(self, conn: Connection, now: float) -> bool:
        """The run has ended (the connection waits idle for the drain), or there are more
        users than wanted (this one retires)."""
        eng = self.engine
        if not eng.pacing or now >= self.end_at:
            eng.idle.append(conn)
            return True
        if len(eng.conns) + eng.connecting > eng.max_conns:
            eng._retire(conn)
            return True
        return False

    # --- connections -----------------------------------------------------------------
    def connect_failed(self, took_s: float) -> None:
        """A user's connect failed after ``took_s``: its request fails (``connect``; its
        latency is that wait, the user's request was due when it dialled), and it tries
        again a moment later."""
        eng = self.engine
        if not eng.pacing or _now() >= self.end_at:
            return
        eng.cur.sent += 1
        eng.cur.record(self._next_name(), took_s, took_s, "connect")
        self.retrying += 1
        eng.loop.call_later(CONNECT_RETRY_S, self._reopen)

    def _reopen(self) -> None:
        eng = self.engine
        self.retrying -= 1
        if eng.pacing and len(eng.conns) + eng.connecting < eng.max_conns:
            eng._open()
