"""The fast path's closed model (services/generator/closed.py): how many users an engine
runs at each moment (the plan's users, split by generator and by engine process), and
what a response does when users come, retire or the run ends.

The engine's connections here are real ``http.Connection`` objects on a transport that
keeps what is written; the clock is the engine's own, moved by anchoring ``t0`` in the
past, so every assertion is exact.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.generator.closed import ClosedLoop
from services.generator.engine import Engine
from services.generator.http import Connection
from services.plan import loader
from services.plan.profile import users_at, users_for, users_of

RAMP = {"name": "ramp", "target": "http://127.0.0.1:9", "requests": [{"name": "r"}],
        "user_stages": [{"duration": 10, "target": 10}, {"duration": 5, "target": 10},
                        {"duration": 10, "target": 0}]}


class Wire:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_engines_part_adds_up_to_the_plans_users_at_every_moment(count, workers):
    plan = loader.from_obj(RAMP)
    for k in range(-5, 260):
        t = k / 10
        parts = [users_of(plan, t, index, count, w, workers)
                 for index in range(count) for w in range(workers)]
        assert sum(parts) == int(users_at(plan, t) + 1e-9), t
        assert max(parts) - min(parts) <= 1, (t, parts)  # as even as whole users go


def test_users_ramp_up_and_down_and_a_fixed_number_holds_for_the_duration():
    plan = loader.from_obj(RAMP)
    assert users_at(plan, 5) == 5 and users_at(plan, 12) == 10 and users_at(plan, 20) == 5
    assert users_at(plan, -1) == users_at(plan, 25) == users_at(plan, 30) == 0
    fixed = loader.from_obj({**{k: v for k, v in RAMP.items() if k != "user_stages"},
                             "users": 5, "duration": 3})
    assert [users_at(fixed, t) for t in (-0.1, 0, 2.9, 3)] == [0, 5, 5, 0]


@pytest.fixture
def closed_engine():
    """Generator 0 of 2 running RAMP; ``at(t)`` follows the plan as at run time ``t``."""
    loop = asyncio.new_event_loop()
    eng = Engine(loader.from_obj(RAMP), loop, index=0, count=2)
    opened: list[Connection] = []

    def open_one() -> None:  # a user's connection, up at once (no dial)
        conn = Connection(eng)
        conn.transport = Wire()  # type: ignore[assignment]
        eng.conns.add(conn)
        opened.append(conn)

    eng._open = open_one  # type: ignore[method-assign]
    closed = ClosedLoop(eng)

    def at(t: float) -> None:
        eng.t0 = time.monotonic() - t
        closed.end_at = eng.t0 + 25.0
        closed.follow()

    closed.attach(time.monotonic(), 25.0)
    yield eng, closed, opened, at
    loop.close()


def respond(eng: Engine, conn: Connection) -> None:
    conn.busy, conn.status, conn.keep_alive = True, 200, True
    conn.intended = conn.sent = time.monotonic()
    eng.on_response(conn)


def test_users_come_with_the_ramp_and_retire_after_their_response(closed_engine):
    eng, closed, opened, at = closed_engine
    at(4.0)  # 4 users in the run: 2 are this generator's
    assert len(opened) == 2 and eng.max_conns == 2
    for conn in opened:
        closed.next_for(conn, time.monotonic())  # connected: its first request
    assert eng.cur.sent == 2 and all(len(c.transport.writes) == 1 for c in opened)
    assert eng.in_flight() == 2 and eng.waiting() == 0  # the interval's in_flight: requests on the wire
    at(9.0)  # 9 in the run: 4 here
    assert len(opened) == 4
    for conn in opened[2:]:
        closed.next_for(conn, time.monotonic())
    at(22.5)  # on the way down: 2 in the run, 1 here
    assert eng.max_conns == 1 and len(eng.conns) == 4  # nobody is cut mid-request
    for conn in opened:
        respond(eng, conn)
    # the first three responses retire their users; the last one's user goes on
    assert [c.transport.aborted for c in opened] == [True, True, True, False]
    assert eng.conns == {opened[3]}
    assert len(opened[3].transport.writes) == 2 and eng.cur.sent == 5
    respond(eng, opened[3])  # one user left: no more looks at the number per response
    assert closed.until == closed.end_at and eng.cur.sent == 6


def test_no_request_starts_at_the_runs_end_and_a_rebalance_moves_the_users(closed_engine):
    eng, closed, opened, at = closed_engine
    at(12.0)
    assert len(opened) == 5
    eng.move(1, 2)  # now generator 1 of 2: still 5 of 10
    at(12.0)
    assert len(opened) == 5
    eng.move(0, 1)  # the only one left: all 10
    at(12.0)
    assert len(opened) == 10 and eng.max_conns == 10
    for conn in opened:
        closed.next_for(conn, time.monotonic())
    assert eng.cur.sent == 10
    at(25.0)  # the run's end: nobody sends again, what is in flight is the drain's
    assert not eng.pacing
    for conn in opened:
        respond(eng, conn)
    assert eng.cur.sent == 10 and len(eng.idle) == 10 and eng.in_flight() == 0
    assert eng.cur.count(0) == 10


def test_a_stop_ends_the_users_before_the_schedule_does(closed_engine):
    eng, closed, opened, at = closed_engine
    at(5.0)
    for conn in opened:
        closed.next_for(conn, time.monotonic())
    eng.stop_pacing()
    for conn in opened:
        respond(eng, conn)
    assert eng.cur.sent == len(opened) and len(eng.idle) == len(opened)


@pytest.mark.parametrize("worker", [0, 1])
def test_each_engine_process_sends_the_plans_mix_of_requests(worker):
    # with SURGE_WORKERS each engine runs its own part of the users, so its own requests
    # must follow the weights: a user walks the whole weighted table, not every
    # workers-th entry of it (a rare request would be one engine's only)
    plan = loader.from_obj({**{k: v for k, v in RAMP.items() if k != "user_stages"}, "users": 3,
                            "duration": 10, "requests": [{"name": "a", "weight": 999},
                                                         {"name": "b", "weight": 1}]})
    loop = asyncio.new_event_loop()
    eng = Engine(plan, loop, worker=worker, workers=2)
    ClosedLoop(eng).attach(time.monotonic(), 10.0)
    conn = Connection(eng)
    conn.transport = Wire()  # type: ignore[assignment]
    eng.conns.add(conn)
    eng._next_for(conn, time.monotonic())  # connected: its first request
    for _ in range(len(eng.table)):  # one cycle of the table
        respond(eng, conn)
    loop.close()
    assert [eng.cur.count(0), eng.cur.count(1)] == [999, 1]


@pytest.mark.parametrize("count", [2, 3, 5, 8])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_ramp_up_never_takes_a_user_from_an_engine(count, workers):
    # the run's users rising one at a time: each engine's part rises or holds, never falls —
    # else a ramp up retires a user (its connection closed) on one generator to start one
    # elsewhere (5 generators: 2 -> 3 users took generator 2's only user)
    for index in range(count):
        for w in range(workers):
            parts = [users_for(users_for(total, index, count), w, workers) for total in range(60)]
            assert parts == sorted(parts), (index, w, parts)
