"""HTTP/1.1 on the wire: pre-encoded requests and a keep-alive connection protocol.

Requests are encoded once per plan into bytes; sending one is a ``transport.write``.
Responses are parsed by httptools (llhttp, the parser Node.js uses). The protocol
only reports events to its owner (the engine); it keeps no statistics itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import httptools
import msgspec

from schemas.plan import Plan, RequestSpec
from services.common.identity import USER_AGENT

if TYPE_CHECKING:
    from services.generator.engine import Engine

PATH_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # what may stay as written; the rest is %-encoded
MAX_CHECK_BODY = 1 << 20  # bytes kept for a body_contains check; the rest is counted only
CHECK_BUDGET = 64 << 20  # all connections' check buffers together: many connections keep less
MIN_CHECK_BODY = 64 << 10  # ... but never less than this each
MAX_HEAD = 64 << 10  # status line + headers; more is a "too_large" error, never buffered
READ_SIZE = 256 << 10  # the engine's read buffer, shared by its connections


def target_address(plan: Plan) -> tuple[str, int, str]:
    """(host, port, Host header) of the plan's target."""
    parts = urlsplit(plan.target)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return host, port, host_header


def encode_request(plan: Plan, spec: RequestSpec, host_header: str) -> bytes:
    body = b""
    # header names are case-insensitive: later sources win, keeping their spelling
    headers: dict[str, tuple[str, str]] = {}
    for source in ({"Host": host_header, "User-Agent": USER_AGENT}, plan.headers, spec.headers):
        for name, value in source.items():
            headers[name.lower()] = (name, value)
    headers.pop("content-length", None)  # always computed from the body
    if spec.json is not None:
        body = msgspec.json.encode(spec.json)
        headers.setdefault("content-type", ("Content-Type", "application/json"))
    elif spec.body is not None:
        body = spec.body.encode()
    if body or spec.method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = ("Content-Length", str(len(body)))
    path = quote(spec.path, safe=PATH_SAFE)
    head = f"{spec.method} {path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.values())
    return head.encode("latin-1") + b"\r\n" + body


def check_cap(connections: int) -> int:
    """Body bytes each connection keeps for a check: 1 MB, less when many connections
    together would exceed ``CHECK_BUDGET`` (bounded memory whatever the bodies)."""
    return max(MIN_CHECK_BODY, min(MAX_CHECK_BODY, CHECK_BUDGET // max(connections, 1)))


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection carrying one request at a time.

    A ``BufferedProtocol``: the loop reads straight into the engine's one read
    buffer (each read is parsed before the next one happens), which is fed to llhttp
    as a memoryview, so a response costs no bytes object of ours. Memory stays bounded whatever the target sends: the head may not
    exceed ``MAX_HEAD`` bytes ("too_large"); a body is skipped by llhttp, or, in a
    ``CheckedConnection``, only its first ``check_cap`` bytes (≤ 1 MB) are kept.
    """

    __slots__ = (
        "engine", "transport", "parser", "view", "busy", "spec", "intended", "sent",
        "status", "body", "keep_alive", "closed", "want_body", "body_len", "head_len",
        "head_done",
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.view = engine.read_buffer  # shared: each read is parsed before the next
        self.busy = False
        self.spec = -1
        self.intended = 0.0
        self.sent = 0.0
        self.status = 0
        self.body: list[bytes] | None = None
        self.body_len = 0
        self.head_len = 0
        self.head_done = False
        self.want_body = False
        self.keep_alive = True
        self.closed = False

    # --- asyncio.BufferedProtocol ------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.parser.feed_data(self.view[:nbytes])
        except httptools.HttpParserUpgrade:
            self.engine.on_broken(self, "other")
            return
        except httptools.HttpParserError:
            self.engine.on_broken(self, "other")
            return
        if not self.head_done and self.busy:
            # a head still unfinished after this read: bound it (slowloris, junk)
            self.head_len += nbytes
            if self.head_len > MAX_HEAD:
                self.engine.on_broken(self, "too_large")

    def eof_received(self) -> bool:
        # a body delimited by the end of the connection ends here (llhttp needs EOF)
        if self.busy and self.head_done and not self.keep_alive:
            self.engine.on_response(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.engine.on_lost(self)

    # --- used by the engine -----------------------------------------------
    def send(self, spec: int, payload: bytes, intended: float, now: float, want_body: bool) -> None:
        self.busy = True
        self.spec = spec
        self.intended = intended
        self.sent = now
        self.want_body = want_body
        self.body = None
        self.body_len = 0
        self.head_done = False
        self.head_len = 0
        self.transport.write(payload)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # --- httptools callbacks ----------------------------------------------
    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()
        self.head_done = True

    def on_message_complete(self) -> None:
        if self.busy:
            self.engine.on_response(self)
        else:  # a response nobody asked for: the connection is out of step
            self.engine.on_broken(self, "other")


class CheckedConnection(Connection):
    """A connection whose responses may need their body (a ``body_contains`` check).

    A separate class because httptools calls only the callbacks that exist: without
    ``on_body`` a body is skipped inside llhttp, never turned into bytes objects
    (~0.2 µs a response), so plans without body checks use the base class.
    """

    __slots__ = ("check_cap",)

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.check_cap = check_cap(engine.max_conns)

    def on_body(self, body: bytes) -> None:
        if self.want_body:
            room = self.check_cap - self.body_len
            if room > 0:
                if self.body is None:
                    self.body = []
                self.body.append(body if len(body) <= room else body[:room])
        self.body_len += len(body)
