"""HTTP/1.1 for flows on asyncio protocols: a keep-alive pool shared by virtual users.

The flow engine's HTTP/1.1 path without a general-purpose client library: requests are
encoded by hand, responses parsed by httptools (llhttp) in an ``asyncio.Protocol``, TLS
is the stdlib's ``ssl`` through ``loop.create_connection(ssl=...)``. It keeps the HTTP
semantics of the fast engine (``http.py``; docs/engine.md, "One HTTP semantics"): 1xx
skipped, 101 an error, HEAD/204/304 without a body, heads up to 64 KB, a request sent
once and never retried, ``localhost`` on both loopbacks, every address of a name tried.

A virtual user's ``Client`` adds its cookies (parsed by the stdlib's ``http.cookies``,
kept per user) and nothing else: a plan pays per request for one head encoding, one
parse and, only when the target sets cookies, the cookie header. Proxies and
``follow_redirects`` still go through aiohttp (``transport.Http1``).
"""

from __future__ import annotations

import asyncio
import http.cookies
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools
import multidict

from schemas.plan import Plan
from services.common.identity import USER_AGENT
from services.generator.http import MAX_HEAD, decode_body, resolve

# what flows sent through aiohttp, and what k6 and Locust send: compressed bodies are
# decoded for checks and extraction (docs/engine.md); a step's own header wins
DEFAULTS = (("accept", "Accept: */*\r\n"), ("accept-encoding", "Accept-Encoding: gzip, deflate, br\r\n"))
DEFAULT_LINES = [line for _, line in DEFAULTS]
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
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
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
            if not self.head_done and self.fut is not None:  # a head still unfinished: bound it
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

    # --- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

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
            self._reset()
            return
        if self.fut is None:
            self._fail(Reset("a response nobody asked for"))
            return
        self._complete()

    # --- the pool's side ---------------------------------------------------------------------
    def send(self, data: bytes, head_only: bool, fut: asyncio.Future) -> None:
        self._reset()
        self.fut, self.head_only, self.sent = fut, head_only, _now()
        self.transport.write(data)  # type: ignore[union-attr]

    def _complete(self) -> None:
        fut, self.fut = self.fut, None
        keep = self.keep and not self.closed
        if fut is not None and not fut.done():
            fut.set_result((self.status, self.headers, b"".join(self.body)))
        if keep:
            self.pool.release(self)
        else:
            self.close()

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


class _HeadDone(Exception):
    """Stops the parser after a HEAD response's head: its body never comes."""


class Pool:
    """Keep-alive HTTP/1.1 (over TLS for https) connections to the plan's target."""

    protocol = "http/1.1"

    def __init__(self, plan: Plan, ssl_context: ssl.SSLContext | None = None) -> None:
        self.plan = plan
        parts = urlsplit(plan.target)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.base_url = plan.target.rstrip("/")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.ssl = ssl_context if self.https else None
        self.timeout = plan.timeout
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self._addrs: asyncio.Task | None = None
        self._sweeper = self.loop.create_task(self._sweep())

    def client(self) -> Client:
        return Client(self)

    async def _dial(self) -> _Conn:
        if self._addrs is None:
            self._addrs = self.loop.create_task(resolve(self.loop, self.host, self.port))
        try:
            addrs = await asyncio.shield(self._addrs)
        except OSError:
            self._addrs = None
            raise
        error: OSError | None = None
        for addr in list(addrs):
            try:
                _, conn = await self.loop.create_connection(
                    lambda: _Conn(self), addr, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None)
                return conn
            except OSError as exc:
                error = exc
        raise error or OSError(f"no address for {self.host}")

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


class Client:
    """One virtual user: its cookies over the shared pool."""

    __slots__ = ("pool", "jar", "prefix")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.jar: dict[str, str] = {}
        self.prefix = (f"Host: {pool.host_header}\r\nUser-Agent: {USER_AGENT}\r\n")

    async def send(self, method: str, url: str, headers: dict[str, str], data: bytes | None,
                   redirects: int = 0) -> tuple[int, Mapping[str, str], bytes]:
        pool = self.pool
        path = url[len(pool.base_url):] if url.startswith(pool.base_url) else url
        parts = [method, " ", path or "/", " HTTP/1.1\r\n", self.prefix]
        if headers:
            names = set()
            for k, v in headers.items():
                parts += (k, ": ", v, "\r\n")
                names.add(k.lower())
            parts += [line for name, line in DEFAULTS if name not in names]
        else:
            parts += DEFAULT_LINES
        if self.jar:
            parts += ("Cookie: ", "; ".join(f"{k}={v}" for k, v in self.jar.items()), "\r\n")
        if data is not None or method in ("POST", "PUT", "PATCH"):
            parts += ("Content-Length: ", str(len(data or b"")), "\r\n")
        parts.append("\r\n")
        raw = "".join(parts).encode("latin-1")
        if data:
            raw += data
        status, header_list, body = await pool.request(raw, method == "HEAD")
        resp_headers = multidict.CIMultiDict(header_list)
        for value in resp_headers.getall("Set-Cookie", ()):
            self._take_cookie(value)
        encoding = resp_headers.get("Content-Encoding")
        if encoding and body:
            body = decode_body(body, encoding.strip().lower().encode())
        return status, resp_headers, body

    def _take_cookie(self, value: str) -> None:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(value)
        except http.cookies.CookieError:
            return
        for name, morsel in jar.items():
            max_age = morsel["max-age"]
            if morsel.value == "" or (max_age and max_age.lstrip("-").isdigit() and int(max_age) <= 0):
                self.jar.pop(name, None)  # deleted by the target
            else:
                self.jar[name] = morsel.value

    def cookies(self) -> dict[str, str]:
        return dict(self.jar)

    def set_cookies(self, cookies: dict[str, str], base_url: str) -> None:
        self.jar.update(cookies)

    def clear_cookies(self) -> None:
        self.jar.clear()

    async def close(self) -> None:
        pass  # the pool's connections are shared
