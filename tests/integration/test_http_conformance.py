"""One HTTP semantics: every case on every path of the engine, against a real server.

Each case is a server on 127.0.0.1 written in the test (so the wire shape is exact:
HTTP/1.1 byte by byte, HTTP/2 frame by frame with the sans-I/O ``h2`` library) that
records every request it received; each case runs on the static engine (``engine.py``,
plain and over TLS, and a static plan's closed model: ``closed.py``, a user per
connection) and on the flow engine (``flows.py``: plain, TLS, HTTP/2 by ALPN, h2c) and
asserts both what the report says and what the server got. A case that does
not apply to a path is skipped with its reason. The cases are the tables in
docs/engine.md, "One HTTP semantics".
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import time
import zlib
from dataclasses import dataclass, field

import msgspec
import pytest

from schemas.control import Assignment, Segment
from services.generator.engine import Engine
from services.generator.pacing import Schedule
from services.generator.recorder import Interval
from tests import plans
from tests.conftest import until
from tests.servers import H2Server, H2Stream, RawServer, abort_with_rst, read_request, reply, tls_server_context

pytestmark = pytest.mark.timeout(60)

# per case and path: 6 arrivals at 30/s; as many connections (the flow engine's users in
# flight) as arrivals and a 5 s timeout, so a loaded machine delays them, never drops them
ARRIVALS = 6
RATE = 30.0


class Server(RawServer):
    """HTTP/1.1 byte by byte: ``respond(server, method, path, writer)`` answers a request.

    ``received`` is every request read (method, path), in order; ``respond`` returning
    False ends the connection.
    """

    def __init__(self, respond, host: str = "127.0.0.1", ctx=None) -> None:
        super().__init__(self._requests, host, ctx)
        self.respond = respond
        self.received: list[tuple[str, str]] = []

    async def _requests(self, _, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            method, path, _ = request
            self.received.append((method, path))
            if await self.respond(self, method, path, writer) is False:
                return
            await writer.drain()


# --- the server behaviours, HTTP/1.1 and HTTP/2 ----------------------------------------------


async def ok(srv, method, path, w):
    w.write(reply())


async def h2_ok(srv, s: H2Stream):
    s.send()


def sends(raw: bytes):
    async def respond(srv, method, path, w):
        w.write(raw)
    return respond


def h2_sends(status: int, headers: list[tuple[str, str]]):
    """HEADERS with END_STREAM: no DATA frame at all."""
    async def respond(srv, s: H2Stream):
        s.headers(status, headers, end=True)
    return respond


async def early_hints_then_200(srv, method, path, w):
    w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    await w.drain()
    await asyncio.sleep(0.1)  # protocol pacing: the 103 is read on its own before the 200
    w.write(reply())


async def h2_early_hints_then_200(srv, s: H2Stream):
    s.headers(103, [("link", "</style.css>; rel=preload")])
    await s.drain()
    await asyncio.sleep(0.1)  # protocol pacing: the 103 is read on its own before the 200
    s.send()


async def continue_then_200(srv, method, path, w):
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply())


async def h2_continue_then_200(srv, s: H2Stream):
    s.headers(100)
    s.send()


async def head_with_length(srv, method, path, w):
    # HEAD: Content-Length says what a GET would get, and no body follows
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")


async def chunked_with_trailers(srv, method, path, w):
    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
            b"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 42\r\n\r\n")


async def h2_body_then_trailers(srv, s: H2Stream):
    s.headers(200, [("trailer", "x-sum")])
    s.data(b"hello", end=False)
    s.data(b", world", end=False)
    s.trailers([("x-sum", "42")])  # a HEADERS frame after the DATA, with END_STREAM


def encoded(encoding: str, compress):
    body = compress(b"the needle is in here " * 20)

    async def respond(srv, method, path, w):
        w.write(reply(body=body, headers=f"Content-Encoding: {encoding}\r\n"))

    async def h2_respond(srv, s: H2Stream):
        s.send(body=body, headers=[("content-encoding", encoding)])
    return respond, h2_respond


async def close_without_response(srv, method, path, w):
    return False


async def h2_close_without_response(srv, s: H2Stream):
    s.close()


async def reset_after_request(srv, method, path, w):
    abort_with_rst(w.transport)
    return False


async def h2_reset_connection(srv, s: H2Stream):
    s.abort()


async def h2_reset_stream(srv, s: H2Stream):
    s.reset()  # RST_STREAM (INTERNAL_ERROR): the connection stays and carries the next request


def big_header(size: int):
    async def respond(srv, method, path, w):
        w.write(reply(headers=f"X-Big: {'a' * size}\r\n"))

    async def h2_respond(srv, s: H2Stream):
        s.send(headers=[("x-big", "a" * size)])  # a HEADERS frame and CONTINUATIONs
    return respond, h2_respond


async def big_hints_then_big_header(srv, method, path, w):
    w.write(b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"a" * (40 << 10) + b">\r\n\r\n"
            + reply(headers=f"X-Big: {'b' * (40 << 10)}\r\n"))


async def h2_big_hints_then_big_header(srv, s: H2Stream):
    s.headers(103, [("link", "<" + "a" * (40 << 10) + ">")])
    s.send(headers=[("x-big", "b" * (40 << 10))])


async def close_every_second_response(srv, method, path, w):
    if len(srv.received) % 2:
        w.write(reply(headers="Connection: close\r\n"))
        await w.drain()
        return False
    w.write(reply())


async def h2_goaway_every_second_request(srv, s: H2Stream):
    # as nginx does at keepalive_requests: GOAWAY naming this stream the last one taken,
    # then its response, then the connection closes
    if len(srv.received) % 2:
        s.goaway()
        s.send()
        await s.drain()
        s.close()
    else:
        s.send()


async def h2_goaway_above_the_first_stream(srv, s: H2Stream):
    # the first stream of a connection waits (≤ 0.2 s) for the next one, then GOAWAY names
    # it the last taken: the later ones were never processed and must come again elsewhere
    if next(iter(s.conn.read)) == s.sid:
        if len(s.conn.read) == 1:
            s.conn.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(s.conn.arrived.wait(), 0.2)
        s.goaway()
        s.send()
        await s.drain()
        s.close()
    # (any later stream is above the GOAWAY's last: the server ignores it)


def h2_refuse_every_second_stream():
    seen = itertools.count()

    async def respond(srv, s: H2Stream):
        if next(seen) % 2:
            s.refuse()  # RST_STREAM REFUSED_STREAM: not processed, safe to send again
        else:
            s.send()
    return respond


async def redirect_once(srv, method, path, w):
    if path == "/x":
        w.write(reply("302 Found", b"", "Location: /landed\r\n"))
    else:
        w.write(reply(body=b"landed"))


async def h2_redirect_once(srv, s: H2Stream):
    if s.path == "/x":
        s.send(302, b"", [("location", "/landed")])
    else:
        s.send(body=b"landed")


def br(data: bytes) -> bytes:
    brotli = pytest.importorskip("brotli")
    return brotli.compress(data)


# static-tls: the fast engine over https; h2c: HTTP/2 over TCP by prior knowledge (http2: h2c)
# a server that drops the connection unannounced: with two requests in flight on it (two
# HTTP/2 streams multiplexed, as under load) the second may be lost unread; the client
# cannot know it was not processed (RFC 9113 8.7), so it is a reset too, never resent,
# and the server counts fewer than the report. One request in flight at a time keeps the
# server's count exactly the report's on every path.
ONE_AT_A_TIME = {"connections": 1}
# closed: the plan's closed model (users: 1) on the fast path, a user on one keep-alive
# connection for CLOSED_S: it sends as many requests as it can, each case's outcome is then
# per request (ok or its error kind for every one), and the server's count is the report's
PATHS = ("static", "static-tls", "closed", "flow", "tls", "h2", "h2c")
CLOSED_S = 0.3
H2_PATHS = ("h2", "h2c")
NO_101_IN_H2 = ("HTTP/2 has no 101 Switching Protocols: RFC 9113 8.6 removes the Upgrade mechanism "
                "from HTTP/2 (a 101 on a stream is a malformed response, and h2 will not send one)")
FAST_ENGINE_NO_REDIRECTS = ("the fast path follows no redirects: a plan with follow_redirects "
                            "runs virtual users")
ONLY_H2 = "a stream reset (RST_STREAM) exists only in HTTP/2; HTTP/1.1's reset is the TCP RST case"
ONLY_H2_GOAWAY = ("requests in flight beside the last one a server takes exist only with HTTP/2's "
                  "streams; HTTP/1.1 sends one request at a time on a connection")
ONLY_H2_REFUSED = "REFUSED_STREAM exists only in HTTP/2"


@dataclass
class Case:
    name: str
    respond: object  # HTTP/1.1: respond(server, method, path, writer)
    h2: object  # HTTP/2: respond(server, stream), or why the case does not apply to HTTP/2
    ok: int = ARRIVALS  # responses counted as successes
    errors: dict[str, int] = field(default_factory=dict)
    server: int = ARRIVALS  # requests the server must have received
    refused: int = 0  # requests the (HTTP/2) server must have refused, at least
    method: str = "GET"
    checks: dict | None = None
    plan: dict = field(default_factory=dict)
    min_latency_s: float = 0.0
    skip: dict[str, str] = field(default_factory=dict)  # path → why the case does not apply
    host: str = "127.0.0.1"  # where the server listens
    target_host: str = "127.0.0.1"  # what the plan says

    def __post_init__(self) -> None:
        if isinstance(self.h2, str):
            self.skip = {**self.skip, "h2": self.h2, "h2c": self.h2}

    def request(self) -> dict:
        """The plan's one request for this case."""
        req = {"name": "r", "method": self.method, "path": "/x"}
        if self.method in ("POST", "PUT"):
            req["json"] = {"a": 1}
        if self.checks:
            req["checks"] = self.checks
        return req


GZIP, DEFLATE, BR = encoded("gzip", gzip.compress), encoded("deflate", zlib.compress), encoded("br", br)
BIG_12K, BIG_60K, BIG_70K = big_header(12 << 10), big_header(60 << 10), big_header(70 << 10)

CASES = [
    Case("plain 200", ok, h2_ok),
    Case("103 early hints skipped", early_hints_then_200, h2_early_hints_then_200, min_latency_s=0.1),
    Case("100 continue skipped", continue_then_200, h2_continue_then_200),
    Case("101 unasked is an error", sends(b"HTTP/1.1 101 Switching Protocols\r\n"
                                          b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
         NO_101_IN_H2, ok=0, errors={"other": ARRIVALS}),
    Case("HEAD has no body whatever Content-Length says", head_with_length,
         h2_sends(200, [("content-length", "1000")]), method="HEAD"),
    Case("204 has no body", sends(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
         h2_sends(204, [("content-length", "5")])),
    Case("304 has no body", sends(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
         h2_sends(304, [("content-length", "7")])),
    Case("chunked with trailers", chunked_with_trailers, h2_body_then_trailers,
         checks={"body_contains": "hello, world"}),
    Case("gzip decoded for checks", *GZIP, checks={"body_contains": "needle"}),
    Case("deflate decoded for checks", *DEFLATE, checks={"body_contains": "needle"}),
    Case("br decoded for checks", *BR, checks={"body_contains": "needle"}),
    Case("close without a response: one reset, never retried", close_without_response,
         h2_close_without_response, ok=0, errors={"reset": ARRIVALS}, plan=ONE_AT_A_TIME),
    Case("close without a response (POST)", close_without_response, h2_close_without_response,
         method="POST", ok=0, errors={"reset": ARRIVALS}, plan=ONE_AT_A_TIME),
    Case("close without a response (DELETE)", close_without_response, h2_close_without_response,
         method="DELETE", ok=0, errors={"reset": ARRIVALS}, plan=ONE_AT_A_TIME),
    Case("reset after the request", reset_after_request, h2_reset_connection,
         ok=0, errors={"reset": ARRIVALS}, plan=ONE_AT_A_TIME),
    Case("stream reset after the request: one reset, never retried", None, h2_reset_stream,
         ok=0, errors={"reset": ARRIVALS}, skip={p: ONLY_H2 for p in PATHS if p not in H2_PATHS}),
    Case("12 KB header accepted", *BIG_12K),
    Case("60 KB header accepted", *BIG_60K),
    Case("70 KB header too large", *BIG_70K, ok=0, errors={"too_large": ARRIVALS}),
    Case("a 40 KB 103 then a 40 KB head: each head within 64 KB, accepted",
         big_hints_then_big_header, h2_big_hints_then_big_header),
    Case("Connection: close mid-run (HTTP/2: GOAWAY)", close_every_second_response,
         h2_goaway_every_second_request),
    Case("GOAWAY: streams above its last are sent again, on a new connection", None,
         h2_goaway_above_the_first_stream, refused=1, skip={p: ONLY_H2_GOAWAY for p in PATHS if p not in H2_PATHS}),
    Case("REFUSED_STREAM: sent again, never counted", None, h2_refuse_every_second_stream(),
         refused=ARRIVALS // 2, skip={p: ONLY_H2_REFUSED for p in PATHS if p not in H2_PATHS}),
    Case("redirect not followed by default", redirect_once, h2_redirect_once),
    Case("follow_redirects: 2 follows, each hop a request", redirect_once, h2_redirect_once,
         server=2 * ARRIVALS, plan={"follow_redirects": 2}, checks={"body_contains": "landed"},
         skip={"static": FAST_ENGINE_NO_REDIRECTS, "static-tls": FAST_ENGINE_NO_REDIRECTS,
               "closed": FAST_ENGINE_NO_REDIRECTS}),
    Case("localhost tries ::1 too", ok, h2_ok, host="::1", target_host="localhost"),
]


async def run_static(plan, srv: Server) -> Interval:
    engine = Engine(plan, asyncio.get_running_loop())
    engine.start(Schedule([Segment(0.0, ARRIVALS / RATE, RATE, RATE)], 1.0), time.monotonic())
    await until(lambda: not engine.pacing, 10, "the schedule's end")
    await engine.drain(3.0)
    return engine.take_interval()


async def run_closed(plan, srv: Server) -> Interval:
    engine = Engine(plan, asyncio.get_running_loop())  # users: the fast path's closed.ClosedLoop
    engine.start(Schedule([Segment(0.0, CLOSED_S, 0.0, 0.0)], 1.0), time.monotonic())
    await until(lambda: not engine.pacing, 10, "the run's end")
    await engine.drain(3.0)
    return engine.take_interval()


async def run_flow(plan, srv: Server) -> Interval:
    now = time.time()
    a = Assignment(run_id="conformance", epoch=1, share=1.0, start_at=now, end_at=now + 5,
                   profile=[Segment(0.0, ARRIVALS / RATE, RATE, RATE)], plan=plan)
    engine = Engine.of(a, asyncio.get_running_loop(), per_user=True)  # a virtual user per arrival
    engine.start(Schedule(a.profile, 1.0), time.monotonic())
    await until(lambda: engine.cur.completed() + sum(engine.cur.dropped) >= ARRIVALS, 10,
                "every arrival answered")
    await engine.drain(3.0)
    return engine.take_interval()


def outcome(iv: Interval) -> tuple[int, dict[str, int]]:
    errors: dict[str, int] = {}
    for errs in iv.errors:
        for kind, n in errs.items():
            errors[kind] = errors.get(kind, 0) + n
    done = iv.completed()
    return done - sum(errors.values()), errors


def params():
    for case in CASES:
        for path in PATHS:
            marks = [pytest.mark.skip(reason=case.skip[path])] if path in case.skip else []
            yield pytest.param(case, path, id=f"{path}: {case.name}", marks=marks)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    """The module's TLS servers' contexts: HTTP/1.1 (the flow path over https) and h2 by ALPN."""
    return {"tls": tls_server_context(tmp_path_factory.mktemp("tls")),
            "h2": tls_server_context(tmp_path_factory.mktemp("h2"), alpn=("h2",))}


def serve(case: Case, path: str, server_tls) -> RawServer:
    if path in H2_PATHS:
        return H2Server(case.h2, server_tls["h2"] if path == "h2" else None, case.host)
    return Server(case.respond, case.host, server_tls["tls"] if path in ("tls", "static-tls") else None)


@pytest.mark.parametrize("case,path", list(params()))
async def test_http_semantics(case: Case, path: str, server_tls):
    async with serve(case, path, server_tls) as srv:
        scheme, tls = {"tls": ("https", {"insecure": True, "http2": "off"}),
                       "static-tls": ("https", {"insecure": True, "http2": "off"}),
                       "h2": ("https", {"insecure": True, "http2": "auto"}),
                       "h2c": ("http", {"http2": "h2c"})}.get(path, ("http", {}))
        load = {"rate": None, "users": 1, "duration": CLOSED_S} if path == "closed" else {"rate": RATE}
        plan = plans.plan(plans.ENGINE, f"{scheme}://{case.target_host}:{srv.port}", name="conformance",
                          requests=[case.request()],
                          **{**load, "timeout": 5, "connections": ARRIVALS, **tls, **case.plan})
        run = run_closed if path == "closed" else run_static if path.startswith("static") else run_flow
        iv = await run(plan, srv)
    ok_count, errors = outcome(iv)
    n = iv.completed() if path == "closed" else ARRIVALS  # the closed loop's requests: as many as it made
    assert n >= 1 and iv.sent == n
    assert sum(iv.dropped) == 0
    assert (ok_count, errors) == (case.ok * n // ARRIVALS, {k: v * n // ARRIVALS for k, v in case.errors.items()}), \
        srv.received
    assert len(srv.received) == case.server * n // ARRIVALS, srv.received  # the server's count is the report's
    assert getattr(srv, "refused", 0) >= case.refused
    assert iv.completed() == n
    if case.min_latency_s:
        lat = [x for arr in iv.latency for x in arr]
        assert min(lat) >= case.min_latency_s


def test_every_case_names_its_expectation():
    # a case that expects nothing cannot fail: every case has a server count and outcomes
    for case in CASES:
        assert case.ok + sum(case.errors.values()) == ARRIVALS, case.name
        assert case.server >= ARRIVALS, case.name


# --- proxies and redirects on the engine's own pool ------------------------------------------


class ConnectProxy(RawServer):
    """An HTTP proxy on 127.0.0.1 that only tunnels (CONNECT host:port), counting tunnels."""

    def __init__(self) -> None:
        super().__init__(self._tunnel)
        self.tunnels: list[str] = []

    async def _tunnel(self, _, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, where, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            return
        self.tunnels.append(where)
        host, port = where.rsplit(":", 1)
        up_r, up_w = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(r, w) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)


#: the plan of the flow engine's own tests below (proxies, redirects)
FLOW = plans.raw(plans.ENGINE, name="p", rate=RATE, timeout=2, http2="off")


async def test_https_through_a_connect_proxy_tunnels_tls_to_the_target(tmp_path):
    async with Server(ok, ctx=tls_server_context(tmp_path / "tls")) as srv, ConnectProxy() as proxy:
        plan = plans.plan(FLOW, f"https://127.0.0.1:{srv.port}", proxy=proxy.url, insecure=True)
        iv = await run_flow(plan, srv)
    assert outcome(iv) == (ARRIVALS, {})
    assert len(srv.received) == ARRIVALS and set(srv.received) == {("GET", "/x")}
    assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{srv.port}"}
    assert len(proxy.tunnels) <= 2  # the tunnels are kept alive, not one per request


async def test_http2_through_a_connect_proxy_picks_h2_inside_the_tunnel(server_tls):
    async with H2Server(h2_ok, server_tls["h2"]) as srv, ConnectProxy() as proxy:
        plan = plans.plan(FLOW, srv.url, proxy=proxy.url, insecure=True, http2="auto")
        iv = await run_flow(plan, srv)
    assert outcome(iv) == (ARRIVALS, {})
    assert srv.received == [("GET", "/x")] * ARRIVALS  # the h2 server: only HTTP/2 reaches it
    # the ALPN probe's tunnel, then the pool's: its streams share one connection
    assert set(proxy.tunnels) == {f"127.0.0.1:{srv.port}"} and len(proxy.tunnels) <= 3, proxy.tunnels
    assert srv.connections == len(proxy.tunnels)


async def test_plain_http_through_a_proxy_uses_the_absolute_form():
    async with Server(ok) as proxy:  # nothing listens at the target: only the proxy answers
        plan = plans.plan(FLOW, "http://127.0.0.1:9", proxy=f"http://127.0.0.1:{proxy.port}")
        iv = await run_flow(plan, proxy)
    assert outcome(iv) == (ARRIVALS, {})
    assert set(proxy.received) == {("GET", "http://127.0.0.1:9/x")}


async def test_a_redirect_to_another_origin_is_followed_there():
    async with Server(ok) as there:
        async def away(srv, method, path, w):
            w.write(reply("307 Temporary Redirect", b"",
                          f"Location: http://127.0.0.1:{there.port}/landed\r\n"))

        async with Server(away) as here:
            iv = await run_flow(plans.plan(FLOW, f"http://127.0.0.1:{here.port}", follow_redirects=3), here)
    assert outcome(iv) == (ARRIVALS, {})
    assert len(here.received) == ARRIVALS and set(there.received) == {("GET", "/landed")}
    assert len(there.received) == ARRIVALS


async def test_more_redirects_than_allowed_is_an_error_after_n_hops():
    async def loop_forever(srv, method, path, w):
        w.write(reply("302 Found", b"", "Location: /again\r\n"))

    async with Server(loop_forever) as srv:
        iv = await run_flow(plans.plan(FLOW, f"http://127.0.0.1:{srv.port}", follow_redirects=2), srv)
    assert outcome(iv) == (0, {"other": ARRIVALS})
    assert len(srv.received) == 3 * ARRIVALS  # the request and 2 hops, each one the server saw
