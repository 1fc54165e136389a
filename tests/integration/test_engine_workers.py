"""SURGE_WORKERS: N engine processes under one generator (services/generator/workers.py)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from schemas.control import Assignment, Segment
from services.common import histogram
from services.generator.pacing import Schedule, start_schedule
from services.plan import profile
from schemas.errors import Unavailable
from services.generator.workers import REPLY_S, WorkerPool
from tests.conftest import one_seconds_count, until
from tests.integration.test_engine_targets import OK, Target
from tests import plans

pytestmark = pytest.mark.timeout(60)


async def ok_forever(t, reader, writer):
    while await t.request(reader):
        writer.write(OK)


@pytest.fixture
async def pool():
    p = WorkerPool(3)
    await p.start()
    await p.ready()  # every worker imported and listening: a run starts together
    yield p
    await p.close()


async def test_ready_resolves_once_every_worker_said_hello_and_then_each_answers_at_once():
    pool = WorkerPool(3)
    await pool.start()
    try:
        with pytest.raises(Unavailable):  # spawned a moment ago: still importing
            await pool.ready(limit_s=0.001)
        await pool.ready()
        assert len(pool.procs) == 2 and all(p.is_alive() for p in pool.procs)
        loop = asyncio.get_running_loop()
        engine = pool.engine(plans.plan(plans.ENGINE, "http://127.0.0.1:9"), loop)
        began = loop.time()
        await engine.gather()  # a take every worker answers: gives up after REPLY_S
        assert loop.time() - began < REPLY_S
    finally:
        await pool.close()


async def test_pool_sends_exactly_the_schedule_and_merges_every_second(pool):
    async with Target(ok_forever) as t:
        loop = asyncio.get_running_loop()
        engine = pool.engine(plans.plan(plans.ENGINE, t.url, connections=4), loop)
        t0 = time.monotonic()  # the pool is ready: every worker takes the start at once
        engine.start(Schedule([Segment(0.0, 3.0, 200, 200)], 1.0), t0)
        per_second = []
        for k in range(2):
            # the service's interval clock (RunTask): a second is taken at its boundary
            await asyncio.sleep(t0 + k + 1 - time.monotonic())  # second k's boundary: a measurement window
            asked_s = time.monotonic() - t0  # a busy machine wakes us (and the workers) late
            await engine.gather()
            answered_s = time.monotonic() - t0
            iv = engine.take_interval()
            stats = iv.to_stats(engine.names, run_id="r", generator_id="g", epoch=1, seq=k,
                                target=200, in_flight=0)
            per_second.append((iv.sent, stats.requests["r"].count,
                               histogram.decode(stats.requests["r"].latency).get_total_count(),
                               asked_s, answered_s))
        await asyncio.sleep(t0 + 3.0 - time.monotonic())  # the schedule's end: a measurement window
        await engine.drain(2.0)
        last = engine.take_interval()
    # an arrival due exactly on a boundary may fall either side of it; none is lost
    assert sum(s for s, *_ in per_second) + last.sent == 600
    sent_so_far = 0
    for sent, count, hist_count, asked_s, answered_s in per_second:
        # each worker ends its second when it reads the take: what the schedule asked by
        # then, give or take an arrival per worker on that boundary
        sent_so_far += sent
        assert 200 * asked_s - 3 <= sent_so_far <= 200 * answered_s + 3, per_second
        assert count == hist_count
        # what differs is in flight across a boundary: one request a connection at most, and
        # the pool has 2 (4 split among 3 engines) an engine, whatever the machine's load
        assert abs(count - sent) <= 3 * 2, per_second
    assert sum(c for _, c, *_ in per_second) + last.completed() == 600 == t.requests
    assert len(last.errors[0]) == 0


async def test_pool_closed_loop_splits_users_across_processes(pool):
    async with Target(ok_forever) as t:
        engine = pool.engine(plans.plan(plans.ENGINE, t.url), asyncio.get_running_loop())
        engine.start_closed(users=7)
        await t.until(lambda: t.connections == 7 and t.requests > 100, 20, "every user connected and busy")
        await engine.gather()
        assert t.connections == 7
        await engine.drain(2.0)
        iv = engine.take_interval()
    assert iv.completed() == t.requests
    assert iv.sent == t.requests


async def test_pool_runs_a_plans_closed_model_and_a_rebalance_moves_every_engines_users(pool):
    async with Target(ok_forever) as t:
        loop = asyncio.get_running_loop()
        plan = plans.plan(plans.ENGINE, t.url, rate=None, users=9, duration=30)
        prof = profile.from_plan(plan)
        now = time.time()
        a = Assignment(run_id="r", epoch=1, share=1 / 3, start_at=now, end_at=now + 30, profile=prof,
                       plan=plan, index=0, count=3)
        engine = pool.engine(plan, loop, seed=0, index=0, count=3)  # what load.engine_for gives
        engine.start(start_schedule(prof, a.share), time.monotonic())
        # generator 1 of 3: 3 of the 9 users, one on each engine process, each its connection
        await until(lambda: t.connections == 3 and t.requests > 50, 20, "this generator's 3 users busy")
        await engine.gather()
        assert t.connections == 3
        engine.reassign(msgspec.structs.replace(a, epoch=2, index=0, count=1, share=1.0))
        await until(lambda: t.connections == 9, 20, "all 9 users after the rebalance")
        await engine.drain(2.0)
        iv = engine.take_interval()
    assert t.connections == 9
    assert iv.completed() == iv.sent == t.requests


async def test_a_killed_worker_is_replaced_and_its_missed_arrivals_are_dropped_not_lost(pool):
    async with Target(ok_forever) as t:
        loop = asyncio.get_running_loop()
        engine = pool.engine(plans.plan(plans.ENGINE, t.url, connections=6), loop)
        t0 = time.monotonic()
        # long enough for a whole second after the replacement is ready: a worker's start
        # (a fresh interpreter's imports) took over 5 s on a loaded machine
        rate, seconds = 300, 10
        engine.start(Schedule([Segment(0.0, float(seconds), rate, rate)], 1.0), t0)
        seconds_seen: list[tuple[int, int, int]] = []  # (sent, completed, dropped) per second

        async def take(k: int) -> None:  # at second k's boundary, as the service's clock
            await asyncio.sleep(max(t0 + k + 1 - time.monotonic(), 0))  # second k's boundary: a measurement window
            await engine.gather()
            iv = engine.take_interval()
            seconds_seen.append((iv.sent, iv.completed(), sum(iv.dropped)))

        await take(0)
        victim = pool.procs[0]
        victim.kill()  # worker 1 of 3, mid-run
        await until(lambda: pool.restarts == 1, 20, "worker 1 replaced")
        await pool.ready()  # the replacement said hello: it sends its third from now
        assert pool.procs[0].pid != victim.pid and pool.procs[0].is_alive()
        k = first = int(time.monotonic() - t0)
        assert first <= seconds - 3, f"the replacement was ready only {first} s into the run"
        while k < seconds - 1:
            await take(k)
            k += 1
        await asyncio.sleep(max(t0 + seconds - time.monotonic(), 0))  # the schedule's end: a measurement window
        await engine.drain(2.0)
        last = engine.take_interval()
    seconds_seen.append((last.sent, last.completed(), sum(last.dropped)))
    sent = sum(s for s, _, _ in seconds_seen)
    dropped = sum(d for _, _, d in seconds_seen)
    # the dead worker's share between its last report and its replacement is counted
    # dropped; what it sent but never reported (its last moments) is all that can be
    # missing, a few arrivals at 100/s each
    assert dropped > 0
    assert rate * seconds - 5 <= sent + dropped <= rate * seconds, seconds_seen
    # the replacement carries its third again: the last whole second is the full rate (by
    # this test's clock, which a loaded machine wakes late like any other)
    assert seconds_seen[-2][1] == one_seconds_count(rate), seconds_seen


async def test_a_second_of_raw_latencies_crosses_the_channel_whole():
    # ~1.6 MB: far more than a socket buffer, so it must go through non-blocking framing
    import socket

    import numpy as np

    from services.generator.recorder import Interval
    from services.generator.workers import Channel, _part, add_part, to_part

    a, b = socket.socketpair()
    left, right = await Channel.over(a), await Channel.over(b)
    iv = Interval(1)
    iv.latency[0].extend(np.linspace(0.0001, 0.5, 100_000))
    iv.service[0].extend(np.linspace(0.0001, 0.2, 100_000))
    left.send(to_part(iv, worker=1, seq=7, in_flight=3))
    left.send(to_part(Interval(1), worker=1, seq=8, in_flight=0))
    first, second = _part.decode(await right.recv()), _part.decode(await right.recv())
    assert (first.seq, second.seq) == (7, 8)
    merged = Interval(1)
    add_part(merged, first)
    assert merged.completed() == 100_000
    assert np.array_equal(merged.batches[0][0][0], np.asarray(iv.latency[0]))
    left.close()
    right.close()
