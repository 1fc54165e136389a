"""The flow engine's pool on the fast engine's protocol (``http.FullConnection``): what a
flow step gets back however the response's bytes are cut into reads.

Each case feeds the bytes of one response to a pool connection read by read, through
the pool's one read buffer as the event loop does (``get_buffer`` → copy →
``buffer_updated``), and checks what the waiter gets: (status, head fields, body) or
the failure and its kind. Against real servers: tests/integration/test_http_conformance.py.
"""

from __future__ import annotations

import asyncio
import zlib

import pytest

from services.generator.http import SMALL_READ, FullConnection, final_head_end
from services.generator.pool import Pool, Reset, ResponseTooLarge
from tests import plans


class Wire:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def feed(conn: FullConnection, *reads: bytes) -> None:
    for data in reads:
        conn.get_buffer(len(data))[:len(data)] = data
        conn.buffer_updated(len(data))


def connect(pool: Pool) -> FullConnection:
    """A connection as the pool dials it, free."""
    conn = FullConnection(pool)
    conn.connection_made(Wire())  # type: ignore[arg-type]
    pool.idle.append(conn)
    return conn


def send(pool: Pool, waiter=None, head_only: bool = False):
    waiter = waiter or asyncio.get_running_loop().create_future()
    pool.start(b"GET / HTTP/1.1\r\n\r\n", head_only, waiter)
    return waiter


async def exchange(pool: Pool, *reads: bytes, head_only: bool = False):
    conn = connect(pool)
    fut = send(pool, head_only=head_only)
    feed(conn, *reads)
    assert fut.done(), "the response is whole"
    return conn, fut


@pytest.fixture
async def pool():
    p = Pool(plans.plan(plans.ONE_FLOW))
    yield p
    await p.close()


BIG = b"x" * (SMALL_READ + 100)
HEAD = b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=1\r\nContent-Length: %d\r\n\r\n"


@pytest.mark.parametrize("cut", [1, 5, 20, 36, 40, 51, 54])
async def test_a_head_cut_anywhere_across_reads_is_whole(pool, cut):
    raw = HEAD % 5 + b"hello"
    conn, fut = await exchange(pool, raw[:cut], raw[cut:])
    status, head, body = fut.result()
    assert (status, head["Set-Cookie"], body) == (200, "sid=1", b"hello")
    assert conn in pool.idle, "kept alive, free again"


async def test_a_long_read_keeps_only_the_head_and_the_body_whole(pool):
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + HEAD % len(BIG) + BIG
    conn, fut = await exchange(pool, raw)
    status, head, body = fut.result()
    assert (status, head["Set-Cookie"], "Link" in head, body) == (200, "sid=1", False, BIG)
    assert final_head_end(raw, len(raw)) == len(raw) - len(BIG) == len(b"".join(conn.reads))


async def test_interim_responses_in_their_own_reads_are_skipped(pool):
    _, fut = await exchange(pool, b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early",
                            b" Hints\r\nLink: <b>\r\n\r\n" + HEAD % 2, b"ok")
    status, head, body = fut.result()
    assert (status, head.get("Set-Cookie"), body) == (200, "sid=1", b"ok")


async def test_head_has_no_body_whatever_content_length_says(pool):
    conn, fut = await exchange(pool, HEAD % 99, head_only=True)
    assert fut.result()[::2] == (200, b"")
    assert conn in pool.idle
    fut2 = send(pool)  # the next response parses afresh
    feed(conn, HEAD % 2 + b"ok")
    assert fut2.result()[::2] == (200, b"ok")


async def test_the_body_is_handed_over_as_sent_and_decoded_by_the_client(pool):
    packed = zlib.compress(b"needle")
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(packed), packed)
    _, fut = await exchange(pool, raw[:70], raw[70:])
    status, head, body = fut.result()
    assert body == packed and pool.client().received(head, body) == b"needle"


async def test_the_next_request_sent_from_the_waiter_starts_a_fresh_head(pool):
    """session._Chain sends the next step from the response's callback, in the same read."""
    conn = connect(pool)
    got = []

    class Chain:
        def done(self):
            return False

        def set_result(self, result):
            got.append(result)
            if len(got) == 1:
                send(pool, self)

        def set_exception(self, exc):
            got.append(exc)

    send(pool, Chain())
    feed(conn, HEAD % 1 + b"a")
    assert conn.busy and conn.reads == [] and conn.head_len == 0
    feed(conn, b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb")
    assert [(s, b) for s, _, b in got] == [(200, b"a"), (201, b"b")]
    assert got[1][1].get("Set-Cookie") is None


@pytest.mark.parametrize("reads, kind", [
    ([b"HTTP/1.1 200 OK\r\nX-Big: " + b"y" * (40 << 10), b"y" * (30 << 10)], "too_large"),
    ([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"], "other"),
    ([b"garbage\r\n\r\n"], "other"),
])
async def test_a_response_that_cannot_be_one_fails_with_the_fast_engines_kind(pool, reads, kind):
    conn = connect(pool)
    fut = send(pool)
    feed(conn, *reads)
    assert Pool.classify(fut.exception()) == kind
    assert isinstance(fut.exception(), ResponseTooLarge) == (kind == "too_large")
    assert conn not in pool.idle and conn not in pool.busy


async def test_a_connection_lost_mid_response_is_a_reset(pool):
    conn = connect(pool)
    fut = send(pool)
    feed(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.connection_lost(None)
    assert isinstance(fut.exception(), Reset) and Pool.classify(fut.exception()) == "reset"


HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"a" * (40 << 10) + b">\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * (40 << 10) + b"\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("cuts", [
    (), (16 << 10, 32 << 10, 48 << 10, 64 << 10), (len(HINTS) - 3,), (len(HINTS) - 2,),
    (len(HINTS) - 1,), (len(HINTS),), (len(HINTS) + 1,), (100, len(HINTS) + 5, len(HINTS) + 40000),
])
async def test_a_1xx_head_and_the_final_one_are_bounded_each_on_its_own(pool, cuts):
    """A 40 KB 103, then a 40 KB head: 80 KB of heads, each within 64 KB, however the
    reads cut them (16 KB TLS records, the 1xx's end on a read's boundary)."""
    raw = HINTS + FINAL
    edges = [0, *cuts, len(raw)]
    _, fut = await exchange(pool, *[raw[a:b] for a, b in zip(edges, edges[1:])])
    status, head, body = fut.result()
    assert (status, len(head["X-Big"]), body) == (200, 40 << 10, b"ok")


@pytest.mark.parametrize("cuts", [(), (len(HINTS) - 2,), (len(HINTS) + 100,)])
async def test_a_final_head_beyond_64_kb_after_a_1xx_is_too_large(pool, cuts):
    raw = HINTS + FINAL.replace(b"b" * (40 << 10), b"b" * (65 << 10))
    edges = [0, *cuts, len(raw)]
    _, fut = await exchange(pool, *[raw[a:b] for a, b in zip(edges, edges[1:])])
    assert isinstance(fut.exception(), ResponseTooLarge)


async def test_every_address_is_tried_and_the_one_that_took_a_connection_goes_first():
    """http.Addresses, which dials the fast engine's connections and the pool's."""
    from services.generator.http import Addresses

    addrs = Addresses(asyncio.get_running_loop(), "localhost", 9)  # both loopbacks (RFC 6761)
    tried: list[str] = []
    refuses: set[str] = set()

    async def dial(addr: str) -> str:
        tried.append(addr)
        if addr in refuses:
            raise ConnectionRefusedError(addr)
        return addr

    assert {await addrs.connect(dial)} == {tried[0]}
    first = tried[0]
    refuses.add(first)
    tried.clear()
    works = await addrs.connect(dial)
    assert tried == [first, works] and works != first
    tried.clear()
    assert await addrs.connect(dial) == works and tried == [works]  # from then on: first
    refuses.add(works)
    with pytest.raises(ConnectionRefusedError):
        await addrs.connect(dial)


async def test_1xx_heads_without_end_are_too_large_once_more_than_a_head_and_a_read_are_kept(pool):
    flood = b"HTTP/1.1 100 Continue\r\n\r\n" * 800  # 20 KB a read, each head tiny
    conn = connect(pool)
    fut = send(pool)
    reads = 0
    while not fut.done() and reads < 100:
        feed(conn, flood)
        reads += 1
    assert isinstance(fut.exception(), ResponseTooLarge)
    assert reads * len(flood) <= (64 << 10) + (256 << 10) + len(flood)
