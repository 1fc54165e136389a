"""Virtual users' HTTP transports (``flows.Users``), and the choice between HTTP/1.1 and HTTP/2.

Two transports with one small surface, so ``session.py`` runs a step the same way
over either:

* ``pool.Pool`` — HTTP/1.1 on the engine's own asyncio protocols (httptools, stdlib
  ``ssl``, proxies, redirects): keep-alive connections shared by the generator's
  virtual users, a cookie jar per user. What every ``http://`` target and every
  HTTP/1.1-only ``https://`` target gets. (aiohttp did this before; it is off the
  load path now.)
* ``h2pool.H2Pool`` — HTTP/2 on the same asyncio protocols with the sans-I/O ``h2``
  library: the users' requests multiplexed as streams on shared connections, the same
  per-user ``Client`` (cookies, redirects). (httpx did this before; it is off the load
  path now.)

``choose()`` decides once per run, before the first request (docs/scenarios.md):
``http2: auto`` with an ``https://`` target opens one TLS connection offering
``h2, http/1.1`` by ALPN (through the plan's proxy with CONNECT, when there is one)
and takes HTTP/2 only when the target picks ``h2``. A probe that fails (target down,
certificate refused) leaves the run on HTTP/1.1, whose requests then fail — and are
counted — exactly as they did before HTTP/2 existed. ``http2: h2c`` (an ``http://``
target) needs no probe: HTTP/2 by prior knowledge, the connection preface straight
over TCP, as ``curl --http2-prior-knowledge`` and h2load do.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import structlog

from schemas.plan import Plan
from services.generator.h2pool import H2Pool
from services.generator.http import resolve
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
            else:  # every address in turn, localhost on both loopbacks, as the pools dial
                error: OSError | None = None
                for addr in await resolve(asyncio.get_running_loop(), host, port):
                    try:
                        _, writer = await asyncio.open_connection(addr, port, ssl=ctx, server_hostname=host)
                        break
                    except OSError as exc:
                        error = exc
                else:
                    raise error or OSError(f"no address for {host}")
            obj = writer.get_extra_info("ssl_object")
            return obj.selected_alpn_protocol() if obj is not None else None
    finally:
        if writer is not None:
            writer.close()


def http1(plan: Plan) -> Pool:
    """HTTP/1.1: the engine's own pool (``pool.py``, asyncio protocols), proxies and
    redirects included."""
    return Pool(plan, ssl_context(plan) if plan.target.startswith("https:") else None)


async def choose(plan: Plan, picked: str | None = None) -> Pool:
    """The transport for this run: HTTP/2 when allowed, over TLS, and the target offers it;
    h2c (HTTP/2 over TCP, by prior knowledge) when the plan says so. ``picked``: the
    target's ALPN answer when it was asked already (``load.ByAlpn``), so it is asked
    once per run, not twice."""
    if plan.http2 == "h2c":  # the loader allows it for http:// targets only, no proxy
        return H2Pool(plan, None)
    if plan.http2 == "off" or not plan.target.startswith("https:"):
        return http1(plan)
    if picked is None:
        try:
            picked = await alpn(plan, plan.timeout)
        except Exception as exc:  # an outcome, not a crash: the run's requests will tell
            log.warning("ALPN probe failed; using HTTP/1.1", target=plan.target, error=repr(exc))
            return http1(plan)
    if picked == H2:
        return H2Pool(plan, ssl_context(plan))
    return http1(plan)
