"""Virtual users (flows.Users): the compiled plan, their state, and the one engine's pacer
running their flows (no network)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from schemas.control import Assignment, Segment
from schemas.plan import Think
from services.plan import profile
from services.generator.engine import Engine
from services.generator.flows import Users
from services.generator.pacing import Schedule
from services.generator.session import Program, think_s
from services.generator.pool import Pool
from services.generator.h2pool import H2Pool
from services.generator import transport as transport_mod
from tests import plans


def test_program_names_steps_and_shares_same_named_steps():
    prog = Program(plans.plan(plans.USER_FLOWS), random.Random(0))
    assert prog.names == ["setup.1", "a.1", "shared"]
    assert prog.flows[0][1].index == prog.flows[1][0].index == 2
    assert prog.vars == {"who": "ann", "greeting": "hi ann"}


async def test_flows_are_picked_by_weight():
    p = plans.plan(plans.USER_FLOWS)
    a = Assignment(run_id="r", epoch=1, share=1.0, start_at=time.time(), end_at=time.time() + 5,
                   profile=profile.from_plan(p), plan=p)
    users = Users(a, asyncio.get_running_loop())
    picks = [users.flow_table[n % len(users.flow_table)] for n in range(4000)]
    assert 0.74 <= picks.count(0) / 4000 <= 0.76  # weights 3:1, a shuffled table
    prog = users.program  # arrival n is recorded (late, dropped) under its flow's first step
    assert users.first_steps == [prog.flows[f][0].index for f in users.flow_table]


async def test_a_think_time_ends_on_its_timer_or_at_once_at_a_stop():
    p = plans.plan(plans.USER_FLOWS)
    a = Assignment(run_id="r", epoch=1, share=1.0, start_at=time.time(), end_at=time.time() + 5,
                   profile=profile.from_plan(p), plan=p)
    users = Users(a, asyncio.get_running_loop())
    users.running = True
    t = time.monotonic()
    due = await users.pause(0.02)  # thought, and the run goes on: the next step's intended time
    assert due == pytest.approx(t + 0.02, abs=0.002) and time.monotonic() >= due - 0.001
    thinking = [asyncio.create_task(users.pause(60.0)) for _ in range(3)]
    await asyncio.sleep(0)  # each is in its think time now
    users.stop()
    assert await asyncio.wait_for(asyncio.gather(*thinking), 1.0) == [None] * 3
    assert not users._thinking  # nothing left behind: no timer, no future
    assert await users.pause(0.02) is None  # stopped: no think time at all


def test_static_requests_become_one_step_flows():
    p = plans.plan(plans.USER_FLOWS, flows=[], setup=None, vars={}, requests=[
        {"name": "home", "path": "/", "weight": 2, "checks": {"status": 200, "body_contains": "Shop"}}])
    prog = Program(p, random.Random(0))
    assert prog.names == ["home"] and prog.weights == [2]
    assert prog.flows[0][0].checker.contains == b"Shop"


def test_think_times():
    rng = random.Random(0)
    assert think_s(None, rng) == 0 and think_s(0.5, rng) == 0.5
    assert all(0.1 <= think_s(Think(0.1, 0.3), rng) <= 0.3 for _ in range(100))


@pytest.mark.parametrize("transport", [Pool, H2Pool])
async def test_users_get_fresh_state_and_the_generator_setup_cookies(transport):
    p = plans.plan(plans.USER_FLOWS)
    a = Assignment(run_id="r", epoch=1, share=1.0, start_at=time.time(), end_at=time.time() + 5,
                   profile=profile.from_plan(p), plan=p, index=1, count=3)
    engine = Users(a, asyncio.get_running_loop())
    engine.shared_vars = {"token": "t-1"}
    engine.shared_cookies = {"sid": "s-1"}
    engine.transport = transport(p, transport_mod.ssl_context(p))
    user = engine._user()
    try:
        assert user.vars["token"] == "t-1" and user.vars["who"] == "ann"
        assert user.vars["__generator"] == 1
        assert user.cookies() == {"sid": "s-1"}
        user.vars["extracted"] = "x"
        user.client.set_cookies({"other": "1"}, engine.base_url)
        assert user.cookies() == {"sid": "s-1", "other": "1"}
        user.reset()
        assert "extracted" not in user.vars and user.cookies() == {"sid": "s-1"}
    finally:
        await user.close()
        await engine.transport.close()


class _Recording(Pool):
    """A pool whose requests go nowhere: it keeps the bytes each would have written."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.wrote: list[tuple[bytes, bool]] = []

    async def request(self, data: bytes, head_only: bool):
        from services.generator.head import Head

        self.wrote.append((data, head_only))
        return 200, Head([b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=s-2\r\nContent-Length: 0\r\n\r\n"]), b""


async def _encoded_writes_what_general_writes(pool, prog: Program, p) -> None:
    """Each step of the plan's flow, sent the general way and then encoded, with and
    without cookies in the jar: the pool must have written the same both times."""
    client = pool.client()
    v = {**prog.vars, "token": "t-1", "__user": 7}
    for jar in ({}, {"sid": "s-1", "b": "2"}):
        for step in prog.flows[0]:
            client.jar = dict(jar)
            url, headers, data = step.render(p.target, prog.headers, v)
            await client.send(step.method, url, headers, data)
            client.jar = dict(jar)
            enc = step.encoder(pool, prog.headers)
            assert enc is not None and step.encoder(pool, prog.headers) is enc  # once per pool
            await client.send_encoded(enc.head.render(v), enc.body(v) if enc.body else None,
                                      enc.head_only)
            general, encoded = pool.wrote[-2:]
            assert encoded == general
            assert client.jar["sid"] == "s-2"  # the response's Set-Cookie was taken


@pytest.mark.parametrize("proxy", [None, "http://127.0.0.1:3128"])
async def test_an_encoded_step_writes_the_bytes_the_general_path_writes(proxy):
    """session.CompiledStep.encoder joins a step's constant parts once per pool; what it
    sends must be byte for byte what render() + Client.send send, cookies included."""
    from services.plan import loader

    p = loader.from_obj({
        "name": "enc", "target": "http://127.0.0.1:8080", "users": 1, "duration": 1, "proxy": proxy,
        "headers": {"X-Plan": "p-{{who}}", "authorization": "plan-wide"},
        "vars": {"who": "ann b", "token": "t-0"},
        "flows": [{"name": "f", "steps": [
            {"name": "me", "path": "/api/me", "headers": {"Authorization": "Bearer {{token}}"}},
            {"name": "order", "method": "POST", "path": "/api/orders/{{who}}",
             "json": {"sku": "{{token}}", "qty": 1, "user": "{{__user}}", "who": "{{who | urlencode}}"}},
            {"name": "typed", "method": "POST", "path": "/t", "headers": {"content-type": "text/json"},
             "json": {"a": [1, "{{token}}"]}},
            {"name": "empty", "method": "POST", "path": "/e"},
            {"name": "put", "method": "PUT", "path": "/p", "body": "a={{token}}&b=é",
             "headers": {"Accept": "text/plain"}},
            {"name": "del", "method": "DELETE", "path": "/d", "body": "static"},
            {"name": "head", "method": "HEAD", "path": "/h"},
        ]}]})
    prog = Program(p, random.Random(0))
    pool = _Recording(p)
    try:
        await _encoded_writes_what_general_writes(pool, prog, p)
    finally:
        await pool.close()
    assert pool.wrote[0][0].startswith(b"GET " + (b"http://127.0.0.1:8080" if proxy else b"") + b"/api/me ")


class _RecordingH2(H2Pool):
    """An HTTP/2 pool whose requests go nowhere: it keeps the fields and body of each."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.wrote: list[tuple[list, bytes | None]] = []

    async def request(self, data, head_only: bool):
        from services.generator.head import Head

        self.wrote.append(data)
        return 200, Head(b"HTTP/2 200\r\nset-cookie: sid=s-2"), b""


@pytest.mark.parametrize("target, http2", [("https://127.0.0.1:8443", "auto"), ("http://127.0.0.1:8080", "h2c")])
async def test_an_encoded_http2_step_sends_the_fields_the_general_path_sends(target, http2):
    """On HTTP/2 a step is compiled once per pool too (h2pool.H2Pool.compile): the fields
    and body it sends must be what render() + Client.send send, cookies included."""
    from services.plan import loader

    p = loader.from_obj({
        "name": "enc2", "target": target, "users": 1, "duration": 1, "http2": http2,
        "headers": {"X-Plan": "p-{{who}}", "authorization": "plan-wide", "Connection": "keep-alive"},
        "vars": {"who": "ann b", "token": "t-0"},
        "flows": [{"name": "f", "steps": [
            {"name": "me", "path": "/api/me", "headers": {"Authorization": "Bearer {{token}}"}},
            {"name": "order", "method": "POST", "path": "/api/orders/{{who}}",
             "json": {"sku": "{{token}}", "qty": 1, "user": "{{__user}}"}},
            {"name": "typed", "method": "POST", "path": "/t", "headers": {"content-type": "text/json"},
             "json": {"a": [1, "{{token}}"]}},
            {"name": "empty", "method": "POST", "path": "/e"},
            {"name": "put", "method": "PUT", "path": "/p", "body": "a={{token}}&b=é",
             "headers": {"Accept": "text/plain", "Host": "other"}},
            {"name": "head", "method": "HEAD", "path": "/h"},
        ]}]})
    prog = Program(p, random.Random(0))
    pool = _RecordingH2(p, transport_mod.ssl_context(p) if http2 == "auto" else None)
    try:
        await _encoded_writes_what_general_writes(pool, prog, p)
    finally:
        await pool.close()
    fields = dict(pool.wrote[3][0])  # the order step, encoded
    assert fields[b":path"] == b"/api/orders/ann%20b" and b"host" not in fields
    assert b"connection" not in fields and fields[b":authority"] == target.split("//")[1].encode()


async def test_redirects_take_the_general_path():
    p = plans.plan(plans.ONE_FLOW, follow_redirects=2)
    prog = Program(p, random.Random(0))
    for pool in (Pool(p), H2Pool(p, None)):
        try:
            assert prog.flows[0][0].encoder(pool, prog.headers) is None
        finally:
            await pool.close()


def test_response_fields_are_read_from_the_raw_head_only_when_asked():
    from services.generator.head import CONTENT_ENCODING, SET_COOKIE, Head

    head = Head([b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nSET-COOKIE: a=1\r\n",
                 b"set-cookie: b=2\r\nContent-Type:\tapplication/json \r\nContent-Length: 2\r\n\r\n{}"])
    assert head.raw.startswith(b"HTTP/1.1 200 OK\r\n") and head.raw.endswith(b"Content-Length: 2")
    assert head.has(SET_COOKIE) and not head.has(CONTENT_ENCODING)
    assert head.getall("Set-Cookie") == ["a=1", "b=2"]
    assert head["content-type"] == "application/json" and head.get("Link") is None
    assert "Content-Length" in head and "Location" not in head and len(head) == 4
    with pytest.raises(KeyError):
        head["Location"]
    assert dict(head.items())["Content-Length"] == "2"
    assert Head([b"HTTP/1.1 204 No Content\r\n\r\n"]).raw == b"HTTP/1.1 204 No Content"
    assert Head([b"HTTP/1.1 100 Continue\r\n\r\n"]).raw == b"HTTP/1.1 100 Continue"  # nothing follows yet


def open_engine(connections: int, run_arrival=None) -> tuple[Engine, list[int]]:
    """The one engine with virtual users, for an open-model plan of two flows; each
    arrival runs ``run_arrival(flow, intended)`` when given, and ``looks[0]`` counts the
    pacer's looks at the schedule (``_send_due`` calls)."""
    p = plans.plan(plans.USER_FLOWS, connections=connections, users=None, rate=100)
    a = Assignment(run_id="r", epoch=1, share=1.0, start_at=time.time(), end_at=time.time() + 5,
                   profile=profile.from_plan(p), plan=p, index=0, count=1)
    engine = Engine.of(a, asyncio.get_running_loop())
    assert engine.users is not None and not engine.closed_loop
    if run_arrival is not None:
        engine.users._run_arrival = run_arrival  # type: ignore[method-assign]
    looks = [0]
    send_due = engine._send_due

    def counted(now: float) -> float:
        looks[0] += 1
        return send_due(now)

    engine._send_due = counted  # type: ignore[method-assign]
    return engine, looks


def begin(engine: Engine, schedule: Schedule, t0: float) -> None:
    """``Engine.start`` without the users' transport and setup (no target here)."""
    engine.arrivals.start(schedule, t0)
    engine.t0, engine.pacing, engine.users.running = t0, True, True


async def test_open_model_arrivals_wait_on_the_shared_cursor_and_are_dropped_in_order():
    """Waiting arrivals are the arrival cursor's range: nothing stored per arrival; a
    freed flow slot takes the oldest, a timeout drops from the oldest."""
    release = asyncio.Event()
    started: list[float] = []

    async def hold(flow: int, intended: float) -> None:
        started.append(intended)
        await release.wait()

    engine, _ = open_engine(1, hold)
    t0 = time.monotonic() - 0.035
    begin(engine, Schedule([Segment(0.0, 60.0, 100.0, 100.0)], 1.0), t0)
    engine._send_due(time.monotonic())  # 0, 10, 20 and 30 ms are due; one slot
    await asyncio.sleep(0)
    assert engine.cur.sent == 1 and started == [t0]
    assert engine.waiting() >= 3
    engine._drop_until(0.025)  # 10 and 20 ms waited too long
    assert sum(engine.cur.dropped) == 2 and engine.arrivals.i == 3
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert started[:2] == [t0, pytest.approx(t0 + 0.030)]  # the oldest still waiting, at its time
    engine.stop_pacing()
    for task in list(engine.users._flows):
        task.cancel()


async def test_each_due_arrival_starts_its_own_flow_at_its_intended_time():
    """``_send_due`` takes flow slots as it takes free connections (``flows.Slots``):
    arrival n runs the weighted table's flow n, from its own intended time."""
    started: list[tuple[int, float]] = []

    async def record(flow: int, intended: float) -> None:
        started.append((flow, intended))

    engine, _ = open_engine(100, record)
    table = engine.users.flow_table
    assert len(set(table)) == 2  # both flows are in the table: a wrong arrival shows
    t0 = time.monotonic() - 0.095
    begin(engine, Schedule([Segment(0.0, 60.0, 100.0, 100.0)], 1.0), t0)
    engine._send_due(time.monotonic())  # 0, 10, ..., 90 ms are due; 100 slots
    await asyncio.sleep(0)
    assert engine.cur.sent == 10 and engine.arrivals.i == 10
    assert [f for f, _ in started] == [table[n % len(table)] for n in range(10)]
    assert [at for _, at in started] == [pytest.approx(t0 + n / 100) for n in range(10)]
    engine.stop_pacing()


async def test_the_pacer_sleeps_while_every_slot_is_busy():
    """Arrivals waiting for a slot are started by the flow that frees it; the pacer does
    not spin on them meanwhile."""
    release = asyncio.Event()

    async def hold(flow: int, intended: float) -> None:
        await release.wait()

    engine, looks = open_engine(1, hold)
    t0 = time.monotonic() - 1.0  # 100 arrivals due, one slot
    begin(engine, Schedule([Segment(0.0, 60.0, 100.0, 100.0)], 1.0), t0)
    engine._pace()
    await asyncio.sleep(0.1)  # a measurement window: the looks it takes are counted
    assert engine.cur.sent == 1 and looks[0] <= 15  # ~one look per 10 ms, not a spin
    engine.stop_pacing()
    release.set()
    for task in list(engine.users._flows):
        await task
    engine._pace()  # stopped: it looks no more
    assert engine._pacer is None


def test_the_pacer_does_not_spin_when_the_next_arrival_is_under_a_tick_away():
    """1,000 arrivals a second on uvloop (whose timers tick in whole milliseconds, as in
    the service): the next arrival is always under a tick away. The pacer sleeps a tick
    rather than going round the loop until it is due."""
    import uvloop

    async def run() -> tuple[int, int]:
        async def instant(flow: int, intended: float) -> None:
            return None

        engine, looks = open_engine(64, instant)
        t0 = time.monotonic()
        begin(engine, Schedule([Segment(0.0, 60.0, 1000.0, 1000.0)], 1.0), t0)
        engine._pace()
        await asyncio.sleep(0.3)  # a measurement window: the looks it takes are counted
        engine.stop_pacing()
        await asyncio.gather(*engine.users._flows)
        return looks[0], engine.cur.sent

    looks, sent = uvloop.run(run())
    assert sent > 50
    # a look per ended flow plus about one per tick; a spin made ~14 per arrival
    assert looks <= 3 * sent, (looks, sent)



async def test_a_stop_drops_the_arrivals_waiting_for_a_slot_and_the_drain_waits_only_for_requests():
    """Virtual users start no flow after the stop (its later steps would not run), so
    the arrivals still waiting for a slot are counted dropped at once, and the drain's
    one wait (``in_flight``) ends as soon as no request is in flight."""
    release = asyncio.Event()

    async def hold(flow: int, intended: float) -> None:
        await release.wait()

    engine, _ = open_engine(1, hold)
    t0 = time.monotonic() - 0.035
    begin(engine, Schedule([Segment(0.0, 60.0, 100.0, 100.0)], 1.0), t0)
    engine._send_due(time.monotonic())  # 0, 10, 20 and 30 ms are due; one slot
    assert engine.cur.sent == 1 and engine.waiting() >= 3
    engine.stop_pacing()
    assert engine.waiting() == 0 and sum(engine.cur.dropped) >= 3
    assert engine.in_flight() == 0  # the held flow sends no request here
    began = time.monotonic()
    await engine.drain(5.0)
    assert time.monotonic() - began < 1.0 and not engine.users._flows
    assert engine.cur.sent == 1  # nothing started after the stop
