"""HTTP/1.1 for flows on asyncio protocols: a keep-alive pool shared by virtual users.

The flow engine's HTTP/1.1 path without a general-purpose client library: requests are
encoded by hand, TLS is the stdlib's ``ssl`` through ``loop.create_connection(ssl=...)``,
and the connections are the fast engine's own protocol (``http.Connection``: a
``BufferedProtocol`` reading into the owner's one buffer, parsed by httptools), as
``http.FullConnection``, which also keeps each response's head bytes and body. The
pool is their owner (``http.Owner``), as the fast engine is of its connections, so both
have one HTTP semantics, written once (docs/engine.md, "One HTTP semantics"): 1xx
skipped, 101 an error, HEAD/204/304 without a body, heads up to 64 KB, a request sent
once and never retried; ``localhost`` on both loopbacks, every address of a name tried.

A virtual user's ``Client`` (``client.py``) adds its cookies (parsed by the stdlib's ``http.cookies``,
kept per user) and nothing else: a plan pays per request for one head encoding, one
parse and, only when the target sets cookies, the cookie header. The parser has no
``on_header`` callback (httptools then calls none: ~1-3 µs saved on a 5-header
response); the head's bytes are copied out of the read buffer once, and its fields
are read from them by ``Head`` (``head.py``) only when
something asks for them (``Set-Cookie``, ``Content-Encoding``, a redirect's ``Location``,
a header extractor), after a byte search that costs ~0.1 µs when they are absent.
A flow step's request arrives already encoded (``Client.send_encoded``: its constant
parts joined once per run, ``session.CompiledStep.encoder``). An HTTP ``proxy``
gets plain requests in absolute form and https through a CONNECT tunnel (TLS started
inside it with ``loop.start_tls``); ``follow_redirects: N`` follows hops in ``Client.send``,
another origin getting a pool of its own.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

from schemas.plan import Plan
from services.generator.client import Client
from services.generator.encode import BODY_METHODS, base_map, finish
from services.generator.head import Head
from services.generator.http import MAX_HEAD, READ_SIZE, Addresses, FullConnection

SWEEP_S = 0.05
_now = time.monotonic


class ResponseTooLarge(Exception):
    kind = "too_large"


class Reset(ConnectionError):
    kind = "reset"


class BadResponse(Exception):
    """A response the connection could not take (``http.Owner.on_broken``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _TunnelReply(asyncio.Protocol):
    """The proxy's answer to CONNECT: its head, then the connection is the tunnel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[bytes] = loop.create_future()
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end >= 0 and not self.head.done():
            self.head.set_result(self.buf[:end])
        elif len(self.buf) > MAX_HEAD and not self.head.done():
            self.head.set_exception(ResponseTooLarge("proxy's CONNECT answer beyond 64 KB"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(Reset("proxy closed the connection before answering CONNECT"))


class Pool:
    """Keep-alive HTTP/1.1 (over TLS for https) connections to the plan's target.

    The owner (``http.Owner``) of its connections, as the fast engine is of its own:
    ``http.FullConnection``, the fast engine's protocol keeping head bytes and body,
    all reading into the pool's one buffer. A request's outcome goes to its waiter.
    """

    protocol = "http/1.1"
    heads = (False, True)  # a request goes as name_i 1 when it is a HEAD (http.Owner)
    max_conns = 0  # no CheckedConnection here (http.Owner)

    def __init__(self, plan: Plan, ssl_context: ssl.SSLContext | None = None,
                 target: str | None = None) -> None:
        self.plan = plan
        target = (target or plan.target).rstrip("/")
        parts = urlsplit(target)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.base_url = target
        self.origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.ssl = ssl_context if self.https else None
        self._ssl_context = ssl_context
        # an HTTP proxy: plain requests go to it in absolute form, https through a CONNECT tunnel
        proxy = urlsplit(plan.proxy) if plan.proxy else None
        self.dial_host = (proxy.hostname or "127.0.0.1") if proxy else self.host
        self.dial_port = (proxy.port or 80) if proxy else self.port
        self.tunnel = proxy is not None and self.https
        self.absolute = proxy is not None and not self.https
        self.timeout = plan.timeout
        self.loop = asyncio.get_running_loop()
        self.idle: list[FullConnection] = []
        self.busy: set[FullConnection] = set()
        self.read_buffer = memoryview(bytearray(READ_SIZE))  # every connection's (http.Owner)
        self.others: dict[str, Pool] = {}  # redirects to other origins: a pool each, made once
        self.target_prefix = self.origin if self.absolute else ""  # a request line's target
        self.base_fields = base_map(self.host_header)  # every request's head starts so
        self.conn_factory = FullConnection
        self._addrs = Addresses(self.loop, self.dial_host, self.dial_port)
        self._sweeper = self.loop.create_task(self._sweep())

    def client(self) -> Client:
        return Client(self)

    def pool_for(self, origin: str) -> Pool:
        """The pool of another origin (a redirect went there)."""
        if origin == self.origin:
            return self
        pool = self.others.get(origin)
        if pool is None:
            ctx = self._ssl_context
            if origin.startswith("https:") and ctx is None:
                ctx = ssl.create_default_context()
            pool = self.others[origin] = Pool(self.plan, ctx, target=origin)
        return pool

    async def _dial(self) -> FullConnection:
        """A connection (through the proxy, when there is one) at the first address
        that takes one (``http.Addresses``, as the fast engine dials)."""
        async def dial(addr: str) -> FullConnection:
            if self.tunnel:
                return await self._through_tunnel(addr)
            _, conn = await self.loop.create_connection(
                lambda: self.conn_factory(self), addr, self.dial_port, ssl=None if self.absolute else self.ssl,
                server_hostname=self.host if self.ssl and not self.absolute else None)
            return conn

        return await self._addrs.connect(dial)

    async def _through_tunnel(self, addr: str) -> FullConnection:
        """https through an HTTP proxy: CONNECT, then TLS to the target inside the tunnel."""
        reply = _TunnelReply(self.loop)
        transport, _ = await self.loop.create_connection(lambda: reply, addr, self.dial_port)
        try:
            where = f"{self.host}:{self.port}"
            transport.write(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())
            head = await reply.head
            if head.split(b" ", 2)[1:2] != [b"200"]:
                raise ConnectionRefusedError(f"proxy answered CONNECT with {head[:60]!r}")
            conn = self.conn_factory(self)
            tls = await self.loop.start_tls(transport, conn, self.ssl, server_hostname=self.host)
        except BaseException:
            transport.abort()
            raise
        conn.connection_made(tls)
        return conn

    async def exchange(self, method: str, path: str, headers: list[tuple[str, str]],
                       data: bytes | None) -> tuple[int, list, bytes]:
        """One request on a free connection: encoded here as HTTP/1.1 bytes (``headers``
        are the whole head's, Host and User-Agent included: ``Client._send``)."""
        parts = [method, " ", path, " HTTP/1.1\r\n"]
        for k, v in headers:
            parts += (k, ": ", v, "\r\n")
        if data is None and method in BODY_METHODS:
            data = b""
        return await self.request(finish("".join(parts), data), method == "HEAD")

    async def request(self, data: bytes, head_only: bool) -> tuple[int, Head, bytes]:
        if not self.has_idle():
            self.idle.append(await asyncio.wait_for(self._dial(), self.timeout))
        fut = self.loop.create_future()
        self.start(data, head_only, fut)
        return await fut

    def has_idle(self) -> bool:
        """A kept-alive connection is free now (``start`` will not need to dial)."""
        idle = self.idle
        while idle and idle[-1].closed:
            idle.pop()
        return bool(idle)

    def start(self, data: bytes, head_only: bool, waiter) -> None:
        """Send on a free connection (``has_idle()`` said there is one); ``waiter``
        gets (status, ``Head``, body) or the failure, in the connection's stack, the
        connection free again by then: it may send the next request on it (an asyncio
        Future, or any waiter with done/set_result/set_exception: ``session._Chain``)."""
        conn = self.idle.pop()
        self.busy.add(conn)
        conn.waiter = waiter
        conn.reads = []
        conn.body = None
        conn.send(head_only, data, 0.0, _now())  # name_i: 1 for a HEAD (heads)

    def forget(self, conn) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    # --- events from connections (http.Owner) -------------------------------------------------
    def on_response(self, conn: FullConnection) -> None:
        conn.busy = False
        waiter, conn.waiter = conn.waiter, None
        body = conn.body
        result = (conn.status, Head(conn.reads), b"".join(body) if body else b"")
        if conn.keep_alive and not conn.closed:
            self.busy.discard(conn)  # free again: the waiter may send on it
            self.idle.append(conn)
        else:
            self._close(conn)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def on_broken(self, conn: FullConnection, kind: str) -> None:
        if kind == "too_large":
            self._fail(conn, ResponseTooLarge("response head beyond 64 KB"))
        elif conn.status == 101:
            self._fail(conn, BadResponse(kind, "101 Switching Protocols, never asked for"))
        else:
            self._fail(conn, BadResponse(kind, "not an HTTP/1.1 response, or one nobody asked for"))

    def on_lost(self, conn: FullConnection) -> None:
        self.forget(conn)
        if conn.busy:
            self._fail(conn, Reset("connection closed without a (whole) response"))

    def _fail(self, conn: FullConnection, exc: BaseException) -> None:
        conn.busy = False
        waiter, conn.waiter = conn.waiter, None
        self._close(conn)
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _close(self, conn: FullConnection) -> None:
        self.forget(conn)
        conn.close()

    async def _sweep(self) -> None:
        """The plan's timeout, for every request, by one sweep rather than a timer each."""
        while True:
            await asyncio.sleep(SWEEP_S)
            limit = _now() - self.timeout
            for conn in [c for c in self.busy if c.busy and c.sent < limit]:
                self._fail(conn, TimeoutError("no response within the plan's timeout"))

    async def close(self) -> None:
        for other in self.others.values():
            await other.close()
        self._sweeper.cancel()
        for conn in list(self.idle) + list(self.busy):
            conn.close()

    @staticmethod
    def classify(exc: BaseException) -> str:
        kind = getattr(exc, "kind", None)
        if kind is not None:
            return kind
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return "timeout"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return "reset"
        if isinstance(exc, OSError):  # refused, unreachable, resolver, TLS handshake
            return "connect"
        return "other"

