"""The load engine, one for every plan: arrivals on schedule, what an arrival does, outcome recording.

No NATS in here. The service gives the engine a plan and a ``Schedule`` anchored at
a loop-clock time; the engine sends arrival ``i`` at its intended time whatever the
target does, and measures latency from that intended time, so a stalled target
shows in the percentiles instead of slowing the load down (coordinated omission).

When no connection is free an arrival waits (nothing is stored for it: the waiting
arrivals are the schedule's, from the cursor's next one up to now, ``arrivals.py``); sent more than ``LATE_S``
after its intended time it counts as *late*; still waiting after the plan's timeout
it is *dropped* (never sent). Both are reported, never hidden.

What an arrival does is chosen once per plan (``Engine.of``): one request on a free
connection of the engine's own (``http.Connection``: static and templated requests,
plain or TLS; their closed model is ``closed.ClosedLoop``, a user per connection), or,
for a plan with per-user state, a virtual user's flow (``flows.Users``: flows, setup,
extraction, data, cookies, HTTP/2, proxies, redirects), up to ``connections`` flows at
once. The pacer, the cursor, late/dropped/timeout accounting, the sweep, stop, rebase,
drain and the interval are this class's, whichever it is.
"""

from __future__ import annotations

import asyncio
import time

from typing import TYPE_CHECKING

import numpy as np
import structlog

from schemas.control import Assignment
from schemas.plan import Plan
from services.generator.arrivals import ArrivalCursor, tally
from services.generator.encode import payloads
from services.generator.closed import ClosedLoop
from services.generator.http import (
    READ_SIZE, Addresses, CheckedConnection, Connection, target_address, tls_context,
)
from services.generator.pacing import INF, Schedule
from services.generator.recorder import Interval
from services.generator.requests import check_of, checked, weighted_table

if TYPE_CHECKING:
    from services.generator.flows import Slots, Users

log = structlog.get_logger(__name__)

LATE_S = 0.010  # sent this long after its intended time: late
SWEEP_S = 0.050  # how often timeouts and arrivals waiting too long are checked
MAX_SLEEP_S = 0.010  # the pacer wakes at least this often (stop, the schedule's end)
MIN_SLEEP_S = 0.001  # uvloop's timer resolution
# a response sends a due arrival only once it is this late (the pacer missed it, or no
# connection was free); before that the pacer's tick sends it with the rest of its tick
TICK_S = MIN_SLEEP_S

# uvloop's loop.time() is libuv's cached millisecond clock: too coarse to measure
# sub-millisecond responses. Every timestamp in the engine comes from here.
_now = time.monotonic


class Engine:
    """Runs one plan on one event loop: ``start`` runs its open model, or its closed model
    (``users``/``user_stages``: ``closed.ClosedLoop``, or virtual users' loops);
    ``start_closed`` a fixed number of users (tests, the bench).

    ``users``: what an arrival does when the plan has per-user state (``flows.Users``,
    chosen by ``Engine.of``); None: one request on a free connection (the fast path).
    ``worker``/``workers`` slice the arrivals: this engine sends arrivals
    ``worker, worker + workers, ...`` of the schedule, so ``workers`` engines given
    the same schedule send exactly its arrivals between them (``SURGE_WORKERS``), and
    split the closed model's users. ``index``/``count``: the generator's position
    among the run's (its part of the closed model's users).
    """

    def __init__(
        self, plan: Plan, loop: asyncio.AbstractEventLoop, seed: int = 0,
        worker: int = 0, workers: int = 1, users: Users | None = None,
        index: int = 0, count: int = 1,
    ) -> None:
        self.plan = plan
        self.loop = loop
        self.users = users
        self.timeout = plan.timeout
        self.stride = max(workers, 1)
        self.worker = worker % self.stride
        self.index, self.count = index, count
        self.conns: set[Connection] = set()
        self.idle: list[Connection] = []
        # what takes a due arrival: a free connection (idle), or a flow slot (Users.slots)
        self.free: list[Connection] | Slots = self.idle
        self.connecting = 0
        if users is None:  # one request per arrival, on the engine's own connections
            self.host, self.port, host_header = target_address(plan)
            self.tls = tls_context(plan)  # https: stdlib ssl under the same protocol
            self.names = [r.name for r in plan.requests]
            self.payloads = payloads(plan, host_header)  # a list, or renders where templates vary
            self.table = weighted_table([r.weight for r in plan.requests], seed=seed)
            self.checks = [check_of(r.checks) for r in plan.requests]
            self.want_body = [c is not None and c[1] is not None for c in self.checks]
            self.conn_class = CheckedConnection if any(self.want_body) else Connection
            # HEAD requests: their responses end with the head (None: the plan has none)
            heads = [r.method == "HEAD" for r in plan.requests]
            self.heads: list[bool] | None = heads if any(heads) else None
            self.max_conns = -(-plan.connections // self.stride)  # the generator's, split among engines
            self.read_buffer = memoryview(bytearray(READ_SIZE))
            self._addrs = Addresses(loop, self.host, self.port)  # resolved once, tried in turn
        else:  # a virtual user's flow per arrival, on the users' transport
            users.engine = self
            self.names = users.names
            self.table = users.first_steps  # arrival n is recorded under its flow's first step
            self.max_conns = 0
            self.free = users.slots  # true while a slot is free; .pop().send starts a flow
            self.payloads = [None] * len(self.names)  # a flow renders its own requests
        self._table_array = np.array(self.table, dtype=np.int64)
        self.cur = Interval(len(self.names))
        # open model: the next arrival of this engine's share (every stride-th from
        # ``worker``); closed loop: its ``i`` numbers the requests
        self.arrivals = ArrivalCursor(worker, self.stride)
        self.t0 = 0.0  # loop time of the run's start (schedule time 0)
        self.pacing = False
        self.closed_loop = users is not None and users.closed  # the plan's users loop
        self.closed: ClosedLoop | None = None  # the fast path's closed model, once started
        self.thinking = 0  # closed-loop users in their think time
        self._tasks: list[asyncio.Task] = []
        self._pacer: asyncio.TimerHandle | asyncio.Handle | None = None  # the pacer's next wake
        # arrivals due and nothing free: the fast path looks again next tick (a response
        # takes only an arrival a tick late); a flow that ends starts the oldest itself
        self._busy_sleep_s = 0.0 if users is None else MAX_SLEEP_S

    @classmethod
    def of(cls, a: Assignment, loop: asyncio.AbstractEventLoop, per_user: bool | None = None) -> Engine:
        """The engine for an assignment, paying only for what its plan uses: a virtual
        user's flow per arrival when the plan has per-user state (``flows.needs_users``,
        or ``per_user=True``), else one request on a free connection."""
        from services.generator import flows  # not in worker processes: they run the fast path

        if per_user is None:
            per_user = flows.needs_users(a.plan)
        return cls(a.plan, loop, seed=a.index, users=flows.Users(a, loop) if per_user else None,
                   index=a.index, count=a.count)

    # --- control (called by the service) -----------------------------------
    def start(self, schedule: Schedule, t0: float, skip: float = 0.0) -> None:
        """Open model: send arrival i at ``t0 + schedule.time_of(i)``, whatever the target does.
        Closed model: the plan's users from ``t0`` to the schedule's end.

        ``skip``: arrivals numbered below it are not this engine's to send (a worker
        restarted mid-run starts from now, not from the run's start).
        """
        self.arrivals.start(schedule, t0, skip)
        self.t0, self.pacing = t0, True
        self._tasks = [self.loop.create_task(self._sweep(), name="sweep")]
        if self.users is None and self.plan.model == "closed":
            ClosedLoop(self).start(t0, schedule.end_s)
        elif self.users is None:
            self._pacer = self.loop.call_soon(self._pace)
        else:  # the users' transport first (an ALPN probe, a generator setup), then ``unit_ready``
            self.users.begin()

    def unit_ready(self) -> None:
        """The users' transport is chosen and their setup done: the open model's pacer
        starts (what fell due meanwhile goes at once, late)."""
        if self.pacing and self._pacer is None:
            self._pacer = self.loop.call_soon(self._pace)

    def start_closed(self, users: int | None = None, think_s: float = 0.0, t0: float | None = None) -> None:
        """A closed loop of ``users`` users (default: the plan's ``connections``; with
        ``workers``, split among the engines), each on its own connection
        (``closed.ClosedLoop``), after ``think_s`` seconds of think time, until stopped."""
        users = self.plan.connections if users is None else max(int(users), 0)
        self._tasks = [self.loop.create_task(self._sweep(), name="sweep")]
        ClosedLoop(self, users, think_s).start(_now() if t0 is None else t0)

    def rebase(self, schedule: Schedule) -> None:
        """Follow a new schedule from now on (rate change, rebalance).

        ``schedule`` continues the old one's count (``Schedule.rebased``): arrivals
        numbered below its start are the old schedule's, and any still waiting keep
        their old intended times.
        """
        self.arrivals.rebase(schedule)
        if self.closed is not None:
            self.closed.rebase(schedule.end_s)
        if self._pacer is not None:  # the pacer looks on the loop's next pass
            self._pacer.cancel()
            self._pacer = self.loop.call_soon(self._pace)
        if self.users is not None:
            self.users.wake()  # the plan's users loop looks at the schedule's end again

    @property
    def schedule(self) -> Schedule | None:
        return self.arrivals.schedule

    def now_s(self) -> float:
        """Seconds since the run's start."""
        return _now() - self.t0

    def stop_pacing(self) -> None:
        """No arrival due after now is sent; those already due still go out (``drain``).
        Virtual users start no flow after the stop (a flow's later steps would not run):
        their arrivals still waiting for a slot are dropped here."""
        if self.pacing and not self.closed_loop:
            now = _now()
            self.arrivals.stop(now - self.t0)
            if self.users is None and self.idle:
                self._send_due(now)  # due within the last tick: no tick comes for them now
        self.pacing = False
        if self.closed is not None:
            self.closed.stop()
        if self.users is not None:
            self.users.stop()
            if self.schedule is not None and not self.closed_loop:
                self._drop_until(self.arrivals.stop_rel)

    def waiting(self) -> int:
        """Arrivals due and not yet sent (no free connection): the open model's backlog."""
        if self.closed_loop:
            return 0
        return self.arrivals.waiting(_now() - self.t0)

    def in_flight(self) -> int:
        n = sum(1 for c in self.conns if c.busy) + self.waiting() + self.thinking
        return n if self.users is None else n + self.users.requests_in_flight

    async def drain(self, limit_s: float) -> None:
        """Stop sending; wait up to ``limit_s`` for in-flight requests, then close all."""
        self.stop_pacing()
        deadline = _now() + limit_s
        while self.in_flight() and _now() < deadline:
            await asyncio.sleep(0.005)
        now = _now()
        if self.schedule is not None and not self.closed_loop:
            self._drop_until(self.arrivals.stop_rel)  # still waiting when time ran out
        for conn in list(self.conns):
            if conn.busy:
                self._finish(conn, now, "timeout")
            conn.close()
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.users is not None:  # what still runs is cancelled: a request in flight is a timeout
            await self.users.close()

    def reassign(self, a: Assignment) -> None:
        """A new epoch (the schedule comes with ``rebase``): a rebalance changes this
        generator's part of the plan's users."""
        if self.users is not None:
            self.users.reassign(a)
        self.move(a.index, a.count)

    def move(self, index: int, count: int) -> None:
        """This generator is ``index`` of ``count`` now: its part of the closed model's users."""
        self.index, self.count = index, count
        if self.closed is not None:
            self.closed.look()

    async def gather(self) -> None:
        """Before ``take_interval`` each second: a pool merges its workers' share here."""

    def take_interval(self) -> Interval:
        done, self.cur = self.cur, Interval(len(self.names))
        return done

    # --- pacing (open model) -------------------------------------------------
    # The backlog is implicit (``ArrivalCursor``): arrivals whose intended time has come
    # and that are not sent yet are waiting, and nothing is stored per arrival. An
    # arrival costs nothing until a connection is free to send it, so an engine behind
    # its schedule catches up at closed-loop speed, and a target that holds every
    # connection costs no memory.

    def _send_due(self, now: float) -> float:
        """Send due arrivals while a connection is free; returns the schedule time of the
        next arrival not sent (INF: the schedule has none left), due at ``arrivals.at``.

        Called by the pacer's timer, and by ``on_response`` once ``arrivals.at`` has
        come: under load the process is awake for responses anyway, so arrivals leave at
        their time without a timer wake-up of their own, and a connection that frees up
        takes the oldest waiting arrival at once. With virtual users ``free`` is their
        flow slots (``flows.Slots``, the same loop: a flow that ends calls this again),
        so the late/dropped accounting is written once for both.
        """
        arr = self.arrivals
        t0 = self.t0
        rel = min(now - t0, arr.stop_rel)
        t = arr.head()
        idle = self.free
        if t <= rel and idle:
            table, n_table = self.table, len(self.table)
            payloads, timeout = self.payloads, self.timeout
            cur = self.cur
            advance = arr.advance
            n = 0
            while t <= rel and idle:
                name_i = table[arr.i % n_table]
                intended = t0 + t
                behind = now - intended
                if behind > timeout:  # waited longer than the plan's timeout: never sent
                    cur.dropped[name_i] += 1
                else:
                    if behind > LATE_S:
                        cur.late[name_i] += 1
                    cur.sent += 1
                    idle.pop().send(name_i, payloads[name_i], intended, now)
                t = advance()
                n += 1
                if not n & 63:  # a long catch-up batch: keep send times honest
                    now = _now()
        if t <= rel and len(self.conns) + self.connecting < self.max_conns:
            # arrivals wait: open connections for them, up to the plan's number
            want = min(self.waiting(), self.max_conns - len(self.conns) - self.connecting)
            for _ in range(max(want, 1)):
                self._open()
        return t

    def _drop_until(self, limit: float) -> None:
        """Count the waiting arrivals due by schedule time ``limit`` as dropped: they
        will never be sent."""
        tally(self.arrivals.drop_until(limit), self.table, self._table_array, self.cur.dropped)

    def _pace(self) -> None:
        """The pacer: a timer callback (a ``TimerHandle``, no task or future per wake) that
        sends what is due and sleeps until the next arrival, at least one tick (uvloop's
        timers tick in whole milliseconds; a shorter sleep would spin) and at most
        ``MAX_SLEEP_S``. Arrivals due within a tick go out at its start unless a
        response comes first; their lateness is measured. With virtual users, arrivals
        due that found no free flow slot are started by the flow that ends, so the pacer
        does not look again for them before ``MAX_SLEEP_S`` (``_busy_sleep_s``)."""
        self._pacer = None
        if not self.pacing:
            return
        arr = self.arrivals
        now = _now()
        t = self._send_due(now)
        rel = now - self.t0
        if t == INF:
            if rel >= arr.schedule.end_s:  # type: ignore[union-attr]
                arr.stop(arr.schedule.end_s)  # type: ignore[union-attr]
                self.pacing = False
                return
            t = rel + MAX_SLEEP_S
        elif t <= rel:  # due, and nothing free to take it
            t = rel + self._busy_sleep_s
        self._pacer = self.loop.call_later(min(max(t - rel, MIN_SLEEP_S), MAX_SLEEP_S), self._pace)

    def _next_for(self, conn: Connection, now: float) -> None:
        """A free connection: it takes the oldest waiting arrival if that is a tick late
        (behind the schedule: catch up at closed-loop speed) or if every other
        connection is busy (the pacer's tick could not send it) or pacing has stopped (no
        tick comes: what was due goes out at once); else it waits idle for the pacer's
        next tick, which sends that tick's arrivals together."""
        arr = self.arrivals
        at = arr.at
        if now < at or (now < at + TICK_S and self.idle and self.pacing):  # the pacer's to send
            self.idle.append(conn)
            return
        t = arr.t
        if t != t or now - self.t0 - t > self.timeout:
            self.idle.append(conn)  # the general case: _send_due sorts it out
            self._send_due(now)
            return
        # behind, or an arrival just came due: the one call per response that matters
        name_i = self.table[arr.i % len(self.table)]
        intended = self.t0 + t
        cur = self.cur
        if now - intended > LATE_S:
            cur.late[name_i] += 1
        cur.sent += 1
        conn.send(name_i, self.payloads[name_i], intended, now)
        arr.advance()
        if self.idle and now >= arr.at:  # more due, and connections for them: all go now
            self._send_due(now)

    # --- connections -------------------------------------------------------
    def _open(self) -> None:
        self.connecting += 1
        self.loop.create_task(self._connect())

    async def _dial(self) -> Connection:
        """A connection to the first of the target's addresses that takes one
        (``http.Addresses``: a name with several, or ``localhost`` on both loopbacks)."""
        async def dial(addr: str) -> Connection:
            _, conn = await self.loop.create_connection(
                lambda: self.conn_class(self), addr, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None)
            return conn

        return await self._addrs.connect(dial)

    async def _connect(self) -> None:
        dialled = _now()
        try:
            conn = await asyncio.wait_for(self._dial(), self.timeout)
        except (OSError, TimeoutError) as exc:
            self.connecting -= 1
            self._connect_failed(exc, dialled)
            return
        except asyncio.CancelledError:
            self.connecting -= 1
            raise
        self.connecting -= 1
        if conn.closed:  # reset before we saw it
            return
        self.conns.add(conn)
        self._next_for(conn, _now())

    def _connect_failed(self, exc: BaseException, dialled: float) -> None:
        """The arrival that was waiting for this connection (dialled at ``dialled``) fails
        as a connect error."""
        now = _now()
        self.cur.explain("connect", exc)
        if self.closed is not None:  # the user's request fails; it tries again
            self.closed.connect_failed(now - dialled)
            return
        if self.schedule is None or not self.waiting():
            return
        # the oldest waiting arrival fails: its connection could not be made
        arr = self.arrivals
        t = arr.head()
        self.cur.sent += 1
        self.cur.record(self.table[arr.i % len(self.table)], now - (self.t0 + t), 0.0, "connect")
        arr.advance()
        if self.waiting() and len(self.conns) + self.connecting < self.max_conns:
            self._open()

    # --- events from connections -------------------------------------------
    def on_response(self, conn: Connection) -> None:
        now = _now()
        name_i = conn.name_i
        conn.busy = False
        cur = self.cur
        cur.latency[name_i].append(now - conn.intended)
        cur.service[name_i].append(now - conn.sent)
        check = self.checks[name_i]
        if check is None:
            if conn.status >= 400:
                errs = cur.errors[name_i]
                errs["status"] = errs.get("status", 0) + 1
        else:
            error = checked(conn, conn.status, check)
            if error is not None:
                errs = cur.errors[name_i]
                errs[error] = errs.get(error, 0) + 1
        if conn.keep_alive:
            self._next_for(conn, now)  # the next request, or an arrival due by now
        else:
            self._retire(conn)

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
        self.cur.record(conn.name_i, now - conn.intended, now - conn.sent, error)

    def _retire(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            if conn in self.idle:
                self.idle.remove(conn)
            conn.close()
        if len(self.conns) + self.connecting < self.max_conns and (
            (self.closed_loop and self.pacing) or self.waiting()
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
            if self.schedule is not None and not self.closed_loop:
                # waited longer than the plan's timeout
                self._drop_until(now - self.t0 - self.timeout)
