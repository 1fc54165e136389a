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

if TYPE_CHECKING:
    from services.generator.engine import Engine

USER_AGENT = "surge/0.1"
PATH_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # what may stay as written; the rest is %-encoded
MAX_CHECK_BODY = 1 << 20  # bytes kept for a body_contains check; the rest is counted only


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


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    __slots__ = (
        "engine", "transport", "parser", "busy", "spec", "intended", "sent",
        "status", "body", "keep_alive", "closed", "timed_out", "want_body", "body_len",
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.spec = -1
        self.intended = 0.0
        self.sent = 0.0
        self.status = 0
        self.body: list[bytes] | None = None
        self.body_len = 0
        self.want_body = False
        self.keep_alive = True
        self.closed = False
        self.timed_out = False

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.engine.on_broken(self, "other")
        except httptools.HttpParserUpgrade:
            self.engine.on_broken(self, "other")

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
        self.transport.write(payload)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # --- httptools callbacks ----------------------------------------------
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.want_body and self.body_len < MAX_CHECK_BODY:
            if self.body is None:
                self.body = []
            self.body.append(body)
        self.body_len += len(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.engine.on_response(self)
