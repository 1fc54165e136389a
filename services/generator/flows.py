"""The flow engine: user flows, the closed model, data feeds, TLS and proxies.

Plans with only static requests run on the fast engine (``engine.py``). Anything
that needs per-user state — flows, ``setup``, extraction, templates naming a user's
values, data feeds,
the closed model (``users``/``user_stages``), https that may speak HTTP/2, a proxy — runs here, over
HTTP/1.1 keep-alive (the engine's own pool, ``pool.py``) or, when an https target offers it by ALPN, HTTP/2
(the sans-I/O ``h2`` library on the same protocols, ``h2pool.py``); connections are shared by all users, a cookie jar is per virtual user
(``transport.py``).

It has the ``Engine``'s surface (start, rebase, now_s, stop_pacing, in_flight,
drain, take_interval, names), so the generator service drives it the same way and
its intervals merge on the coordinator exactly as the fast engine's do.

* Open model: arrival ``i`` is due at the schedule's time; it picks a flow by weight
  and runs it as a fresh virtual user. The first step's latency counts from the
  intended time; arrivals waiting for a free slot (``connections`` flows at once)
  count *late* after 10 ms and are *dropped* after the timeout, as in the fast engine,
  whose arrival cursor (``arrivals.py``) it shares: nothing is stored per waiting arrival.
* Closed model: the generator's part of the users (an integer split by its
  position among the run's generators) loop: setup once, then a flow by weight,
  again and again, each step followed by its think time.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import structlog

from schemas.control import Assignment
from schemas.plan import Plan
from services.plan.profile import users_for
from services.plan.templating import TemplateError, references
from services.generator.arrivals import ArrivalCursor
from services.generator.feeds import Exhausted, Feeds
from services.generator.http import request_texts
from services.generator.pacing import INF, Schedule
from services.generator.recorder import Interval
from services.generator.session import Program, VirtualUser
from services.generator.pool import Pool
from services.generator.transport import choose

log = structlog.get_logger(__name__)

LATE_S = 0.010
SWEEP_S = 0.050
MAX_SLEEP_S = 0.010
MIN_SLEEP_S = 0.001  # uvloop's timers tick in whole milliseconds: a shorter sleep spins
USERS_EVERY_S = 0.050  # how often the closed model adjusts its number of users
_now = time.monotonic


def needs_flow_engine(plan: Plan) -> bool:
    """True when the fast static engine cannot run this plan.

    Templates alone do not: a template that names only the plan's ``vars`` and
    generators (``{{$uuid}}``…) renders per request on the fast engine
    (``http.payloads``). One that needs a user's state (an extracted value, a data
    row, ``__user``/``__iteration``/``__generator``) comes here."""
    if plan.flows or plan.setup or plan.data or plan.proxy:
        return True
    if plan.follow_redirects:  # a hop is a new request, maybe elsewhere: per-user state
        return True
    if plan.users is not None or plan.user_stages:
        return True
    if plan.target.startswith("https:") and plan.http2 != "off":
        return True  # the target may offer HTTP/2 by ALPN: the flow engine probes and speaks it
    if plan.http2 == "h2c":
        return True  # HTTP/2 over TCP: the fast engine speaks HTTP/1.1 only
    known = plan.vars.keys()
    try:
        for text in plan.vars.values():
            if any(name not in known for name in references(text)):
                return True
        for r in plan.requests:
            for text in request_texts(plan, r):
                if "{{" in text and any(name not in known for name in references(text)):
                    return True
    except TemplateError:  # not a plan the loader let through: the flow engine reports it
        return True
    return False


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("flow engine failed", error=repr(task.exception()), exc_info=task.exception())


def users_at(plan: Plan, t: float) -> float:
    """Virtual users the whole run asks for at ``t`` seconds (stages ramp linearly from 0)."""
    if plan.users is not None:
        return float(plan.users) if 0 <= t < (plan.duration or 0) else 0.0
    start, prev = 0.0, 0.0
    for stage in plan.user_stages or []:
        if t < start + stage.duration:
            return prev + (stage.target - prev) * (t - start) / stage.duration
        start, prev = start + stage.duration, stage.target
    return 0.0


class FlowEngine:
    def __init__(self, assignment: Assignment, loop: asyncio.AbstractEventLoop) -> None:
        plan = assignment.plan
        self.plan = plan
        self.loop = loop
        self.index, self.count = assignment.index, assignment.count
        self.rng = random.Random(f"{assignment.run_id}:{assignment.index}")
        self.program = Program(plan, self.rng)
        self.names = self.program.names
        self.closed = plan.model == "closed"
        self.feeds = Feeds(plan.data, assignment.index, assignment.count,
                           seed=self.rng.randrange(1 << 30))
        self.base_url = plan.target.rstrip("/")
        self.cur = Interval(len(self.names))
        self.arrivals = ArrivalCursor()  # open model: the next arrival, and those waiting
        self.t0 = 0.0
        self.running = False  # pacing / looping
        self.requests_in_flight = 0
        self.shared_vars: dict[str, Any] = {}
        self.shared_cookies: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._pacer: asyncio.TimerHandle | asyncio.Handle | None = None  # open model: the next look
        self._paced: asyncio.Future[None] | None = None  # done when the open model's pacing ends
        self._tasks: list[asyncio.Task] = []
        self._flows: set[asyncio.Task] = set()  # open model: flows running
        self._users: dict[int, asyncio.Task] = {}  # closed model: user id -> its loop
        self._retiring: set[int] = set()
        self._pool: list[VirtualUser] = []
        self._all_users: list[VirtualUser] = []
        self._next_uid = 0
        self.max_active = plan.connections
        self.transport: Pool | None = None  # or its HTTP/2 kind, h2pool.H2Pool  # chosen by _main before any request

    # --- control (the service calls these, as on Engine) ------------------------
    def start(self, schedule: Schedule, t0: float) -> None:
        self.arrivals.start(schedule, t0)
        self.t0, self.running = t0, True
        main = self.loop.create_task(self._main(), name="flows")
        main.add_done_callback(_log_failure)
        self._tasks = [main]

    def rebase(self, schedule: Schedule) -> None:
        self.arrivals.rebase(schedule)
        self._wake.set()
        if self._pacer is not None:  # the pacer looks on the loop's next pass
            self._pacer.cancel()
            self._pacer = self.loop.call_soon(self._look)

    @property
    def schedule(self) -> Schedule | None:
        return self.arrivals.schedule

    def reassign(self, a: Assignment) -> None:
        """A new epoch: a rebalance changes this generator's part of the users."""
        self.index, self.count = a.index, a.count
        self._wake.set()

    def now_s(self) -> float:
        return _now() - self.t0

    async def gather(self) -> None:
        """Everything is recorded in this process."""

    def stop_pacing(self) -> None:
        if self.running and not self.closed:
            self.arrivals.stop(_now() - self.t0)
        self.running = False
        self._stop.set()
        self._wake.set()
        if self._paced is not None and not self._paced.done():
            self._paced.set_result(None)  # the open model's pacing ends here

    def in_flight(self) -> int:
        return self.requests_in_flight + (0 if self.closed else self.arrivals.waiting(_now() - self.t0))

    def take_interval(self) -> Interval:
        done, self.cur = self.cur, Interval(len(self.names))
        return done

    def cur_record(self, name_i: int, latency_s: float, service_s: float, error: str | None) -> None:
        self.cur.record(name_i, latency_s, service_s, error)

    async def pause(self, seconds: float) -> bool:
        """Think time; False when the run stopped meanwhile."""
        if not self.running:
            return False
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
            return False
        except TimeoutError:
            return self.running

    async def drain(self, limit_s: float) -> None:
        """Stop starting work; let in-flight requests finish up to ``limit_s``, then cancel."""
        self.stop_pacing()
        pending = set(self._flows) | set(self._users.values()) | set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=limit_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if not self.closed and self.arrivals.schedule is not None:
            self._drop_until(self.arrivals.stop_rel)  # still waiting when time ran out
        for user in self._all_users:
            await user.close()
        if self.transport is not None:
            await self.transport.close()

    # --- the run --------------------------------------------------------------------
    async def _main(self) -> None:
        # the ALPN probe runs while waiting for the start; a slow one makes the first
        # arrivals late, and their latency still counts from their intended times
        chosen = self.loop.create_task(choose(self.plan))
        try:
            delay = self.t0 - _now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.transport = await chosen
        finally:
            chosen.cancel()
        log.info("flow transport", protocol=self.transport.protocol, target=self.plan.target)
        if self.program.setup and self.program.setup_scope == "generator":
            await self._generator_setup()
        if not self.running:
            return
        if self.closed:
            await self._control_users()
        else:
            sweep = self.loop.create_task(self._sweep())
            try:
                await self._pace()
            finally:
                sweep.cancel()

    async def _generator_setup(self) -> None:
        user = self._user()
        user.vars.update(self.feeds.draw("user") if self.feeds.has("user") else {})
        await user.run_steps(self.program.setup)
        self.shared_vars = {k: v for k, v in user.vars.items() if not k.startswith("__")}
        self.shared_cookies = user.cookies()
        self._pool.append(user)

    def _user(self) -> VirtualUser:
        if self._pool:
            user = self._pool.pop()
            user.reset()
            return user
        self._next_uid += 1
        user = VirtualUser(self, self.index * 1_000_000 + self._next_uid)
        self._all_users.append(user)
        return user

    def _first_step(self, flow: int) -> int:
        return self.program.flows[flow][0].index

    def _draw(self, user: VirtualUser, per: str) -> bool:
        if not self.feeds.has(per):
            return True
        try:
            user.vars.update(self.feeds.draw(per))
            return True
        except Exhausted:
            return False

    # --- open model -------------------------------------------------------------------
    async def _pace(self) -> None:
        """The open model, until the schedule ends or the run stops: a timer callback
        (``_look``) starts what is due and sleeps until the next arrival — at least a
        tick, at most ``MAX_SLEEP_S`` — and a flow that ends starts the oldest waiting
        arrival itself (``_arrival_done``)."""
        self._paced = self.loop.create_future()
        self._look()
        try:
            await self._paced
        finally:
            if self._pacer is not None:
                self._pacer.cancel()
                self._pacer = None

    def _look(self) -> None:
        self._pacer = None
        paced = self._paced
        if paced is None or paced.done():
            return
        if not self.running:
            paced.set_result(None)
            return
        arr = self.arrivals
        now = _now()
        t = self._arrive(now)
        rel = now - self.t0
        if t == INF:
            if rel >= arr.schedule.end_s:  # type: ignore[union-attr]
                paced.set_result(None)
                return
            t = rel + MAX_SLEEP_S
        elif t <= rel:  # due, but every slot is busy: a flow that ends starts the next
            t = rel + MAX_SLEEP_S
        self._pacer = self.loop.call_later(min(max(t - rel, MIN_SLEEP_S), MAX_SLEEP_S), self._look)

    def _arrive(self, now: float) -> float:
        """Start a flow for each arrival due by ``now`` while a slot is free (the
        others wait, nothing stored for them); returns the next one's schedule time."""
        arr = self.arrivals
        rel = min(now - self.t0, arr.stop_rel)
        t = arr.head()
        while t <= rel and len(self._flows) < self.max_active:
            flow, intended = self.program.pick(self.rng), self.t0 + t
            if now - intended > self.plan.timeout:  # waited longer than the timeout: never run
                self.cur.dropped[self._first_step(flow)] += 1
            else:
                self._launch(flow, intended, now)
            t = arr.advance()
        return t

    def _launch(self, flow: int, intended: float, now: float) -> None:
        self.cur.sent += 1
        if now - intended > LATE_S:
            self.cur.late[self._first_step(flow)] += 1
        task = self.loop.create_task(self._run_arrival(flow, intended))
        self._flows.add(task)
        task.add_done_callback(self._arrival_done)

    def _arrival_done(self, task: asyncio.Task) -> None:
        self._flows.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("flow failed", error=repr(task.exception()))
        if not self.running:
            return  # draining: what still waits is counted dropped by drain()
        self._arrive(_now())  # a slot is free: the oldest waiting arrival takes it

    def _drop_until(self, limit: float) -> None:
        """The waiting arrivals due by schedule time ``limit`` are never run."""
        for _ in self.arrivals.drop_until(limit):
            self.cur.dropped[self._first_step(self.program.pick(self.rng))] += 1

    async def _run_arrival(self, flow: int, intended: float) -> None:
        user = self._user()
        try:
            if not (self._draw(user, "user") and self._draw(user, "iteration")):
                self.cur.dropped[self._first_step(flow)] += 1  # a unique feed ran out
                return
            if self.program.setup and self.program.setup_scope == "user":
                if not await user.run_steps(self.program.setup, intended):
                    return
                intended = None
            await user.run_steps(self.program.flows[flow], intended)
        finally:
            self._pool.append(user)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self._drop_until(_now() - self.t0 - self.plan.timeout)

    # --- closed model ------------------------------------------------------------------
    async def _control_users(self) -> None:
        """Keep this generator's part of the users running, following user_stages."""
        while self.running:
            want = users_for(int(users_at(self.plan, self.now_s()) + 1e-9), self.index, self.count)
            active = [uid for uid in self._users if uid not in self._retiring]
            for _ in range(want - len(active)):
                self._spawn()
            for uid in sorted(active, reverse=True)[: max(len(active) - want, 0)]:
                self._retiring.add(uid)
            if self.schedule is not None and self.now_s() >= self.schedule.end_s:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), USERS_EVERY_S)
            except TimeoutError:
                pass

    def _spawn(self) -> None:
        user = self._user()
        task = self.loop.create_task(self._user_loop(user))
        self._users[user.uid] = task
        task.add_done_callback(lambda t, uid=user.uid: self._user_done(uid, t))

    def _user_done(self, uid: int, task: asyncio.Task) -> None:
        self._users.pop(uid, None)
        self._retiring.discard(uid)
        if not task.cancelled() and task.exception() is not None:
            log.error("virtual user failed", error=repr(task.exception()))

    async def _user_loop(self, user: VirtualUser) -> None:
        prog = self.program
        if not self._draw(user, "user"):
            return
        if prog.setup and prog.setup_scope == "user":
            await user.run_steps(prog.setup)
        await user.loop(lambda: self._iteration(user))

    def _iteration(self, user: VirtualUser) -> list | None:
        """A closed-model user's next iteration: its flow's steps, or None when it stops
        (the run stopped, the user retires, or this generator's unique rows ran out)."""
        if not self.running or user.uid in self._retiring:
            return None
        if not self._draw(user, "iteration"):
            return None
        user.iteration += 1
        user.vars["__iteration"] = user.iteration
        self.cur.sent += 1
        prog = self.program
        return prog.flows[prog.pick(self.rng)]
