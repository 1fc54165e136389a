"""The open-model engine sends an arrival from whichever comes first: a response or the pacer's tick.

These drive ``Engine.on_response`` on one connection whose transport only records
what is written, so what is due, what is sent and what waits is exact (no clock
race: the schedule is anchored tens of milliseconds around ``now``).
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
    pace_without_timer(eng, rate=40, ago_s=0.020)
    respond(eng, conn)
    assert eng.arrivals.at == pytest.approx(eng.t0 + 0.025)
    # 100/s from the start: arrivals 1 and 2 (10 and 20 ms) are due now, 3 at 30 ms not
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
