"""HTTP/1.1 for flows on asyncio protocols: a keep-alive pool shared by virtual users.

The flow engine's HTTP/1.1 path without a general-purpose client library: requests are
encoded by hand, responses parsed by httptools (llhttp) in an ``asyncio.Protocol``, TLS
is the stdlib's ``ssl`` through ``loop.create_connection(ssl=...)``. It keeps the HTTP
semantics of the fast engine (``http.py``; docs/engine.md, "One HTTP semantics"): 1xx
skipped, 101 an error, HEAD/204/304 without a body, heads up to 64 KB, a request sent
once and never retried, ``localhost`` on both loopbacks, every address of a name tried.

A virtual user's ``Client`` (``client.py``) adds its cookies (parsed by the stdlib's ``http.cookies``,
kept per user) and nothing else: a plan pays per request for one head encoding, one
parse and, only when the target sets cookies, the cookie header. The parser has no
``on_header`` callback (httptools then calls none: ~1-3 µs saved on a 5-header
response); a response's header fields are read from its raw head by ``Head`` (``head.py``) only when
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

import httptools

from schemas.plan import Plan
from services.generator.client import Client
from services.generator.head import Head
from services.generator.http import MAX_HEAD, base_map, resolve

SWEEP_S = 0.05
_now = time.monotonic


class ResponseTooLarge(Exception):
    kind = "too_large"


class UnexpectedUpgrade(Exception):
    kind = "other"


class Reset(ConnectionError):
    kind = "reset"


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fut: asyncio.Future | None = None
        self.head_only = False
        self.sent = 0.0
        self.seq = 0  # requests sent on this connection
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.chunks: list[bytes] = []  # the reads up to the end of the head (Head)
        self.body: list[bytes] = []
        self.head_len = 0
        self.head_done = False
        self.interim = False
        self.keep = True
        self.last = b""

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last = data
        seq = self.seq
        if not self.head_done and self.fut is not None:
            self.chunks.append(data)  # bounded: MAX_HEAD below
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UnexpectedUpgrade("101 Switching Protocols, never asked for"))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadDone):
                self.parser = httptools.HttpResponseParser(self)
                self._complete()
            else:
                self._fail(cause if isinstance(cause, Exception) else exc)
        except httptools.HttpParserError as exc:
            self._fail(exc)
        else:
            # a head still unfinished: bound it (unless the response completed and its
            # waiter sent the next request on this connection meanwhile: seq moved)
            if not self.head_done and self.fut is not None and self.seq == seq:
                self.head_len += len(data)
                if self.head_len > MAX_HEAD:
                    self._fail(ResponseTooLarge("response head beyond 64 KB"))

    def eof_received(self) -> bool:
        if self.fut is not None and self.head_done and not self.keep:
            self._complete()  # a body delimited by the end of the connection
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.fut is not None:
            self._fail(Reset("connection closed without a (whole) response"))

    # --- httptools callbacks (no on_header: see Head) ---------------------------------------
    def on_headers_complete(self) -> None:
        last = self.last
        if self.head_len + len(last) > MAX_HEAD:  # a big read: measure the head exactly
            end = last.find(b"\r\n\r\n")
            if self.head_len + (end + 4 if end >= 0 else len(last)) > MAX_HEAD:
                raise ResponseTooLarge("response head beyond 64 KB")
        self.status = self.parser.get_status_code()
        self.keep = self.parser.should_keep_alive()
        if self.status < 200:
            self.interim = True
            return
        self.head_done = True
        if self.head_only:
            raise _HeadDone()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.interim:  # 100 Continue, 103 Early Hints: the real response follows
            self.interim = False  # its head stays in chunks; Head skips it
            self.body = []
            return
        if self.fut is None:
            self._fail(Reset("a response nobody asked for"))
            return
        self._complete()

    # --- the pool's side ---------------------------------------------------------------------
    def send(self, data: bytes, head_only: bool, fut) -> None:
        """``fut``: an asyncio Future, or any waiter with done/set_result/set_exception
        (session's step chain, called in this stack: it may send the next request on
        this very connection, which is idle again by then)."""
        self._reset()
        self.seq += 1
        self.fut, self.head_only, self.sent = fut, head_only, _now()
        self.transport.write(data)  # type: ignore[union-attr]

    def _complete(self) -> None:
        fut, self.fut = self.fut, None
        if self.keep and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if fut is not None and not fut.done():
            fut.set_result((self.status, Head(self.chunks), b"".join(self.body)))

    def _fail(self, exc: BaseException) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.pool.forget(self)
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


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


class _HeadDone(Exception):
    """Stops the parser after a HEAD response's head: its body never comes."""


class Pool:
    """Keep-alive HTTP/1.1 (over TLS for https) connections to the plan's target."""

    protocol = "http/1.1"

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
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.others: dict[str, Pool] = {}  # redirects to other origins: a pool each, made once
        self.target_prefix = self.origin if self.absolute else ""  # a request line's target
        self.base_fields = base_map(self.host_header)  # every request's head starts so
        self.conn_factory = _Conn
        self._addrs: asyncio.Task | None = None
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

    async def _dial(self) -> _Conn:
        if self._addrs is None:
            self._addrs = self.loop.create_task(resolve(self.loop, self.dial_host, self.dial_port))
        try:
            addrs = await asyncio.shield(self._addrs)
        except OSError:
            self._addrs = None
            raise
        error: OSError | None = None
        for addr in list(addrs):
            try:
                if self.tunnel:
                    return await self._through_tunnel(addr)
                _, conn = await self.loop.create_connection(
                    lambda: self.conn_factory(self), addr, self.dial_port, ssl=None if self.absolute else self.ssl,
                    server_hostname=self.host if self.ssl and not self.absolute else None)
                return conn
            except OSError as exc:
                error = exc
        raise error or OSError(f"no address for {self.dial_host}")

    async def _through_tunnel(self, addr: str) -> _Conn:
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
        if data is not None or method in ("POST", "PUT", "PATCH"):
            parts += ("Content-Length: ", str(len(data or b"")), "\r\n")
        parts.append("\r\n")
        raw = "".join(parts).encode("latin-1")
        if data:
            raw += data
        return await self.request(raw, method == "HEAD")

    async def request(self, data: bytes, head_only: bool) -> tuple[int, list, bytes]:
        idle = self.idle
        conn = None
        while idle:
            conn = idle.pop()
            if not conn.closed:
                break
            conn = None
        if conn is None:
            conn = await asyncio.wait_for(self._dial(), self.timeout)
        fut = self.loop.create_future()
        self.busy.add(conn)
        conn.send(data, head_only, fut)
        return await fut

    def has_idle(self) -> bool:
        """A kept-alive connection is free now (``start`` will not need to dial)."""
        idle = self.idle
        while idle and idle[-1].closed:
            idle.pop()
        return bool(idle)

    def start(self, data: bytes, head_only: bool, waiter) -> None:
        """Send on a free connection (``has_idle()`` said there is one); ``waiter``
        gets the response or the failure (``_Conn.send``)."""
        conn = self.idle.pop()
        self.busy.add(conn)
        conn.send(data, head_only, waiter)

    def release(self, conn: _Conn) -> None:
        self.busy.discard(conn)
        self.idle.append(conn)

    def forget(self, conn: _Conn) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    async def _sweep(self) -> None:
        """The plan's timeout, for every request, by one sweep rather than a timer each."""
        while True:
            await asyncio.sleep(SWEEP_S)
            limit = _now() - self.timeout
            for conn in [c for c in self.busy if c.fut is not None and c.sent < limit]:
                conn._fail(TimeoutError("no response within the plan's timeout"))

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

