"""The flow engine's HTTP transports, and the choice between HTTP/1.1 and HTTP/2.

Two transports with one small surface, so ``session.py`` runs a step the same way
over either:

* ``pool.Pool`` — HTTP/1.1 on the engine's own asyncio protocols (httptools, stdlib
  ``ssl``, proxies, redirects): keep-alive connections shared by the generator's
  virtual users, a cookie jar per user. What every ``http://`` target and every
  HTTP/1.1-only ``https://`` target gets. (aiohttp did this before; it is off the
  load path now.)
* ``Http2`` — httpx with ``h2``: one ``AsyncHTTPTransport`` (its connection pool
  multiplexes the users' requests as HTTP/2 streams) shared by the users, an
  ``AsyncClient`` (its own cookie jar) per user.

``choose()`` decides once per run, before the first request (docs/scenarios.md):
``http2: auto`` with an ``https://`` target opens one TLS connection offering
``h2, http/1.1`` by ALPN (through the plan's proxy with CONNECT, when there is one)
and takes HTTP/2 only when the target picks ``h2``. A probe that fails (target down,
certificate refused) leaves the run on HTTP/1.1, whose requests then fail — and are
counted — exactly as they did before HTTP/2 existed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import structlog

from schemas.plan import Plan
from services.common.identity import USER_AGENT
from services.generator.pool import Pool

log = structlog.get_logger(__name__)

H2, HTTP11 = "h2", "http/1.1"


def ssl_context(plan: Plan) -> ssl.SSLContext:
    """The TLS settings of a plan: certificate checks, or none with ``insecure``."""
    ctx = ssl.create_default_context()
    if plan.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "", u.port or default_port


async def alpn(plan: Plan, timeout_s: float) -> str | None:
    """The protocol the target picks by ALPN from ``h2, http/1.1`` (None: no choice made)."""
    host, port = _host_port(plan.target, 443)
    ctx = ssl_context(plan)
    ctx.set_alpn_protocols([H2, HTTP11])
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            if plan.proxy:
                phost, pport = _host_port(plan.proxy, 80)
                reader, writer = await asyncio.open_connection(phost, pport)
                writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if head.split(b" ", 2)[1:2] != [b"200"]:
                    raise ConnectionError(f"proxy answered CONNECT with {head[:40]!r}")
                await writer.start_tls(ctx, server_hostname=host)
            else:
                _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
            obj = writer.get_extra_info("ssl_object")
            return obj.selected_alpn_protocol() if obj is not None else None
    finally:
        if writer is not None:
            writer.close()


def http1(plan: Plan) -> Pool:
    """HTTP/1.1: the engine's own pool (``pool.py``, asyncio protocols), proxies and
    redirects included."""
    return Pool(plan, ssl_context(plan) if plan.target.startswith("https:") else None)


async def choose(plan: Plan) -> Pool | Http2:
    """The transport for this run: HTTP/2 when allowed, over TLS, and the target offers it."""
    if plan.http2 == "off" or not plan.target.startswith("https:"):
        return http1(plan)
    try:
        picked = await alpn(plan, plan.timeout)
    except Exception as exc:  # an outcome, not a crash: the run's requests will tell
        log.warning("ALPN probe failed; using HTTP/1.1", target=plan.target, error=repr(exc))
        return http1(plan)
    if picked == H2:
        return Http2(plan)
    return http1(plan)


class Http2:
    """httpx + h2: one connection pool (HTTP/2 streams) shared by every virtual user."""

    protocol = H2

    def __init__(self, plan: Plan) -> None:
        import httpx  # only runs that speak HTTP/2 pay for importing it

        self.plan = plan
        self.httpx = httpx
        self.pool = httpx.AsyncHTTPTransport(
            http2=True, verify=ssl_context(plan), proxy=plan.proxy,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None,
                                keepalive_expiry=30),
        )
        self.host = urlsplit(plan.target).hostname or ""

    def client(self) -> Http2Client:
        return Http2Client(self)

    async def close(self) -> None:
        await self.pool.aclose()

    def classify(self, exc: BaseException) -> str:
        """An httpx failure as one of Surge's error kinds."""
        h = self.httpx
        if isinstance(exc, (h.TimeoutException, asyncio.TimeoutError)):
            return "timeout"
        if isinstance(exc, (h.ConnectError, h.ProxyError)):
            return "connect"
        if isinstance(exc, (h.RemoteProtocolError, h.ReadError, h.WriteError, ConnectionResetError)):
            return "reset"
        return "other"


class Http2Client:
    """One virtual user's httpx client: its cookie jar over the shared HTTP/2 pool."""

    __slots__ = ("client", "host")

    def __init__(self, t: Http2) -> None:
        # Not the client's own transport: closing a user must not close the shared pool.
        self.client = t.httpx.AsyncClient(
            transport=t.pool, timeout=t.plan.timeout,
            headers={"User-Agent": USER_AGENT},
        )
        self.host = t.host

    async def send(self, method: str, url: str, headers: dict[str, str],
                   data: bytes | None, redirects: int = 0) -> tuple[int, Mapping[str, str], bytes]:
        self.client.max_redirects = max(redirects, 1)
        resp = await self.client.request(method, url, headers=headers, content=data,
                                         follow_redirects=redirects > 0)
        return resp.status_code, resp.headers, resp.content

    def cookies(self) -> dict[str, str]:
        return {c.name: c.value for c in self.client.cookies.jar}

    def set_cookies(self, cookies: dict[str, str], base_url: str) -> None:
        for k, v in cookies.items():
            self.client.cookies.set(k, v, domain=self.host)

    def clear_cookies(self) -> None:
        self.client.cookies.clear()

    async def close(self) -> None:
        pass  # the pool is the transport's; the client holds nothing else
