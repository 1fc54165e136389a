"""The demo target: an HTTP/1.1 keep-alive server on asyncio + httptools.

Routes (everything else is 404):
  GET  /                 a small HTML page
  POST /api/orders       a JSON order confirmation (201)
  GET  /delay/<ms>       answers after <ms> milliseconds
  GET  /status/<code>    answers with that status
  GET  /__stats          {"requests": n, "by_path": {...}} — what the target has seen
  POST /__stall/<ms>     hold every response for <ms> from now (a stall on demand)

``SURGE_TARGET_STALL_EVERY_S``/``SURGE_TARGET_STALL_MS`` make it stall periodically,
the way a GC pause or a lock convoy does, to show coordinated omission at work.
"""

from __future__ import annotations

import asyncio
import json
import time

import httptools
import structlog

from services.target.config import Config

log = structlog.get_logger(__name__)

HOME = b"<!doctype html><html><head><title>Surge demo shop</title></head><body><h1>Shop</h1></body></html>"
REASONS = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error"}


def response(status: int, body: bytes, content_type: str = "text/plain", keep_alive: bool = True) -> bytes:
    reason = REASONS.get(status, "Status")
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + conn
        + b"\r\n"
        + body
    )


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self.stall_until = 0.0
        self.started = time.monotonic()

    def hold_s(self, now: float) -> float:
        """How long a response ready now must wait (stalls, fixed delay)."""
        c = self.config
        if c.target_stall_every_s > 0 and c.target_stall_ms > 0:
            phase = (now - self.started) % c.target_stall_every_s
            stall = c.target_stall_ms / 1000.0
            if phase < stall:
                self.stall_until = max(self.stall_until, now + stall - phase)
        wait = max(self.stall_until - now, 0.0)
        return wait + c.target_delay_ms / 1000.0


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.pending: list[bytes] = []  # responses in order (pipelining-safe)
        self.waiting = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(response(400, b"bad request", keep_alive=False))
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        keep = self.parser.should_keep_alive()
        self.url, body, self.body = b"", b"".join(self.body), []
        st = self.state
        if not path.startswith("/__"):  # control routes are not load
            st.requests += 1
            st.by_path[path] = st.by_path.get(path, 0) + 1
        extra = 0.0
        if method == b"GET" and path == "/":
            out = response(200, HOME, "text/html", keep)
        elif method == b"POST" and path == "/api/orders":
            try:
                order = json.loads(body or b"{}")
            except ValueError:
                order = None
            if not isinstance(order, dict):
                out = response(400, b'{"error":"order must be a JSON object"}', "application/json", keep)
            else:
                confirmation = {"order_id": st.requests, "sku": order.get("sku"), "status": "accepted"}
                out = response(201, json.dumps(confirmation).encode(), "application/json", keep)
        elif path.startswith("/delay/"):
            try:
                extra = float(path[len("/delay/"):]) / 1000.0
                out = response(200, b"ok", keep_alive=keep)
            except ValueError:
                out = response(400, b"bad delay", keep_alive=keep)
        elif path.startswith("/status/"):
            code = path[len("/status/"):]
            out = response(int(code) if code.isdigit() and 100 <= int(code) < 600 else 400, b"status", keep_alive=keep)
        elif path == "/__stats":
            stats = {"requests": st.requests, "by_path": st.by_path}
            out = response(200, json.dumps(stats).encode(), "application/json", keep)
        elif method == b"POST" and path.startswith("/__stall/"):
            try:
                st.stall_until = time.monotonic() + float(path[len("/__stall/"):]) / 1000.0
                out = response(200, b"stalling", keep_alive=keep)
            except ValueError:
                out = response(400, b"bad stall", keep_alive=keep)
        else:
            out = response(404, b"not found", keep_alive=keep)
        hold = st.hold_s(time.monotonic()) + extra
        if not path.startswith("/__") and hold > 0 or self.waiting:
            self.waiting += 1
            asyncio.get_running_loop().call_later(max(hold, 0.0), self._send_later, out, keep)
        else:
            self._write(out, keep)

    def _send_later(self, out: bytes, keep: bool) -> None:
        self.waiting -= 1
        self._write(out, keep)

    def _write(self, out: bytes, keep: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(out)
        if not keep:
            self.transport.close()


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = State(config)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.state),
            self.config.target_host,
            self.config.target_port,
            backlog=4096,
            reuse_address=True,
        )
        log.info("listening", host=self.config.target_host, port=self.config.target_port)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
