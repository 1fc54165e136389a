"""The open-model engine sends each tick's arrivals together from the pacer, and a
response sends an arrival only once it is a tick late (behind the schedule).

These drive ``Engine.on_response`` and ``Engine._pace`` on connections whose transport
only records what is written, so what is due, what is sent and what waits is exact (no
clock race: the schedule is anchored tens of milliseconds around ``now``, or the
engine's clock is a fake one).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas.control import Segment
from services.generator.engine import Engine
from services.generator.http import Connection
from services.generator.pacing import INF, Schedule
from tests import plans


class Wire:
    """A transport that keeps what the engine writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def abort(self) -> None:
        pass


@pytest.fixture
def engine():
    loop = asyncio.new_event_loop()
    plan = plans.plan(plans.ENGINE, "http://127.0.0.1:9", connections=1, timeout=None)
    eng = Engine(plan, loop)
    conn = Connection(eng)
    conn.transport = Wire()  # type: ignore[assignment]
    eng.conns.add(conn)
    yield eng, conn
    loop.close()


def pace_without_timer(eng: Engine, rate: float, ago_s: float) -> None:
    """What ``Engine.start`` sets up, minus the pacer task: only responses send."""
    eng.t0 = time.monotonic() - ago_s
    eng.arrivals.start(Schedule([Segment(0.0, 60.0, rate, rate)], 1.0), eng.t0)
    eng.pacing = True


def respond(eng: Engine, conn: Connection) -> None:
    conn.busy, conn.status, conn.keep_alive = True, 200, True
    conn.intended = conn.sent = time.monotonic()
    eng.on_response(conn)


def test_a_free_connection_takes_every_arrival_due_by_then_oldest_first(engine):
    eng, conn = engine
    pace_without_timer(eng, rate=40, ago_s=0.0375)  # arrivals at 0, 25 ms due; 50 ms not yet
    respond(eng, conn)
    assert eng.cur.sent == 1 and len(conn.transport.writes) == 1  # the oldest, at once
    assert conn.intended == pytest.approx(eng.t0)
    assert eng.waiting() == 1  # the other waits for the connection, nothing stored for it
    assert eng.arrivals.i == 1 and eng.arrivals.at == pytest.approx(eng.t0 + 0.025)
    respond(eng, conn)  # the connection is free again: the waiting arrival goes
    assert eng.cur.sent == 2 and conn.intended == pytest.approx(eng.t0 + 0.025)  # its own time
    assert eng.waiting() == 0 and eng.arrivals.at == pytest.approx(eng.t0 + 0.050)


def test_a_response_before_the_next_arrival_sends_nothing_new(engine):
    eng, conn = engine
    pace_without_timer(eng, rate=40, ago_s=0.0125)  # arrival 0 due; the next at 25 ms
    respond(eng, conn)
    assert eng.arrivals.i == 1 and len(conn.transport.writes) == 1
    respond(eng, conn)  # its response, still before 25 ms
    assert eng.arrivals.i == 1 and eng.cur.sent == 1
    assert eng.idle == [conn]


def test_rebase_is_seen_by_the_next_response(engine):
    eng, conn = engine
    pace_without_timer(eng, rate=40, ago_s=0.025)
    respond(eng, conn)
    assert eng.arrivals.at == pytest.approx(eng.t0 + 0.025)
    # 100/s from the start: arrivals 1 and 2 (10 and 20 ms) are late now, 3 at 30 ms not due
    eng.rebase(Schedule([Segment(0.0, 60.0, 100, 100)], 1.0))
    assert eng.arrivals.at == 0.0
    respond(eng, conn)
    respond(eng, conn)
    assert eng.arrivals.i == 3 and eng.cur.sent == 3
    assert eng.arrivals.at == pytest.approx(eng.t0 + 0.030)


def test_waiting_arrivals_keep_the_intended_time_of_the_schedule_they_were_due_under(engine):
    eng, conn = engine
    pace_without_timer(eng, rate=40, ago_s=0.060)  # 0, 25, 50 ms due
    old = eng.schedule
    respond(eng, conn)  # sends 0; 1 and 2 wait
    # the rate drops to 10/s from 55 ms: the count continues, later arrivals follow it
    eng.rebase(old.rebased(0.055, [Segment(0.0, 60.0, 10, 10)], 1.0))
    respond(eng, conn)
    respond(eng, conn)
    assert conn.intended == pytest.approx(eng.t0 + 0.050)  # arrival 2, still the old time
    assert eng.arrivals.at == pytest.approx(eng.t0 + 0.055 + (3 - old.count_at(0.055)) / 10)
    assert not eng.arrivals.history  # nothing of the old schedule waits any more


def test_stop_sends_what_was_due_and_nothing_after(engine):
    eng, conn = engine
    pace_without_timer(eng, rate=40, ago_s=0.0375)
    eng.stop_pacing()  # 0 and 25 ms were due: they still go as the connection frees
    for _ in range(4):
        respond(eng, conn)
    assert eng.cur.sent == 2 and eng.arrivals.at == INF and eng.waiting() == 0
    assert len(conn.transport.writes) == 2


def test_a_closed_loop_engine_never_paces_from_responses(engine):
    eng, conn = engine
    eng.closed_loop = True  # what start_closed sets, without opening its users
    eng.stop_pacing()
    respond(eng, conn)
    assert eng.arrivals.i == 0 and eng.cur.sent == 0 and not conn.transport.writes


def test_the_pacer_is_a_timer_and_a_rebase_is_sent_on_the_loops_next_pass(engine):
    eng, conn = engine
    loop = eng.loop
    eng.idle.append(conn)
    t0 = time.monotonic() - 0.5
    # 1 arrival a second from 0.5 s ago: arrival 0 goes at the first pass, 1 is 0.5 s away
    eng.start(Schedule([Segment(0.0, 60.0, 1, 1)], 1.0), t0)
    loop.run_until_complete(asyncio.sleep(0))
    assert eng.cur.sent == 1 and isinstance(eng._pacer, asyncio.TimerHandle)
    eng.idle.append(conn)  # its response came
    # 100/s from the start: arrival 1 (at 10 ms) is due now, not in 0.5 s
    eng.rebase(Schedule([Segment(0.0, 60.0, 100, 100)], 1.0))
    loop.run_until_complete(asyncio.sleep(0))  # one pass, far less than a timer tick
    assert eng.cur.sent == 2 and conn.intended == pytest.approx(t0 + 0.010)
    eng.stop_pacing()
    loop.run_until_complete(eng.drain(0.0))
    assert eng._pacer is None


class Clock:
    """The engine's clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticking(monkeypatch):
    """An engine with 8 idle connections, a schedule of 1,000 arrivals a second and a
    fake clock at its start; the pacer's timer is not armed (each test calls ``_pace``)."""
    from services.generator import engine as engine_mod

    loop = asyncio.new_event_loop()
    plan = plans.plan(plans.ENGINE, "http://127.0.0.1:9", connections=8, timeout=None)
    eng = Engine(plan, loop)
    clock = Clock(1000.0)
    monkeypatch.setattr(engine_mod, "_now", clock)
    conns = []
    for _ in range(8):
        conn = Connection(eng)
        conn.transport = Wire()  # type: ignore[assignment]
        eng.conns.add(conn)
        eng.idle.append(conn)
        conns.append(conn)
    eng.t0 = clock.now
    eng.arrivals.start(Schedule([Segment(0.0, 60.0, 1000, 1000)], 1.0), eng.t0)
    eng.pacing = True
    monkeypatch.setattr(loop, "call_later", lambda *a: None)  # no timer: ticks by hand
    yield eng, conns, clock
    loop.close()


def sent_intended(conns) -> list[float]:
    return sorted(c.intended for c in conns if c.busy)


def test_a_tick_sends_every_arrival_due_by_then_together(ticking):
    eng, conns, clock = ticking
    clock.now = eng.t0 + 0.0035  # arrivals 0-3 (0, 1, 2, 3 ms) due, 4 ms not yet
    eng._pace()
    assert eng.cur.sent == 4 and eng.arrivals.i == 4
    assert sent_intended(conns) == pytest.approx([eng.t0 + k / 1000 for k in range(4)])
    assert sum(len(c.transport.writes) for c in conns) == 4  # one write each, none doubled
    assert len(eng.idle) == 4


def test_a_response_within_the_tick_leaves_the_due_arrival_to_the_pacer(ticking):
    eng, conns, clock = ticking
    clock.now = eng.t0 + 0.0005
    eng._pace()  # arrival 0
    first = next(c for c in conns if c.busy)
    clock.now = eng.t0 + 0.0015  # arrival 1 (1 ms) is due, 0.5 ms ago: less than a tick
    first.status, first.keep_alive = 200, True
    eng.on_response(first)
    assert eng.cur.sent == 1 and not first.busy and eng.idle[-1] is first
    clock.now = eng.t0 + 0.0025  # the next tick: 1 and 2 leave together
    eng._pace()
    assert eng.cur.sent == 3
    assert first.busy, "the most recently freed connection goes first (LIFO)"
    assert sent_intended(conns) == pytest.approx([eng.t0 + 0.001, eng.t0 + 0.002])


def test_a_response_sends_arrivals_a_tick_late_and_the_rest_due_with_them(ticking):
    eng, conns, clock = ticking
    clock.now = eng.t0 + 0.0005
    eng._pace()  # arrival 0
    first = next(c for c in conns if c.busy)
    clock.now = eng.t0 + 0.0042  # 1-4 due; 1-3 a tick late or more: behind the schedule
    first.status, first.keep_alive = 200, True
    eng.on_response(first)
    assert first.intended == pytest.approx(eng.t0 + 0.001)  # the oldest, on this one
    assert eng.cur.sent == 5 and eng.arrivals.i == 5  # 2, 3 and 4 go with it, on idle ones
    assert sent_intended(conns) == pytest.approx([eng.t0 + k / 1000 for k in range(1, 5)])


def test_with_every_other_connection_busy_a_response_sends_what_is_due_at_once(ticking):
    eng, conns, clock = ticking
    for conn in conns[1:]:
        eng.idle.remove(conn)
        conn.busy = True  # seven connections taken: only one is free
        conn.intended = conn.sent = clock.now
    clock.now = eng.t0 + 0.0005
    eng._pace()
    conn = conns[0]
    assert conn.busy and eng.cur.sent == 1
    clock.now = eng.t0 + 0.0012  # arrival 1 is 0.2 ms late: no tick could send it sooner
    conn.status, conn.keep_alive = 200, True
    eng.on_response(conn)
    assert eng.cur.sent == 2 and conn.busy and conn.intended == pytest.approx(eng.t0 + 0.001)
    other = conns[1]
    other.status, other.keep_alive = 200, True
    eng.on_response(other)  # nothing due: it waits idle
    assert eng.idle == [other] and eng.cur.sent == 2
    clock.now = eng.t0 + 0.0021  # 2 is 0.1 ms late and a connection is idle: the tick's
    conn.status, conn.keep_alive = 200, True
    eng.on_response(conn)
    assert eng.cur.sent == 2 and eng.idle == [other, conn]
    eng._pace()  # 2 leaves on the most recently freed connection
    assert eng.cur.sent == 3 and conn.busy and eng.idle == [other]


def test_ticks_and_responses_send_every_arrival_once_in_order(ticking):
    """Ticks at uneven gaps, responses in between: arrivals 0..N-1 each written once."""
    eng, conns, clock = ticking
    written: list[float] = []
    for conn in conns:
        conn.transport.write = lambda data, c=conn: written.append(c.intended)  # type: ignore[method-assign]
    gaps = [0.0013, 0.0021, 0.0009, 0.0017, 0.0030, 0.0011] * 10
    for k, gap in enumerate(gaps):
        clock.now += gap
        eng._pace()
        clock.now += gap / 3
        for conn in list(conns)[k % 3::2]:  # some responses come back between ticks
            if conn.busy:
                conn.status, conn.keep_alive = 200, True
                eng.on_response(conn)
        for conn in conns:  # the rest before the next tick
            if conn.busy:
                conn.status, conn.keep_alive = 200, True
                eng.on_response(conn)
    clock.now += 0.0005
    eng._pace()
    due = int((clock.now - eng.t0) * 1000) + 1  # arrivals 0 .. due-1 are due by now
    assert eng.arrivals.i == due and eng.cur.sent == due and not eng.cur.dropped[0]
    assert written == pytest.approx([eng.t0 + n / 1000 for n in range(due)])


def test_a_stop_sends_what_was_left_to_the_next_tick_and_nothing_after(ticking):
    eng, conns, clock = ticking
    clock.now = eng.t0 + 0.0005
    eng._pace()  # arrival 0
    first = next(c for c in conns if c.busy)
    clock.now = eng.t0 + 0.0015  # 1 due 0.5 ms ago: the next tick's, but no tick comes
    eng.stop_pacing()
    assert eng.cur.sent == 2 and eng.arrivals.i == 2 and eng.waiting() == 0
    clock.now = eng.t0 + 0.0030
    first.status, first.keep_alive = 200, True
    eng.on_response(first)  # 2 and 3 fell due after the stop: never sent
    assert eng.cur.sent == 2 and eng.waiting() == 0 and first in eng.idle


def test_after_a_stop_a_freed_connection_takes_what_was_due_at_once(ticking):
    eng, conns, clock = ticking
    for conn in conns[1:]:
        eng.idle.remove(conn)
        conn.busy = True
        conn.intended = conn.sent = clock.now
    clock.now = eng.t0 + 0.0021  # 0, 1, 2 due; one connection free
    eng._pace()
    assert eng.cur.sent == 1 and eng.waiting() == 2
    eng.stop_pacing()
    for conn in conns[1:3]:  # each freed connection takes a waiting arrival, not a tick later
        conn.status, conn.keep_alive = 200, True
        eng.on_response(conn)
    assert eng.cur.sent == 3 and eng.waiting() == 0
