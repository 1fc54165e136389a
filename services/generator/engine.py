"""The open-model load engine: arrivals on schedule, a connection pool, outcome recording.

No NATS in here. The service gives the engine a plan and a ``Schedule`` anchored at
a loop-clock time; the engine sends arrival ``i`` at its intended time whatever the
target does, and measures latency from that intended time, so a stalled target
shows in the percentiles instead of slowing the load down (coordinated omission).

When no connection is free an arrival waits in a backlog; sent more than
``LATE_S`` after its intended time it counts as *late*; still waiting after the
plan's timeout it is *dropped* (never sent). Both are reported, never hidden.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time

import structlog

from schemas.plan import Plan
from services.generator.http import (
    READ_SIZE, CheckedConnection, Connection, encode_request, target_address,
)
from services.generator.pacing import INF, Schedule
from services.generator.recorder import Interval

log = structlog.get_logger(__name__)

LATE_S = 0.010  # sent this long after its intended time: late
SWEEP_S = 0.050  # how often timeouts and stale backlog are checked
MAX_SLEEP_S = 0.010  # the pacer wakes at least this often (rebase, stop)
MIN_SLEEP_S = 0.001  # uvloop's timer resolution
MAX_BACKLOG = 200_000  # arrivals waiting for a connection; more are dropped at once (memory)
TABLE_SIZE = 1000  # arrivals per cycle of the weighted request table
CONNECT_RETRY_S = 0.05  # a closed-loop user whose connect failed tries again after this

# uvloop's loop.time() is libuv's cached millisecond clock: too coarse to measure
# sub-millisecond responses. Every timestamp in the engine comes from here.
_now = time.monotonic


def weighted_table(weights: list[int], size: int = TABLE_SIZE, seed: int = 0) -> list[int]:
    """A shuffled cycle of spec indexes in proportion to their weights.

    Exact when the reduced weights fit in ``size`` (they are repeated to fill it);
    otherwise largest-remainder apportionment, keeping at least one slot for every
    positive weight so that no request kind is silently never sent.
    """
    positive = [w for w in weights if w > 0]
    if not positive:
        raise ValueError("no positive weight")
    g = 0
    for w in positive:
        g = math.gcd(g, w)
    reduced = [w // g for w in weights]
    total = sum(reduced)
    if total <= size:
        counts = [w * max(1, size // total) for w in reduced]
    else:
        quotas = [size * w / total for w in reduced]
        counts = [max(1, int(q)) if w > 0 else 0 for q, w in zip(quotas, reduced)]
        order = sorted(range(len(weights)), key=lambda i: quotas[i] - int(quotas[i]), reverse=True)
        for i in order[: max(size - sum(counts), 0)]:
            if reduced[i] > 0:
                counts[i] += 1
    table = [i for i, n in enumerate(counts) for _ in range(n)]
    random.Random(seed).shuffle(table)
    return table


class Engine:
    """Runs one plan's requests on one event loop, open model (``start``) or closed (``start_closed``).

    ``worker``/``workers`` slice the arrivals: this engine sends arrivals
    ``worker, worker + workers, ...`` of the schedule, so ``workers`` engines given
    the same schedule send exactly its arrivals between them (``SURGE_WORKERS``).
    """

    def __init__(
        self, plan: Plan, loop: asyncio.AbstractEventLoop, seed: int = 0,
        worker: int = 0, workers: int = 1,
    ) -> None:
        self.plan = plan
        self.loop = loop
        self.host, self.port, host_header = target_address(plan)
        self.names = [r.name for r in plan.requests]
        self.payloads = [encode_request(plan, r, host_header) for r in plan.requests]
        self.table = weighted_table([r.weight for r in plan.requests], seed=seed)
        self.checks = [_check_of(r.checks) for r in plan.requests]
        self.want_body = [c is not None and c[1] is not None for c in self.checks]
        self.conn_class = CheckedConnection if any(self.want_body) else Connection
        self.timeout = plan.timeout
        self.stride = max(workers, 1)
        self.max_conns = -(-plan.connections // self.stride)  # the generator's, split among engines
        self.read_buffer = memoryview(bytearray(READ_SIZE))
        self.conns: set[Connection] = set()
        self.idle: list[Connection] = []
        self.connecting = 0
        self.backlog: collections.deque[tuple[int, float]] = collections.deque()
        self.cur = Interval(len(self.names))
        self.schedule: Schedule | None = None
        self.t0 = 0.0  # loop time of the run's start (schedule time 0)
        self.next_i = worker % self.stride
        self.next_at = INF  # loop time of the next arrival (open model); INF: none pending
        self.pacing = False
        self.closed_loop = False
        self.think_s = 0.0
        self.thinking = 0  # closed-loop users in their think time
        self._tasks: list[asyncio.Task] = []

    # --- control (called by the service) -----------------------------------
    def start(self, schedule: Schedule, t0: float, skip: float = 0.0) -> None:
        """Open model: send arrival i at ``t0 + schedule.time_of(i)``, whatever the target does.

        ``skip``: arrivals numbered below it are not this engine's to send (a worker
        restarted mid-run starts from now, not from the run's start).
        """
        if skip > 0:
            first = math.ceil(skip - 1e-9)
            self.next_i = first + (self.next_i - first) % self.stride
        self.schedule, self.t0, self.pacing = schedule, t0, True
        self.next_at = t0
        self._tasks = [
            self.loop.create_task(self._pace(), name="pace"),
            self.loop.create_task(self._sweep(), name="sweep"),
        ]

    def start_closed(self, users: int | None = None, think_s: float = 0.0, t0: float | None = None) -> None:
        """Closed model: ``users`` connections (default: the plan's ``connections``), each
        sending its next request as soon as its previous response completes, after
        ``think_s`` seconds of think time. Latency is from the moment a request was
        due (response + think time), so it equals the service time here.
        """
        self.closed_loop, self.pacing = True, True
        self.think_s = max(think_s, 0.0)
        self.max_conns = self.plan.connections if users is None else max(int(users), 0)
        self.t0 = _now() if t0 is None else t0
        self._next_for = self._next_closed  # type: ignore[method-assign]
        self._tasks = [self.loop.create_task(self._sweep(), name="sweep")]
        for _ in range(self.max_conns):
            self._open()

    def rebase(self, schedule: Schedule) -> None:
        """Follow a new schedule from now on (rate change, rebalance)."""
        self.schedule = schedule
        if self.pacing and not self.closed_loop:
            self.next_at = 0.0  # the next response or pacer wake looks at it

    def now_s(self) -> float:
        """Seconds since the run's start."""
        return _now() - self.t0

    def stop_pacing(self) -> None:
        self.pacing = False
        self.next_at = INF

    def in_flight(self) -> int:
        return sum(1 for c in self.conns if c.busy) + len(self.backlog) + self.thinking

    async def drain(self, limit_s: float) -> None:
        """Stop sending; wait up to ``limit_s`` for in-flight requests, then close all."""
        self.stop_pacing()
        deadline = _now() + limit_s
        while self.in_flight() and _now() < deadline:
            await asyncio.sleep(0.005)
        now = _now()
        while self.backlog:
            spec, _ = self.backlog.popleft()
            self.cur.dropped[spec] += 1
        for conn in list(self.conns):
            if conn.busy:
                self._finish(conn, now, "timeout")
            conn.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def gather(self) -> None:
        """Before ``take_interval`` each second: a pool merges its workers' share here."""

    def take_interval(self) -> Interval:
        done, self.cur = self.cur, Interval(len(self.names))
        return done

    # --- pacing (open model) -------------------------------------------------
    def _send_due(self, now: float) -> float:
        """Send every arrival due by ``now``; returns the schedule time of the next one
        (INF: the schedule has none left) and notes its loop time in ``next_at``.

        Called by the pacer's timer and, when an arrival is due, by ``on_response``:
        under load the process is awake for responses anyway, so arrivals leave at
        their time without a timer wake-up of their own (fewer sleeps, less lateness).
        """
        sched = self.schedule
        assert sched is not None
        t0 = self.t0
        rel = now - t0
        i = self.next_i
        t = sched.time_of(i)
        if t <= rel:
            table, n_table, stride = self.table, len(self.table), self.stride
            time_of, arrive = sched.time_of, self._arrive
            n = 0
            while t <= rel:
                arrive(table[i % n_table], t0 + t, now)
                i += stride
                t = time_of(i)
                n += 1
                if not n & 63:  # a long catch-up batch: keep send times honest
                    now = _now()
            self.next_i = i
        self.next_at = t0 + t
        return t

    async def _pace(self) -> None:
        sleep = asyncio.sleep
        while self.pacing:
            now = _now()
            t = self._send_due(now)
            rel = now - self.t0
            if t == INF:
                if rel >= self.schedule.end_s:  # type: ignore[union-attr]
                    self.pacing = False
                    self.next_at = INF
                    break
                t = rel + MAX_SLEEP_S
            # rebase and stop are seen within MAX_SLEEP_S. The loop's timers tick in whole
            # milliseconds (a shorter sleep would spin): arrivals due within the next
            # tick go out at its start unless a response comes first, and their
            # lateness is measured.
            await sleep(min(max(t - rel, MIN_SLEEP_S), MAX_SLEEP_S))

    def _arrive(self, spec: int, intended: float, now: float) -> None:
        self.cur.sent += 1
        if self.idle:
            conn = self.idle.pop()
            if now - intended > LATE_S:
                self.cur.late[spec] += 1
            conn.send(spec, self.payloads[spec], intended, now, self.want_body[spec])
            return
        if len(self.backlog) >= MAX_BACKLOG:  # a target that holds every connection
            self.cur.dropped[spec] += 1
            return
        self.backlog.append((spec, intended))
        if len(self.conns) + self.connecting < self.max_conns:
            self._open()

    def _send(self, conn: Connection, spec: int, intended: float, now: float) -> None:
        if now - intended > LATE_S:
            self.cur.late[spec] += 1
        conn.send(spec, self.payloads[spec], intended, now, self.want_body[spec])

    def _next_for(self, conn: Connection, now: float) -> None:
        """Give a free connection the oldest waiting arrival, or park it as idle."""
        backlog = self.backlog
        while backlog:
            spec, intended = backlog.popleft()
            if now - intended > self.timeout:
                self.cur.dropped[spec] += 1
                continue
            self._send(conn, spec, intended, now)
            return
        self.idle.append(conn)

    # --- closed model ----------------------------------------------------------
    def _next_closed(self, conn: Connection, now: float) -> None:
        """The user on this connection sends its next request (after its think time)."""
        if not self.pacing:
            self.idle.append(conn)
            return
        if self.think_s > 0:
            self.thinking += 1  # a thinking user is not idle: in_flight counts it
            self.loop.call_later(self.think_s, self._think_done, conn, now + self.think_s)
            return
        i = self.next_i
        self.next_i = i + self.stride
        spec = self.table[i % len(self.table)]
        self.cur.sent += 1
        conn.send(spec, self.payloads[spec], now, now, self.want_body[spec])

    def _think_done(self, conn: Connection, due: float) -> None:
        self.thinking -= 1
        if conn.closed or conn not in self.conns:
            return  # its connection was lost meanwhile; a replacement carries the user
        if not self.pacing:
            self.idle.append(conn)
            return
        now = _now()
        i = self.next_i
        self.next_i = i + self.stride
        spec = self.table[i % len(self.table)]
        self.cur.sent += 1
        # latency from when the user meant to send (the timer may fire a tick late)
        conn.send(spec, self.payloads[spec], min(due, now), now, self.want_body[spec])

    # --- connections -------------------------------------------------------
    def _open(self) -> None:
        self.connecting += 1
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: self.conn_class(self), self.host, self.port),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.connecting -= 1
            self._connect_failed(exc)
            return
        except asyncio.CancelledError:
            self.connecting -= 1
            raise
        self.connecting -= 1
        if conn.closed:  # reset before we saw it
            return
        self.conns.add(conn)
        self._next_for(conn, _now())

    def _connect_failed(self, exc: BaseException) -> None:
        """The arrival that was waiting for this connection fails as a connect error."""
        now = _now()
        if self.closed_loop:
            # the user's request fails; it tries again a moment later (no hot spin)
            if self.pacing:
                i = self.next_i
                self.next_i = i + self.stride
                self.cur.sent += 1
                self.cur.record(self.table[i % len(self.table)], 0.0, 0.0, "connect")
                self.loop.call_later(CONNECT_RETRY_S, self._reopen)
            return
        if self.backlog:
            spec, intended = self.backlog.popleft()
            self.cur.record(spec, now - intended, 0.0, "connect")
        if self.backlog and self.pacing and len(self.conns) + self.connecting < self.max_conns:
            self._open()

    def _reopen(self) -> None:
        if self.pacing and len(self.conns) + self.connecting < self.max_conns:
            self._open()

    # --- events from connections -------------------------------------------
    def on_response(self, conn: Connection) -> None:
        now = _now()
        spec = conn.spec
        check = self.checks[spec]
        status = conn.status
        if check is None:
            error = None if status < 400 else "status"
        else:
            error = _checked(conn, status, check)
        conn.busy = False
        cur = self.cur
        cur.latency[spec].append(now - conn.intended)
        cur.service[spec].append(now - conn.sent)
        if error is not None:
            errs = cur.errors[spec]
            errs[error] = errs.get(error, 0) + 1
        if conn.keep_alive:
            self._next_for(conn, now)
        else:
            self._retire(conn)
        if now >= self.next_at:  # an arrival is due: send it now, not at the next tick
            self._send_due(now)

    def on_broken(self, conn: Connection, kind: str) -> None:
        """Unparseable or oversized response: the request fails and the connection is replaced."""
        if conn.busy:
            self._finish(conn, _now(), kind)
        self._retire(conn)

    def on_lost(self, conn: Connection) -> None:
        if conn.busy:
            self._finish(conn, _now(), "reset")
        self._retire(conn)

    def _finish(self, conn: Connection, now: float, error: str | None) -> None:
        conn.busy = False
        self.cur.record(conn.spec, now - conn.intended, now - conn.sent, error)

    def _retire(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            if conn in self.idle:
                self.idle.remove(conn)
            conn.close()
        if len(self.conns) + self.connecting < self.max_conns and (
            self.backlog or (self.closed_loop and self.pacing)
        ):
            self._open()

    async def _sweep(self) -> None:
        """Time out slow requests and drop arrivals that waited longer than the timeout."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = _now()
            for conn in list(self.conns):
                if conn.busy and now - conn.sent > self.timeout:
                    self._finish(conn, now, "timeout")
                    self._retire(conn)
            backlog = self.backlog
            while backlog and now - backlog[0][1] > self.timeout:
                spec, _ = backlog.popleft()
                self.cur.dropped[spec] += 1


def _checked(conn: Connection, status: int, check: tuple[frozenset[int] | None, bytes | None]) -> str | None:
    allowed, needle = check
    if allowed is None:
        if status >= 400:
            return "status"
    elif status not in allowed:
        return "status"
    if needle is not None and needle not in b"".join(conn.body or ()):
        return "check"
    return None


def _check_of(checks) -> tuple[frozenset[int] | None, bytes | None] | None:
    """(allowed statuses, body needle), or None for the default (any status below 400)."""
    if checks is None or (checks.status is None and not checks.body_contains):
        return None
    status = checks.status
    allowed = None
    if status is not None:
        allowed = frozenset(status if isinstance(status, list) else [status])
    needle = checks.body_contains.encode() if checks.body_contains else None
    return allowed, needle
