"""One HTTP semantics: every case on every path of the engine, against a real server.

Each case is a server on 127.0.0.1 written byte by byte (so the wire shape is exact)
that records every request it received; each case runs on the static engine
(``engine.py``) and on the flow engine (``flows.py``) and asserts both what the report
says and what the server got. The cases are the table in docs/engine.md, "One HTTP
semantics".
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import msgspec
import pytest

from schemas.control import Assignment, Segment
from services.generator.engine import Engine
from services.generator.flows import FlowEngine
from services.generator.pacing import Schedule
from services.generator.recorder import Interval
from tests import plans
from tests.conftest import until

pytestmark = pytest.mark.timeout(60)

ARRIVALS = 6  # per case and path: 6 arrivals at 30/s
RATE = 30.0


class Server:
    """A raw asyncio server; ``respond(server, method, path, writer)`` answers a request.

    ``received`` is every request head read (method, path), in order.
    """

    def __init__(self, respond, host: str = "127.0.0.1", ctx=None) -> None:
        self.respond = respond
        self.host = host
        self.ctx = ctx  # TLS
        self.received: list[tuple[str, str]] = []
        self.connections = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._conn, self.host, 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.received.append((method, path))
                if await self.respond(self, method, path, writer) is False:
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def reply(status: str = "200 OK", body: bytes = b"hello", headers: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


# --- the server behaviours ---------------------------------------------------------------


async def ok(srv, method, path, w):
    w.write(reply())


def sends(raw: bytes):
    async def respond(srv, method, path, w):
        w.write(raw)
    return respond


async def early_hints_then_200(srv, method, path, w):
    w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    await w.drain()
    await asyncio.sleep(0.1)
    w.write(reply())


async def continue_then_200(srv, method, path, w):
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply())


async def head_with_length(srv, method, path, w):
    # HEAD: Content-Length says what a GET would get, and no body follows
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")


async def chunked_with_trailers(srv, method, path, w):
    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
            b"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 42\r\n\r\n")


def encoded(encoding: str, compress):
    body = compress(b"the needle is in here " * 20)

    async def respond(srv, method, path, w):
        w.write(reply(body=body, headers=f"Content-Encoding: {encoding}\r\n"))
    return respond


async def close_without_response(srv, method, path, w):
    return False


async def reset_after_request(srv, method, path, w):
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()
    return False


def big_header(size: int):
    async def respond(srv, method, path, w):
        w.write(reply(headers=f"X-Big: {'a' * size}\r\n"))
    return respond


async def close_every_second_response(srv, method, path, w):
    if len(srv.received) % 2:
        w.write(reply(headers="Connection: close\r\n"))
        await w.drain()
        return False
    w.write(reply())


async def redirect_once(srv, method, path, w):
    if path == "/x":
        w.write(reply("302 Found", b"", "Location: /landed\r\n"))
    else:
        w.write(reply(body=b"landed"))


def br(data: bytes) -> bytes:
    brotli = pytest.importorskip("brotli")
    return brotli.compress(data)


@dataclass
class Case:
    name: str
    respond: object
    ok: int = ARRIVALS  # responses counted as successes
    errors: dict[str, int] = field(default_factory=dict)
    server: int = ARRIVALS  # requests the server must have received
    method: str = "GET"
    checks: dict | None = None
    plan: dict = field(default_factory=dict)
    min_latency_s: float = 0.0
    paths: tuple[str, ...] = ("static", "flow", "tls")
    host: str = "127.0.0.1"  # where the server listens
    target_host: str = "127.0.0.1"  # what the plan says

    def request(self) -> dict:
        """The plan's one request for this case."""
        req = {"name": "r", "method": self.method, "path": "/x"}
        if self.method in ("POST", "PUT"):
            req["json"] = {"a": 1}
        if self.checks:
            req["checks"] = self.checks
        return req


CASES = [
    Case("plain 200", ok),
    Case("103 early hints skipped", early_hints_then_200, min_latency_s=0.1),
    Case("100 continue skipped", continue_then_200),
    Case("101 unasked is an error", sends(b"HTTP/1.1 101 Switching Protocols\r\n"
                                          b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
         ok=0, errors={"other": ARRIVALS}),
    Case("HEAD has no body whatever Content-Length says", head_with_length, method="HEAD"),
    Case("204 has no body", sends(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")),
    Case("304 has no body", sends(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n")),
    Case("chunked with trailers", chunked_with_trailers, checks={"body_contains": "hello, world"}),
    Case("gzip decoded for checks", encoded("gzip", gzip.compress), checks={"body_contains": "needle"}),
    Case("deflate decoded for checks", encoded("deflate", zlib.compress),
         checks={"body_contains": "needle"}),
    Case("br decoded for checks", encoded("br", br), checks={"body_contains": "needle"}),
    Case("close without a response: one reset, never retried", close_without_response,
         ok=0, errors={"reset": ARRIVALS}),
    Case("close without a response (POST)", close_without_response, method="POST",
         ok=0, errors={"reset": ARRIVALS}),
    Case("close without a response (DELETE)", close_without_response, method="DELETE",
         ok=0, errors={"reset": ARRIVALS}),
    Case("reset after the request", reset_after_request, ok=0, errors={"reset": ARRIVALS}),
    Case("12 KB header accepted", big_header(12 << 10)),
    Case("60 KB header accepted", big_header(60 << 10)),
    Case("70 KB header too large", big_header(70 << 10), ok=0, errors={"too_large": ARRIVALS}),
    Case("Connection: close mid-run", close_every_second_response),
    Case("redirect not followed by default", redirect_once),
    Case("follow_redirects: 2 follows, each hop a request", redirect_once,
         server=2 * ARRIVALS, plan={"follow_redirects": 2}, checks={"body_contains": "landed"},
         paths=("flow", "tls")),
    Case("localhost tries ::1 too", ok, host="::1", target_host="localhost"),
]


async def run_static(plan, srv: Server) -> Interval:
    engine = Engine(plan, asyncio.get_running_loop())
    engine.start(Schedule([Segment(0.0, ARRIVALS / RATE, RATE, RATE)], 1.0), time.monotonic())
    await until(lambda: not engine.pacing, 10, "the schedule's end")
    await engine.drain(3.0)
    return engine.take_interval()


async def run_flow(plan, srv: Server) -> Interval:
    now = time.time()
    a = Assignment(run_id="conformance", epoch=1, share=1.0, start_at=now, end_at=now + 5,
                   profile=[Segment(0.0, ARRIVALS / RATE, RATE, RATE)], plan=plan)
    engine = FlowEngine(a, asyncio.get_running_loop())
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


PARAMS = [pytest.param(case, path, id=f"{path}: {case.name}")
          for case in CASES for path in ("static", "flow", "tls") if path in case.paths]


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    """One certificate for the module's TLS servers (the flow path over https)."""
    import ssl

    from services.cli.secure import make_certificates

    files = make_certificates(tmp_path_factory.mktemp("tls"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


@pytest.mark.parametrize("case,path", PARAMS)
async def test_http_semantics(case: Case, path: str, server_tls):
    async with Server(case.respond, case.host, server_tls if path == "tls" else None) as srv:
        scheme, tls = ("https", {"insecure": True, "http2": "off"}) if path == "tls" else ("http", {})
        plan = plans.plan(plans.ENGINE, f"{scheme}://{case.target_host}:{srv.port}", name="conformance",
                          rate=RATE, timeout=2, requests=[case.request()], **{**tls, **case.plan})
        iv = await (run_static if path == "static" else run_flow)(plan, srv)
    ok_count, errors = outcome(iv)
    assert sum(iv.dropped) == 0
    assert (ok_count, errors) == (case.ok, case.errors), srv.received
    assert len(srv.received) == case.server, srv.received  # the server's count is the report's
    assert iv.completed() == ARRIVALS
    if case.min_latency_s:
        lat = [x for arr in iv.latency for x in arr]
        assert min(lat) >= case.min_latency_s


def test_every_case_names_its_expectation():
    # a case that expects nothing cannot fail: every case has a server count and outcomes
    for case in CASES:
        assert case.ok + sum(case.errors.values()) == ARRIVALS, case.name
        assert case.server >= ARRIVALS, case.name


# --- proxies and redirects on the engine's own pool ------------------------------------------


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that only tunnels (CONNECT host:port), counting tunnels."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []

    async def __aenter__(self) -> ConnectProxy:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _conn(self, reader, writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, where, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            assert method == "CONNECT", method
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
        except (ConnectionError, asyncio.IncompleteReadError, AssertionError):
            writer.close()


def tls_context(tmp_path):
    import ssl

    from services.cli.secure import make_certificates

    files = make_certificates(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


class TlsServer(Server):
    def __init__(self, respond, ctx) -> None:
        super().__init__(respond)
        self.ctx = ctx

    async def __aenter__(self) -> TlsServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


#: the plan of the flow engine's own tests below (proxies, redirects)
FLOW = plans.raw(plans.ENGINE, name="p", rate=RATE, timeout=2, http2="off")


async def test_https_through_a_connect_proxy_tunnels_tls_to_the_target(tmp_path):
    async with TlsServer(ok, tls_context(tmp_path)) as srv, ConnectProxy() as proxy:
        plan = plans.plan(FLOW, f"https://127.0.0.1:{srv.port}", proxy=proxy.url, insecure=True)
        iv = await run_flow(plan, srv)
    assert outcome(iv) == (ARRIVALS, {})
    assert len(srv.received) == ARRIVALS and set(srv.received) == {("GET", "/x")}
    assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{srv.port}"}
    assert len(proxy.tunnels) <= 2  # the tunnels are kept alive, not one per request


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
