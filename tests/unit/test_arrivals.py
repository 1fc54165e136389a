"""services/generator/arrivals.py: the one arrival cursor every engine walks its schedule with."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.control import Segment
from services.generator.arrivals import ArrivalCursor, owned, tally
from services.generator.pacing import INF, Schedule, start_schedule


def flat(rate: float, end: float = 60.0) -> list[Segment]:
    return [Segment(0.0, end, rate, rate)]


def take_until(cur: ArrivalCursor, rel: float) -> list[tuple[int, float]]:
    """Every arrival due by schedule time ``rel``: (number, schedule time)."""
    out = []
    t = cur.head()
    while t <= min(rel, cur.stop_rel):
        out.append((cur.i, t))
        t = cur.advance()
    return out


def test_a_cursor_walks_its_schedule_and_says_when_the_next_is_due():
    cur = ArrivalCursor()
    cur.start(Schedule(flat(10.0), 1.0), t0=100.0)
    assert cur.at == 100.0  # nothing looked up yet: look at the start
    got = take_until(cur, 0.35)
    assert got == [(0, 0.0), (1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]
    assert cur.i == 4 and cur.at == pytest.approx(100.4)
    assert cur.waiting(0.35) == 0 and cur.waiting(0.65) == 3


@pytest.mark.parametrize("kind", ["uniform", "phase", "poisson", "owned"])
def test_rebases_skip_nothing_and_double_nothing(kind):
    """Rate changes at odd moments, with arrivals left waiting across some of them: every
    number is taken once, in order, each at the time of the schedule it fell due under."""
    rates = [40.0, 13.0, 97.0, 5.0, 61.0]
    args = {"uniform": {}, "phase": {"phase": 0.25}, "poisson": {"arrivals": "poisson", "seed": 7},
            "owned": {"slot": (0.2, 0.7)}}[kind]
    sched = start_schedule(flat(rates[0]), 1.0, **args)
    cur = ArrivalCursor()
    cur.start(sched, t0=0.0)
    taken: list[tuple[int, float]] = []
    now = 0.0
    for k, rate in enumerate(rates[1:], 1):
        now += 0.73
        # every other change leaves the last 50 ms of arrivals waiting across it
        taken += take_until(cur, now - (0.05 if k % 2 else 0.0))
        new = sched.rebased(now, flat(rate), 1.0, phase=0.25 if kind == "phase" else None,
                            slot=(0.2, 0.7) if kind == "owned" else None)
        expected_next = cur.i
        want_t = sched.time_of(expected_next)  # the waiting one keeps its old time
        cur.rebase(new)
        if want_t < now:
            assert cur.head() == pytest.approx(want_t)
        sched = new
    taken += take_until(cur, now + 2.0)
    numbers = [n for n, _ in taken]
    assert numbers == list(range(len(numbers)))
    times = [t for _, t in taken]
    assert all(a <= b for a, b in zip(times, times[1:]))
    assert not cur.history  # nothing of an old schedule waits any more
    if kind != "poisson":  # the count is the integral of the rate, whatever the changes
        want = sum(r * 0.73 for r in rates[:-1]) + rates[-1] * 2.0
        scale = 0.5 if kind == "owned" else 1.0
        assert len(taken) == pytest.approx(want * scale, abs=3 + 0.05 * want * scale)


def test_an_arrival_waiting_across_two_rebases_keeps_its_first_schedules_time():
    a = Schedule(flat(10.0), 1.0)
    cur = ArrivalCursor()
    cur.start(a, t0=0.0)
    assert take_until(cur, 0.25)[-1][0] == 2  # 0, 0.1, 0.2 sent; 0.3, 0.4 will wait
    b = a.rebased(0.45, flat(100.0), 1.0)
    cur.rebase(b)
    c = b.rebased(0.47, flat(1.0), 1.0)
    cur.rebase(c)
    assert cur.at == 0.0  # the next look finds out
    got = take_until(cur, 0.5)
    assert got[:2] == [(3, pytest.approx(0.3)), (4, pytest.approx(0.4))]  # their own times
    # then b's arrivals from 0.45 to 0.47 (100/s), at b's times, then c's
    assert [n for n, _ in got] == list(range(3, 3 + len(got)))
    assert all(0.45 <= t <= 0.47 + 1e-9 for _, t in got[2:])
    assert cur.head() == pytest.approx(c.time_of(cur.i)) and cur.head() > 0.5


def test_drop_until_skips_a_range_in_bulk_exactly_as_one_by_one():
    sched = Schedule(flat(1000.0), 1.0)
    bulk, single = ArrivalCursor(first=1, stride=3), ArrivalCursor(first=1, stride=3)
    bulk.start(sched, 0.0)
    single.start(Schedule(flat(1000.0), 1.0), 0.0)
    dropped = bulk.drop_until(2.5)
    one_by_one = []
    while single.head() <= 2.5:
        one_by_one.append(single.i)
        single.advance()
    assert list(dropped) == one_by_one and len(dropped) > 64  # the numpy path was taken
    assert bulk.i == single.i and bulk.head() == single.head() > 2.5
    assert list(bulk.drop_until(2.5)) == []  # nothing more is due by then


def test_drop_until_across_a_rebase_and_after_the_end():
    a = Schedule(flat(100.0, end=1.0), 1.0)
    cur = ArrivalCursor()
    cur.start(a, 0.0)
    take_until(cur, 0.1)
    cur.rebase(a.rebased(0.5, flat(10.0, end=1.0), 1.0))
    gone = cur.drop_until(0.6)
    assert gone.start == 11 and cur.head() > 0.6 and not cur.history
    assert len(gone) == 39 + 2  # 0.11 … 0.49 at 100/s, then 0.5 and 0.6 at 10/s
    rest = cur.drop_until(INF)  # past the end: stops there
    assert cur.head() == INF and len(rest) == 3  # 0.7, 0.8, 0.9


def test_stride_cursors_share_a_schedule_exactly_and_a_restart_skips_what_is_not_its_own():
    sched = Schedule(flat(300.0, end=2.0), 1.0)
    parts = []
    for w in range(3):
        cur = ArrivalCursor(first=w, stride=3)
        cur.start(Schedule(flat(300.0, end=2.0), 1.0), 0.0)
        parts.append([n for n, _ in take_until(cur, 2.0)])
    assert sorted(n for p in parts for n in p) == list(range(600))
    assert all(n % 3 == w for w, p in enumerate(parts) for n in p)
    late = ArrivalCursor(first=2, stride=3)
    late.start(sched, 0.0, skip=sched.count_at(1.0))
    assert late.i == 302 and late.head() == pytest.approx(302 / 300)


def test_stop_sends_what_was_due_and_nothing_after():
    cur = ArrivalCursor()
    cur.start(Schedule(flat(10.0), 1.0), 0.0)
    take_until(cur, 0.15)
    cur.stop(0.35)
    assert [n for n, _ in take_until(cur, 5.0)] == [2, 3]
    assert cur.at == INF and cur.waiting(5.0) == 0


def test_owned_and_tally_count_a_dead_workers_arrivals_per_request():
    numbers = owned(10.2, 1000.0, first=1, stride=4)
    assert numbers.start == 13 and numbers[-1] == 997 and all(n % 4 == 1 for n in numbers)
    table = [0, 1, 1, 2]
    into_bulk, into_loop = [0, 0, 0], [0, 0, 0]
    tally(numbers, table, np.array(table), into_bulk)
    for n in numbers:
        into_loop[table[n % 4]] += 1
    assert into_bulk == into_loop and sum(into_bulk) == len(numbers) > 64
    small = [0, 0, 0]
    tally(range(0, 8), table, np.array(table), small)
    assert small == [2, 4, 2]
