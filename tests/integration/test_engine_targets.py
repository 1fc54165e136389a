"""The engine against raw-socket targets on 127.0.0.1 that misbehave on purpose.

Each target is an asyncio server written byte by byte in the test, so every wire
shape is exact: responses split across reads, chunked bodies, ``Connection: close``,
resets, a 100 MB body, heads that never end. Each must be counted as the right
outcome (error kinds: connect, timeout, reset, status, check, too_large) and the
generator's memory must stay bounded whatever the target sends.
"""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc

import pytest

from schemas.control import Segment
from services.generator import http
from services.generator.engine import Engine
from services.generator.pacing import Schedule
from services.generator.recorder import Interval
from tests.conftest import until
from tests import plans
from tests.servers import RawServer, abort_with_rst

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


class Target(RawServer):
    """An asyncio server on 127.0.0.1 whose connections run ``handler(target, reader, writer)``."""

    def __init__(self, handler) -> None:
        super().__init__(handler)
        self.requests = 0

    async def request(self, reader: asyncio.StreamReader) -> bool:
        """Read one request head; False at end of stream."""
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        self.requests += 1
        self.got_request()
        return True


async def run_open(url: str, *, rate: float = 20, seconds: float = 0.5, drain_s: float = 5.0,
                   checks: dict | None = None, conns: int = 2, **plan_kw) -> Interval:
    """Send ``rate × seconds`` arrivals, wait for them, return everything recorded."""
    if checks:
        plan_kw["requests"] = [{"name": "r", "path": "/x", "checks": checks}]
    engine = Engine(plans.plan(plans.ENGINE, url, connections=conns, **plan_kw), asyncio.get_running_loop())
    engine.start(Schedule([Segment(0.0, seconds, rate, rate)], 1.0), time.monotonic())
    await until(lambda: not engine.pacing, seconds + 5, "the schedule's end")
    await engine.drain(drain_s)
    return engine.take_interval()


def errors(iv: Interval) -> dict[str, int]:
    return iv.errors[0]


# --- responses that arrive in pieces ------------------------------------------
async def test_response_split_byte_by_byte_is_one_success():
    async def slow_bytes(t, reader, writer):
        while await t.request(reader):
            for i in range(len(OK)):
                writer.write(OK[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.0005)  # protocol pacing: each byte reaches the client alone

    async with Target(slow_bytes) as t:
        iv = await run_open(t.url, rate=20, seconds=0.5, checks={"status": 200, "body_contains": "hello"})
    assert iv.sent == 10
    assert iv.completed() == 10
    assert errors(iv) == {}


async def test_chunked_body_across_reads_is_checked_whole():
    chunks = [b"wor", b"ld he", b"llo", b" there"]  # "hello" spans chunks

    async def chunked(t, reader, writer):
        while await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for c in chunks:
                await writer.drain()
                await asyncio.sleep(0.001)  # protocol pacing: each chunk in a read of its own
                writer.write(b"%x\r\n%s\r\n" % (len(c), c))
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with Target(chunked) as t:
        good = await run_open(t.url, rate=20, checks={"body_contains": "ld hello"})
        bad = await run_open(t.url, rate=20, checks={"body_contains": "missing"})
    assert good.completed() == 10 and errors(good) == {}
    assert bad.completed() == 10 and errors(bad) == {"check": 10}


async def test_connection_close_responses_each_succeed_on_a_new_connection():
    async def close_each(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()

    async with Target(close_each) as t:
        iv = await run_open(t.url, rate=20, checks={"body_contains": "hello"})
    assert iv.completed() == 10 and errors(iv) == {}
    assert t.connections >= 10


async def test_body_delimited_by_close_is_a_complete_response():
    async def until_eof(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until the end")
            await writer.drain()

    async with Target(until_eof) as t:
        iv = await run_open(t.url, rate=20, checks={"body_contains": "the end"})
    assert iv.completed() == 10 and errors(iv) == {}


# --- outcomes that are errors -------------------------------------------------------
async def test_reset_after_request_counts_as_reset():
    async def reset(t, reader, writer):
        if await t.request(reader):
            abort_with_rst(writer.transport)

    async with Target(reset) as t:
        iv = await run_open(t.url, rate=20)
    assert iv.completed() == 10
    assert errors(iv) == {"reset": 10}


async def test_close_midway_through_the_body_counts_as_reset():
    async def truncated(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
            await writer.drain()

    async with Target(truncated) as t:
        iv = await run_open(t.url, rate=20)
    assert iv.completed() == 10 and errors(iv) == {"reset": 10}


async def test_server_error_status_and_failed_status_check():
    async def status(t, reader, writer):
        while await t.request(reader):
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")

    async with Target(status) as t:
        default = await run_open(t.url, rate=20)
        allowed = await run_open(t.url, rate=20, checks={"status": [200, 503]})
    assert errors(default) == {"status": 10}
    assert errors(allowed) == {}


async def test_nothing_listening_counts_as_connect():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        iv = await run_open(f"http://127.0.0.1:{port}", rate=20, conns=2)
    assert iv.completed() + sum(iv.dropped) == 10
    assert errors(iv).get("connect", 0) >= 1
    assert set(errors(iv)) == {"connect"}


async def test_garbage_response_is_other():
    async def garbage(t, reader, writer):
        while await t.request(reader):
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with Target(garbage) as t:
        iv = await run_open(t.url, rate=20)
    assert errors(iv) == {"other": 10}


# --- hostile targets: memory stays bounded --------------------------------------------
@pytest.mark.parametrize("checks", [None, {"body_contains": "needle"}], ids=["skipped", "checked"])
async def test_100_mb_body_is_counted_not_kept(checks):
    size, block = 100 << 20, b"x" * (1 << 20)

    async def huge(t, reader, writer):
        while await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            writer.write(b"needle")
            for _ in range(size // len(block) - 1):
                writer.write(block)
                await writer.drain()
            writer.write(block[: len(block) - 6])
            await writer.drain()

    tracemalloc.start()
    try:
        async with Target(huge) as t:
            iv = await run_open(t.url, rate=2, seconds=1.0, timeout=30, drain_s=30, checks=checks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert iv.completed() == 2 and errors(iv) == {}
    # two 100 MB bodies went through; at most the 1 MB check buffer and read chunks stayed
    assert peak < 24 << 20, f"peak traced memory {peak / 2**20:.1f} MB"


async def test_check_searches_only_the_kept_first_megabyte():
    async def late_needle(t, reader, writer):
        while await t.request(reader):
            body = b"y" * (http.MAX_CHECK_BODY + 10) + b"needle"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async with Target(late_needle) as t:
        iv = await run_open(t.url, rate=4, seconds=0.5, checks={"body_contains": "needle"})
    assert errors(iv) == {"check": 2}


async def test_endless_chunked_body_times_out_with_bounded_memory():
    async def endless(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
            while True:
                writer.write(chunk)
                await writer.drain()

    tracemalloc.start()
    try:
        async with Target(endless) as t:
            iv = await run_open(t.url, rate=4, seconds=0.5, timeout=1.0,
                                checks={"body_contains": "never"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert iv.completed() == 2 and errors(iv) == {"timeout": 2}
    assert peak < 24 << 20, f"peak traced memory {peak / 2**20:.1f} MB"


async def test_head_that_never_finishes_times_out():
    async def slowloris(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(10_000):
                writer.write(b"X-Slow-%d: a\r\n" % i)
                await writer.drain()
                await asyncio.sleep(0.05)  # the fault: a header line every 50 ms, never the end

    async with Target(slowloris) as t:
        t0 = time.monotonic()
        iv = await run_open(t.url, rate=4, seconds=0.5, timeout=0.5)
        took = time.monotonic() - t0
    assert iv.completed() == 2 and errors(iv) == {"timeout": 2}
    assert took < 3.0


async def test_endless_head_is_too_large_not_buffered():
    async def flood(t, reader, writer):
        if await t.request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
            for _ in range(100_000):
                writer.write(line)
                await writer.drain()

    async with Target(flood) as t:
        iv = await run_open(t.url, rate=4, seconds=0.5, timeout=5.0)
    assert iv.completed() == 2 and errors(iv) == {"too_large": 2}


# --- closed loop and worker slicing -----------------------------------------------------
async def ok_forever(t, reader, writer):
    while await t.request(reader):
        writer.write(OK)


async def test_closed_loop_keeps_each_user_busy_and_counts_every_response():
    async with Target(ok_forever) as t:
        engine = Engine(plans.plan(plans.ENGINE, t.url, connections=4), asyncio.get_running_loop())
        engine.start_closed(users=3)
        await t.until(lambda: len(engine.conns) == 3 and t.requests > 50, 10, "three busy users")
        await engine.drain(2.0)
        iv = engine.take_interval()
    assert iv.completed() == iv.sent == t.requests
    assert iv.completed() > 50
    assert errors(iv) == {}
    assert t.connections == 3


async def test_closed_loop_think_time_paces_each_user():
    async with Target(ok_forever) as t:
        engine = Engine(plans.plan(plans.ENGINE, t.url), asyncio.get_running_loop())
        t0 = time.monotonic()
        engine.start_closed(users=2, think_s=0.1)
        await t.until(lambda: t.requests >= 10, 10, "ten requests from two thinking users")
        took = time.monotonic() - t0
        await engine.drain(2.0)
        iv = engine.take_interval()
    # two users, each sending, thinking 0.1 s, sending again: requests 9 and 10 leave
    # after four think times; without the think time they would all be gone in a few ms
    assert 0.38 <= took < 2.0, took  # (libuv timers may fire up to a ms early)
    assert errors(iv) == {}
    assert iv.completed() == iv.sent == t.requests


async def test_closed_loop_replaces_connections_the_target_closes():
    async def close_after_two(t, reader, writer):
        for _ in range(2):
            if not await t.request(reader):
                return
            writer.write(OK)
            await writer.drain()

    async with Target(close_after_two) as t:
        engine = Engine(plans.plan(plans.ENGINE, t.url), asyncio.get_running_loop())
        engine.start_closed(users=2)
        await t.until(lambda: t.connections > 4, 10, "closed connections replaced")
        await engine.drain(2.0)
        iv = engine.take_interval()
    assert t.connections > 4
    assert iv.completed() - errors(iv).get("reset", 0) >= 2 * t.connections - 4


async def test_worker_slices_send_exactly_the_schedule_between_them():
    async with Target(ok_forever) as t:
        loop = asyncio.get_running_loop()
        plan = plans.plan(plans.ENGINE, t.url)
        sched = [Schedule([Segment(0.0, 1.0, 101, 101)], 1.0) for _ in range(3)]
        engines = [Engine(plan, loop, worker=w, workers=3) for w in range(3)]
        t0 = time.monotonic()
        for e, s in zip(engines, sched):
            e.start(s, t0)
        await until(lambda: not any(e.pacing for e in engines), 6, "every slice's schedule sent")
        for e in engines:
            await e.drain(2.0)
        ivs = [e.take_interval() for e in engines]
    assert [iv.sent for iv in ivs] == [34, 34, 33]
    assert sum(iv.completed() for iv in ivs) == 101 == t.requests


async def test_closed_loop_against_nothing_retries_without_spinning():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        engine = Engine(plans.plan(plans.ENGINE, f"http://127.0.0.1:{port}"), asyncio.get_running_loop())
        t0 = time.monotonic()
        engine.start_closed(users=2)
        await until(lambda: errors(engine.cur).get("connect", 0) >= 8, 10, "eight failed connects")
        took = time.monotonic() - t0
        await engine.drain(1.0)
        iv = engine.take_interval()
    # each user retries every 50 ms: its 4th attempt comes ≥ 150 ms after its 1st, where
    # a hot spin would have made thousands of attempts in that time
    assert set(errors(iv)) == {"connect"}
    assert took >= 0.15, took
    assert errors(iv)["connect"] <= 8 + 2 * (time.monotonic() - t0) / 0.05 + 2, errors(iv)
    assert iv.sent == iv.completed()


async def test_a_closed_plans_users_against_nothing_redial_once_each_50_ms():
    # the plan's users (not start_closed's fixed number) are looked at every 50 ms: a user
    # waiting to redial is one of them, or both the look and its own redial dial for it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        plan = plans.plan(plans.ENGINE, f"http://127.0.0.1:{port}", rate=None, users=4, duration=1)
        engine = Engine(plan, asyncio.get_running_loop())
        engine.start(Schedule([Segment(0.0, 1.0, 0, 0)], 1.0), time.monotonic())
        await until(lambda: not engine.pacing, 5, "the run's end")
        await engine.drain(1.0)
        iv = engine.take_interval()
    assert set(errors(iv)) == {"connect"}
    # one attempt per user every 50 ms over 1 s (a late timer only makes fewer); the look
    # and the redial both dialling made ~30 a user
    assert 4 <= errors(iv)["connect"] <= 4 * (1.0 / 0.05 + 2), errors(iv)
    assert iv.sent == iv.completed()


async def test_a_closed_plans_user_whose_handshake_hangs_waits_the_timeout_and_says_so():
    # a TLS handshake the target never answers: the user's request fails as a connect
    # error after the plan's timeout, and its latency is that wait (as the open model's
    # connect errors count from their intended time), not 0
    async def silent(t, reader, writer):
        await reader.read()  # the ClientHello, never answered

    async with Target(silent) as t:
        url = t.url.replace("http://", "https://")
        plan = plans.plan(plans.ENGINE, url, rate=None, users=1, duration=0.5, timeout=0.2,
                          insecure=True, http2="off")
        engine = Engine(plan, asyncio.get_running_loop())
        engine.start(Schedule([Segment(0.0, 0.5, 0, 0)], 1.0), time.monotonic())
        await until(lambda: not engine.pacing, 5, "the run's end")
        await engine.drain(1.0)
        iv = engine.take_interval()
    assert set(errors(iv)) == {"connect"} and errors(iv)["connect"] >= 1
    assert min(iv.latency[0]) >= 0.19 and min(iv.service[0]) >= 0.19, list(iv.latency[0])


async def test_arrivals_waiting_behind_a_target_that_answers_nothing_cost_no_memory():
    async def silent(t, reader, writer):
        await t.request(reader)
        await reader.read()  # until the engine gives up and closes

    async with Target(silent) as t:
        engine = Engine(plans.plan(plans.ENGINE, t.url, connections=2, timeout=1.0), asyncio.get_running_loop())
        tracemalloc.start()
        # 50,000 arrivals in half a second, two connections that never answer
        engine.start(Schedule([Segment(0.0, 0.5, 100_000, 100_000)], 1.0), time.monotonic())
        # the whole schedule due (a drain before 0.5 s would leave the rest unsent, by design)
        await until(lambda: engine.waiting() >= 49_000 and engine.now_s() > 0.5, 5,
                    "the whole schedule waiting")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await engine.drain(1.5)
        iv = engine.take_interval()
    # nothing is stored per waiting arrival (a deque of them took ~4.5 MB here)
    assert peak < 1_500_000, peak
    # every arrival was sent (and timed out) or waited past the timeout and was dropped
    assert set(errors(iv)) == {"timeout"}
    assert iv.sent <= 10 and iv.completed() == iv.sent
    assert iv.sent + sum(iv.dropped) == 50_000


def test_check_buffers_shrink_with_many_connections():
    assert http.check_cap(64) == http.MAX_CHECK_BODY
    assert http.check_cap(256) == http.CHECK_BUDGET // 256
    assert http.check_cap(100_000) == http.MIN_CHECK_BODY


async def test_big_heads_back_to_back_on_one_connection_are_each_bounded_alone():
    # arrivals waiting for the one connection: each is sent from the previous response's
    # callback, in the middle of parsing the read that held it; that read's bytes are the
    # previous head's, not the new one's (they once counted twice: 2 × 40 KB > 64 KB)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Big: " + b"b" * (40 << 10) + b"\r\n\r\nhello"

    async def big_heads(t, reader, writer):
        while await t.request(reader):
            writer.write(head)
            await writer.drain()

    async with Target(big_heads) as t:
        iv = await run_open(t.url, rate=400, seconds=0.05, conns=1)
    assert t.requests == 20 and t.connections == 1
    assert iv.completed() == 20 and errors(iv) == {}
