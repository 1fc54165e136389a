"""A real HTTP server on 127.0.0.1 that records every request it receives.

The oracle of the importer tests: the source tool (curl, newman, Chromium) sends its
requests here, then the imported plan does, and the two recordings are compared.
Each request is kept as method, target (path and query as sent), headers and the body's
bytes. A few paths answer in ways the tools react to:

* ``/redirect?to=/x`` → 302 to ``/x``;
* ``/cookie?name=v`` → 200 with ``Set-Cookie: name=v; Path=/``;
* a path given in ``pages`` → 200 with that HTML;
* anything else → 200 with a small JSON body.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# headers whose value is the request's meaning, not its transport or client's identity
MATTERS = ("content-type", "authorization", "cookie", "x-api-key", "accept", "x-request-id")


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def key(self, headers: tuple[str, ...] = ("content-type",)) -> tuple:
        """What must be identical between the tool's request and the plan's."""
        body = self.body
        ctype = self.header("content-type") or ""
        if "boundary=" in ctype:  # a multipart boundary is random: compare with it replaced
            boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip('"')
            body = body.replace(boundary.encode(), b"BOUNDARY")
            ctype = ctype.replace(boundary, "BOUNDARY")
        values = tuple((h, ctype if h == "content-type" else self.header(h)) for h in headers)
        return (self.method, self.target, body, values)


@dataclass
class Recorder:
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    got: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.got = threading.Condition(self.lock)

    def add(self, r: Recorded) -> None:
        with self.got:
            self.requests.append(r)
            self.got.notify_all()

    def take(self) -> list[Recorded]:
        with self.lock:
            out, self.requests = self.requests, []
            return out

    def wait_for(self, count: int, limit_s: float = 10.0) -> list[Recorded]:
        with self.got:
            if not self.got.wait_for(lambda: len(self.requests) >= count, limit_s):
                raise TimeoutError(f"{len(self.requests)} of {count} requests after {limit_s}s")
            return list(self.requests)


def _handler(recorder: Recorder, pages: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the tools and the engine expect

        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _any(self) -> None:
            body = self._body()
            recorder.add(Recorded(self.command, self.path, tuple(self.headers.items()), body))
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query))
            extra: list[tuple[str, str]] = []
            status, payload, ctype = 200, b'{"ok": true}', "application/json"
            if url.path in pages:
                payload, ctype = pages[url.path].encode(), "text/html; charset=utf-8"
            elif url.path == "/redirect":
                status, payload = 302, b""
                extra.append(("Location", query.get("to", "/")))
            elif url.path == "/cookie":
                extra += [("Set-Cookie", f"{k}={v}; Path=/") for k, v in query.items()]
            self.send_response(status)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _any

    return Handler


class RecordingServer:
    """``with RecordingServer() as srv:`` → ``srv.url``, ``srv.recorder``."""

    def __init__(self, pages: dict[str, str] | None = None, tls: tuple[str, str] | None = None) -> None:
        self.pages = pages or {}
        self.tls = tls  # (certificate, key) files: https

    def __enter__(self) -> RecordingServer:
        self.recorder = Recorder()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.recorder, self.pages))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
