"""What an arrival does when a plan has per-user state: a virtual user's flow.

``engine.Engine`` runs every plan; ``Engine.of`` chooses once per plan what an arrival
does. A plan with only static or templated requests (a render per request) sends one
request on a free connection of the engine's own (its closed model: a user per
connection, ``closed.ClosedLoop``). Anything that needs per-user state — flows,
``setup``, extraction, templates naming a user's values, data feeds, https that may
speak HTTP/2, ``h2c``, a proxy, redirects — gets ``Users`` here: each arrival runs a virtual user's flow over HTTP/1.1
keep-alive (the engine's own pool, ``pool.py``) or, when an https target offers it by
ALPN, HTTP/2 (the sans-I/O ``h2`` library on the same protocols, ``h2pool.py``);
connections are shared by all users, a cookie jar is per virtual user
(``transport.py``). The engine's pacer, cursor, late/dropped accounting, sweep, stop,
rebase, drain and interval are the same for both.

* Open model: arrival ``i`` is due at the schedule's time; its flow is the weighted
  table's (``flow_table[i % len]``, as the fast path picks a request) and it runs as a
  fresh virtual user. The first step's latency counts from the intended time; arrivals
  waiting for a free slot (``connections`` flows at once) count *late* after 10 ms and
  are *dropped* after the timeout, under their flow's first step.
* Closed model: the generator's part of the users (an integer split by its
  position among the run's generators) loop: setup once, then a flow by weight,
  again and again, each step followed by its think time.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

import structlog

from schemas.control import Assignment
from schemas.plan import Plan
from services.plan.profile import users_of
from services.plan.templating import TemplateError, references
from services.generator.closed import USERS_EVERY_S  # both closed models look as often
from services.generator.encode import request_texts
from services.generator.feeds import Exhausted, Feeds
from services.generator.pool import Pool
from services.generator.requests import weighted_table
from services.generator.session import Program, VirtualUser
from services.generator.transport import choose

if TYPE_CHECKING:
    from services.generator.engine import Engine

log = structlog.get_logger(__name__)

_now = time.monotonic


def needs_users(plan: Plan) -> bool:
    """True when an arrival of this plan must be a virtual user's flow (``Users``), not
    one request on a free connection of the engine's own.

    Templates alone do not: a template that names only the plan's ``vars`` and
    generators (``{{$uuid}}``…) renders per request on the fast path
    (``encode.payloads``). Nor does the closed model: its users are the fast path's
    connections (``closed.ClosedLoop``). One that needs a user's state (an extracted value, a data
    row, ``__user``/``__iteration``/``__generator``) comes here, as does a transport the
    fast path does not speak (HTTP/2 that the target may pick, h2c, a proxy)."""
    if plan.flows or plan.setup or plan.data or plan.proxy:
        return True
    if plan.follow_redirects:  # a hop is a new request, maybe elsewhere: per-user state
        return True
    if plan.target.startswith("https:") and plan.http2 != "off":
        return True  # the target may offer HTTP/2 by ALPN: the users' transport probes and speaks it
    if plan.http2 == "h2c":
        return True  # HTTP/2 over TCP: the fast path speaks HTTP/1.1 only
    known = plan.vars.keys()
    try:
        for text in plan.vars.values():
            if any(name not in known for name in references(text)):
                return True
        for r in plan.requests:
            for text in request_texts(plan, r):
                if "{{" in text and any(name not in known for name in references(text)):
                    return True
    except TemplateError:  # not a plan the loader let through: a virtual user reports it
        return True
    return False


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("virtual users failed", error=repr(task.exception()), exc_info=task.exception())


def _wake_up(thinking: asyncio.Future[None]) -> None:
    if not thinking.done():
        thinking.set_result(None)


class Slots:
    """The open model's free flow slots, as ``Engine._send_due`` sees free connections:
    true while fewer than ``connections`` flows run; ``pop()`` gives a slot whose
    ``send`` starts the flow of the engine's current arrival (``arrivals.i``: the cursor
    moves on right after). The engine's accounting of late and dropped arrivals is then
    the fast path's own, written once."""

    __slots__ = ("users",)

    def __init__(self, users: Users) -> None:
        self.users = users

    def __bool__(self) -> bool:
        return self.users.free()

    def pop(self) -> Slots:
        return self

    def send(self, name_i: int, payload: None, intended: float, now: float) -> None:
        users = self.users
        users.arrive(users.engine.arrivals.i, intended)


class Users:
    """The virtual users an ``engine.Engine`` runs for a plan with per-user state: the
    compiled plan (``Program``), data feeds, a pool of ``VirtualUser`` objects, the
    transport (HTTP/1.1 pool or HTTP/2, chosen when the run starts), the open model's
    flows in progress (``connections`` at once) and the plan's closed model. The engine
    paces, counts and drains; this runs what an arrival does (``arrive``)."""

    def __init__(self, assignment: Assignment, loop: asyncio.AbstractEventLoop) -> None:
        plan = assignment.plan
        self.plan = plan
        self.alpn: str | None = None  # the target's ALPN answer, when load.ByAlpn asked it already
        self.loop = loop
        self.engine: Engine = None  # type: ignore[assignment]  # set by the Engine it is given to
        self.index, self.count = assignment.index, assignment.count
        self.rng = random.Random(f"{assignment.run_id}:{assignment.index}")
        self.program = Program(plan, self.rng)
        self.names = self.program.names
        self.closed = plan.model == "closed"
        self.feeds = Feeds(plan.data, assignment.index, assignment.count,
                           seed=self.rng.randrange(1 << 30))
        # arrival n (open model) or iteration n (closed) runs flow flow_table[n % len],
        # recorded (late, dropped) under its first step, first_steps[n % len]
        self.flow_table = weighted_table(self.program.weights, seed=self.rng.randrange(1 << 30))
        firsts = [steps[0].index for steps in self.program.flows]
        self.first_steps = [firsts[f] for f in self.flow_table]
        self.base_url = plan.target.rstrip("/")
        self.running = False  # a flow goes on to its next step only while this holds
        self.requests_in_flight = 0
        self.shared_vars: dict[str, Any] = {}
        self.shared_cookies: dict[str, str] = {}
        self._thinking: set[asyncio.Future[None]] = set()  # users in their think time
        self._wake = asyncio.Event()
        self._main: asyncio.Task | None = None  # the transport and setup, then the closed model
        self._flows: set[asyncio.Task] = set()  # open model: flows running
        self._users: dict[int, asyncio.Task] = {}  # closed model: user id -> its loop
        self._retiring: set[int] = set()
        self._pool: list[VirtualUser] = []
        self._all_users: list[VirtualUser] = []
        self._next_uid = 0
        self._iterations = 0  # closed model: iterations begun (the flow table's cursor)
        self.max_active = plan.connections
        self.transport: Pool | None = None  # or its HTTP/2 kind, h2pool.H2Pool; chosen by _run
        self.slots = Slots(self)  # what the engine's _send_due takes a due arrival with

    # --- the engine's side ------------------------------------------------------------
    def begin(self) -> None:
        """The run starts: choose the transport, run a generator setup, then the open
        model's pacer (``Engine.unit_ready``) or the closed model's users."""
        self.running = True
        self._main = self.loop.create_task(self._run(), name="users")
        self._main.add_done_callback(_log_failure)

    def free(self) -> bool:
        """A flow slot is free (fewer than ``connections`` flows run)."""
        return len(self._flows) < self.max_active

    def arrive(self, n: int, intended: float) -> None:
        """Open-model arrival ``n``, due at loop time ``intended``: a fresh virtual user runs its flow."""
        task = self.loop.create_task(self._run_arrival(self.flow_table[n % len(self.flow_table)], intended))
        self._flows.add(task)
        task.add_done_callback(self._arrival_done)

    def stop(self) -> None:
        self.running = False
        for thinking in self._thinking:  # a user thinking stops now, not at its think's end
            if not thinking.done():
                thinking.set_result(None)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def reassign(self, a: Assignment) -> None:
        """A rebalance changes this generator's part of the users."""
        self.index, self.count = a.index, a.count
        self._wake.set()

    async def close(self) -> None:
        """The drain's end: flows and users still running are cancelled (a request in
        flight counts as a timeout), then every client and the transport close."""
        pending = set(self._flows) | set(self._users.values())
        if self._main is not None:
            pending.add(self._main)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for user in self._all_users:
            await user.close()
        if self.transport is not None:
            await self.transport.close()

    # --- what a virtual user calls ------------------------------------------------------
    def cur_record(self, name_i: int, latency_s: float, service_s: float, error: str | None,
                   why: BaseException | None = None) -> None:
        cur = self.engine.cur
        cur.record(name_i, latency_s, service_s, error)
        if why is not None and error is not None:
            cur.explain(error, why)

    async def pause(self, seconds: float) -> float | None:
        """Think time: the engine-clock time it ends at (the next step's intended time, so
        a timer firing late shows in that step's latency, as in the fast path's closed
        loop); None when the run stopped meanwhile. One future and one timer (``wait_for``
        on a stop event made a task, a timer and two wake-ups a think)."""
        if not self.running:
            return None
        due = _now() + seconds
        thinking = self.loop.create_future()
        timer = self.loop.call_later(seconds, _wake_up, thinking)
        self._thinking.add(thinking)
        try:
            await thinking
        finally:
            timer.cancel()
            self._thinking.discard(thinking)
        return due if self.running else None

    # --- the run --------------------------------------------------------------------
    async def _run(self) -> None:
        # the ALPN probe runs while waiting for the start; a slow one makes the first
        # arrivals late, and their latency still counts from their intended times
        chosen = self.loop.create_task(choose(self.plan, self.alpn))
        try:
            delay = self.engine.t0 - _now()
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
            self.engine.unit_ready()

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

    def _draw(self, user: VirtualUser, per: str) -> bool:
        if not self.feeds.has(per):
            return True
        try:
            user.vars.update(self.feeds.draw(per))
            return True
        except Exhausted:
            return False

    # --- open model -------------------------------------------------------------------
    def _arrival_done(self, task: asyncio.Task) -> None:
        self._flows.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("flow failed", error=repr(task.exception()))
        if not self.running:
            return  # draining: what still waits is counted dropped by the drain
        self.engine._send_due(_now())  # a slot is free: the oldest waiting arrival takes it

    async def _run_arrival(self, flow: int, intended: float) -> None:
        user = self._user()
        try:
            if not (self._draw(user, "user") and self._draw(user, "iteration")):
                first = self.program.flows[flow][0].index
                self.engine.cur.dropped[first] += 1  # a unique feed ran out
                return
            if self.program.setup and self.program.setup_scope == "user":
                if not await user.run_steps(self.program.setup, intended):
                    return
                intended = None
            await user.run_steps(self.program.flows[flow], intended)
        finally:
            self._pool.append(user)

    # --- closed model ------------------------------------------------------------------
    async def _control_users(self) -> None:
        """Keep this generator's part of the users running, following user_stages."""
        engine = self.engine
        while self.running:
            want = users_of(self.plan, engine.now_s(), self.index, self.count)
            active = [uid for uid in self._users if uid not in self._retiring]
            for _ in range(want - len(active)):
                self._spawn()
            for uid in sorted(active, reverse=True)[: max(len(active) - want, 0)]:
                self._retiring.add(uid)
            if engine.schedule is not None and engine.now_s() >= engine.schedule.end_s:
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
        self.engine.cur.sent += 1
        k = self._iterations
        self._iterations = k + 1
        return self.program.flows[self.flow_table[k % len(self.flow_table)]]
