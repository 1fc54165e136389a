"""The demo target: an HTTP/1.1 keep-alive server on asyncio + httptools.

Routes (everything else is 404):
  GET  /                 a small HTML page
  POST /api/orders       a JSON order confirmation (201)
  GET  /delay/<ms>       answers after <ms> milliseconds
  GET  /status/<code>    answers with that status
  GET  /__stats          {"requests": n, "by_path": {...}} — what the target has seen;
                         by_generator / by_generator_second: per X-Surge-Generator
                         header, in all and per unix second
  POST /__stall/<ms>     hold every response for <ms> from now (a stall on demand)

Scenario routes (a shop that needs a login, for flows and their tests):
  POST /login            JSON {"username", "password": "secret"} -> {"token", "user"}
                         and Set-Cookie: sid=...; 401 for a wrong password
  GET  /api/me           needs Authorization: Bearer <token> and the sid cookie of
                         the same login; {"user", "ok": true}, else 401
  GET  /api/products     JSON {"products": [{"id", "sku", "name", "price"}, ...]}
  GET  /api/products/<id> one product as JSON (404 for an unknown id)
  GET  /products         the same as an HTML page (links, a csrf hidden input)
  POST /api/cart         needs the Bearer token; echoes {"user", "items": <body>}
  GET  /item/<key>       {"key": key}; /__stats by_path shows how often each key came

A request in absolute form (``GET http://host/path``, what clients send to an HTTP
proxy) is served as if for ``/path`` and counted in ``/__stats`` ``proxied``, so the
target can stand in for a proxy in tests. ``SURGE_TARGET_TLS_CERT``/``_KEY``: https;
with ``SURGE_TARGET_HTTP2=1`` as well, HTTP/2 for clients that pick it by ALPN (``http2.py``);
``SURGE_TARGET_HTTP2=1`` without TLS: h2c (HTTP/2 by prior knowledge) beside HTTP/1.1.

``SURGE_TARGET_STALL_EVERY_S``/``SURGE_TARGET_STALL_MS`` make it stall periodically,
the way a GC pause or a lock convoy does, to show coordinated omission at work.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time

import httptools
import structlog

from services.target.config import Config

log = structlog.get_logger(__name__)

HOME = b"<!doctype html><html><head><title>Surge demo shop</title></head><body><h1>Shop</h1></body></html>"
REASONS = {200: "OK", 201: "Created", 401: "Unauthorized", 404: "Not Found",
           500: "Internal Server Error"}
PRODUCTS = [
    {"id": i, "sku": f"SKU-{i:03d}", "name": f"Widget {i}", "price": round(4.5 * i, 2)}
    for i in range(1, 6)
]
PASSWORD = "secret"


def response(status: int, body: bytes, content_type: str = "text/plain", keep_alive: bool = True,
             extra: bytes = b"") -> bytes:
    reason = REASONS.get(status, "Status")
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + conn
        + extra
        + b"\r\n"
        + body
    )


def _json(status: int, obj, keep: bool, extra: bytes = b"") -> bytes:
    return response(status, json.dumps(obj).encode(), "application/json", keep, extra)


def products_page() -> bytes:
    items = "".join(
        f'<li><a class="product" href="/api/products/{p["id"]}" data-sku="{p["sku"]}">'
        f'{p["name"]}</a> <span class="price">{p["price"]}</span></li>'
        for p in PRODUCTS
    )
    return (
        "<!doctype html><html><head><title>Products</title></head><body>"
        '<form action="/api/cart" method="post"><input type="hidden" name="csrf" value="csrf-42">'
        f'</form><ul id="products">{items}</ul></body></html>'
    ).encode()


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self.stall_until = 0.0
        self.started = time.monotonic()
        self.sessions: dict[str, tuple[str, str]] = {}  # token -> (user, sid)
        self.proxied = 0  # requests in absolute form: the target served as an HTTP proxy
        self.h2_requests = 0  # of ``requests``, those that came over HTTP/2 (http2.py)
        self.ids = itertools.count(1)
        # X-Surge-Generator: requests per generator, and per generator per wall second
        self.by_generator: dict[str, int] = {}
        self.by_generator_second: dict[str, dict[int, int]] = {}

    def count_generator(self, gid: str) -> None:
        self.by_generator[gid] = self.by_generator.get(gid, 0) + 1
        seconds = self.by_generator_second.setdefault(gid, {})
        now = int(time.time())
        seconds[now] = seconds.get(now, 0) + 1
        if len(seconds) > 3600:  # a demo target runs for days: keep the last hour
            del seconds[min(seconds)]

    def login(self, body: bytes, keep: bool) -> bytes:
        try:
            creds = json.loads(body or b"{}")
        except ValueError:
            creds = None
        if not isinstance(creds, dict) or not creds.get("username"):
            return _json(400, {"error": "send {username, password}"}, keep)
        if creds.get("password") != PASSWORD:
            return _json(401, {"error": "wrong password"}, keep)
        n = next(self.ids)
        token, sid = f"tok-{n}", f"s-{n}"
        if len(self.sessions) > 100_000:  # bounded: a long test must not grow it forever
            self.sessions.clear()
        self.sessions[token] = (str(creds["username"]), sid)
        cookie = f"Set-Cookie: sid={sid}; Path=/; HttpOnly\r\n".encode()
        return _json(200, {"token": token, "user": creds["username"]}, keep, cookie)

    def user_of(self, headers: dict[str, str], need_cookie: bool) -> str | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        found = self.sessions.get(auth[7:].strip())
        if found is None:
            return None
        user, sid = found
        if need_cookie and _cookies(headers.get("cookie", "")).get("sid") != sid:
            return None
        return user

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
        self.headers: dict[str, str] | None = None  # kept only for routes that read them
        self._hname = ""
        self.generator = ""  # this request's X-Surge-Generator

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
        if self.url.startswith(b"/api/"):
            self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 17 and name.lower() == b"x-surge-generator":
            self.generator = value.decode("latin-1")[:64]
        if self.headers is not None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        if self.url.startswith((b"http://", b"https://")):  # absolute form: asked as a proxy
            self.url = b"/" + self.url.split(b"/", 3)[3] if self.url.count(b"/") >= 3 else b"/"
            self.state.proxied += 1
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        keep = self.parser.should_keep_alive()
        self.url, body, self.body = b"", b"".join(self.body), []
        headers, self.headers = self.headers or {}, None
        st = self.state
        if not path.startswith("/__"):  # control routes are not load
            st.requests += 1
            st.by_path[path] = st.by_path.get(path, 0) + 1
            if self.generator:
                st.count_generator(self.generator)
        self.generator = ""
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
        elif method == b"POST" and path == "/login":
            out = st.login(body, keep)
        elif path == "/api/me":
            user = st.user_of(headers, need_cookie=True)
            out = (_json(200, {"user": user, "ok": True}, keep) if user
                   else _json(401, {"ok": False, "error": "log in first"}, keep))
        elif path == "/api/products":
            out = _json(200, {"products": PRODUCTS}, keep)
        elif path.startswith("/api/products/"):
            pid = path[len("/api/products/"):]
            found = [p for p in PRODUCTS if str(p["id"]) == pid]
            out = _json(200, found[0], keep) if found else _json(404, {"error": "no such product"}, keep)
        elif path == "/products":
            out = response(200, products_page(), "text/html; charset=utf-8", keep)
        elif method == b"POST" and path == "/api/cart":
            user = st.user_of(headers, need_cookie=False)
            try:
                items = json.loads(body or b"null")
            except ValueError:
                items = None
            out = (_json(200, {"user": user, "items": items}, keep) if user
                   else _json(401, {"error": "log in first"}, keep))
        elif path.startswith("/item/"):
            out = _json(200, {"key": path[len("/item/"):]}, keep)
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
            stats = {"requests": st.requests, "by_path": st.by_path, "proxied": st.proxied,
                     "by_protocol": {"http/1.1": st.requests - st.h2_requests, "h2": st.h2_requests},
                     "by_generator": st.by_generator,
                     "by_generator_second": st.by_generator_second}
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
        tls = None
        if self.config.target_tls_cert:  # https, e.g. with a self-signed test certificate
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.target_tls_cert, self.config.target_tls_key or None)
        factory = lambda: HttpProtocol(self.state)  # noqa: E731
        if tls is not None and self.config.target_http2:
            from services.target.http2 import ALPN, Negotiated

            tls.set_alpn_protocols(ALPN)
            factory = lambda: Negotiated(self.state)  # noqa: E731
        elif self.config.target_http2:  # plain TCP: h2c by prior knowledge beside HTTP/1.1
            from services.target.http2 import Sniffed

            factory = lambda: Sniffed(self.state)  # noqa: E731
        self._server = await loop.create_server(
            factory,
            self.config.target_host,
            self.config.target_port,
            backlog=4096,
            reuse_address=True,
            ssl=tls,
        )
        log.info("listening", host=self.config.target_host, port=self.config.target_port)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
