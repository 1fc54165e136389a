"""The demo target's HTTP/2: TLS connections whose ALPN picks ``h2`` get the same routes.

With ``SURGE_TARGET_HTTP2=1`` (and a TLS certificate) the target offers ``h2`` and
``http/1.1`` by ALPN. ``Negotiated`` is then every connection's protocol: after the
handshake it hands the connection to the HTTP/1.1 ``HttpProtocol`` or to
``H2Protocol``. ``H2Protocol`` (the ``h2`` library, which does no I/O of its own)
turns each finished stream into an HTTP/1.1 request for a fresh ``HttpProtocol`` — so
logins, cookies, delays and stalls behave exactly as over HTTP/1.1 — and that
request's answer back into HEADERS and DATA frames, within the flow-control window.
``/__stats`` counts the requests served over h2 in ``by_protocol``.

Without TLS, ``SURGE_TARGET_HTTP2=1`` serves h2c by prior knowledge beside HTTP/1.1 on
the same port: ``Sniffed`` reads a connection's first bytes and takes HTTP/2 when they
are the client's connection preface (RFC 9113 3.4), as Go's h2c handler and nginx do.
"""

from __future__ import annotations

import asyncio

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (ConnectionTerminated, DataReceived, RequestReceived, StreamEnded,
                       StreamReset, WindowUpdated)
from h2.exceptions import ProtocolError, StreamClosedError

from services.target.server import HttpProtocol, State

ALPN = ["h2", "http/1.1"]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade"})


class Negotiated(asyncio.Protocol):
    """HTTP/2 or HTTP/1.1, as the TLS handshake's ALPN decided."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.inner: asyncio.Protocol | None = None

    def connection_made(self, transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        h2 = ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        self.inner = H2Protocol(self.state) if h2 else HttpProtocol(self.state)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)


class Sniffed(Negotiated):
    """HTTP/2 by prior knowledge (h2c) or HTTP/1.1 over TCP, as the first bytes say."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.head = b""

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            self.head += data
            if len(self.head) < len(PREFACE) and PREFACE.startswith(self.head):
                return  # not enough bytes to tell yet
            h2 = self.head.startswith(PREFACE)
            self.inner = H2Protocol(self.state) if h2 else HttpProtocol(self.state)
            self.inner.connection_made(self.transport)
            data, self.head = self.head, b""
        self.inner.data_received(data)


class _StreamReply:
    """The transport a per-stream ``HttpProtocol`` writes its one response to."""

    __slots__ = ("conn", "stream_id")

    def __init__(self, conn: H2Protocol, stream_id: int) -> None:
        self.conn, self.stream_id = conn, stream_id

    def write(self, data: bytes) -> None:
        self.conn.respond(self.stream_id, data)

    def close(self) -> None:
        pass  # "Connection: close" ends nothing but the stream here

    def is_closing(self) -> bool:
        t = self.conn.transport
        return t is None or t.is_closing()

    def get_extra_info(self, name: str, default=None):
        return default


class H2Protocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[list[tuple[str, str]], list[bytes]]] = {}
        self.outbox: dict[int, bytes] = {}  # response bodies waiting for window

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc) -> None:
        self.streams.clear()
        self.outbox.clear()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()  # the GOAWAY h2 queued
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.streams[ev.stream_id] = (ev.headers, [])
            elif isinstance(ev, DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id in self.streams:
                    self.streams[ev.stream_id][1].append(ev.data)
            elif isinstance(ev, StreamEnded):
                found = self.streams.pop(ev.stream_id, None)
                if found is not None:
                    self.dispatch(ev.stream_id, *found)
            elif isinstance(ev, StreamReset):
                self.streams.pop(ev.stream_id, None)
                self.outbox.pop(ev.stream_id, None)
            elif isinstance(ev, WindowUpdated):
                self.send_pending()
            elif isinstance(ev, ConnectionTerminated):
                self.flush()
                self.transport.close()
                return
        self.flush()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def dispatch(self, stream_id: int, headers: list[tuple[str, str]], body: list[bytes]) -> None:
        """One stream's request, served by the HTTP/1.1 routes."""
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        path = pseudo.get(":path", "/")
        lines = [f"{pseudo.get(':method', 'GET')} {path} HTTP/1.1",
                 f"host: {pseudo.get(':authority', '')}"]
        cookies = []
        for k, v in headers:
            if k == "cookie":  # HTTP/2 may split cookies into several fields (RFC 9113 8.2.3)
                cookies.append(v)
            elif not k.startswith(":") and k not in ("host", "content-length"):
                lines.append(f"{k}: {v}")
        if cookies:
            lines.append("cookie: " + "; ".join(cookies))
        data = b"".join(body)
        lines.append(f"content-length: {len(data)}")
        if not path.startswith("/__"):  # control routes are not load, as in HttpProtocol
            self.state.h2_requests += 1
        h1 = HttpProtocol(self.state)
        h1.connection_made(_StreamReply(self, stream_id))
        h1.data_received(("\r\n".join(lines) + "\r\n\r\n").encode() + data)

    def respond(self, stream_id: int, raw: bytes) -> None:
        """An HTTP/1.1 response (as ``server.response`` makes them) onto a stream."""
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [(":status", lines[0].split(" ", 2)[1])]
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k not in _HOP_BY_HOP:
                headers.append((k, v.strip()))
        try:
            self.conn.send_headers(stream_id, headers, end_stream=not body)
        except (StreamClosedError, ProtocolError):
            return  # the client gave up on this stream
        if body:
            self.outbox[stream_id] = body
        self.send_pending()

    def send_pending(self) -> None:
        for sid in list(self.outbox):
            data = self.outbox[sid]
            try:
                while data:
                    n = min(len(data), self.conn.local_flow_control_window(sid),
                            self.conn.max_outbound_frame_size)
                    if n <= 0:
                        break  # wait for a WINDOW_UPDATE
                    self.conn.send_data(sid, data[:n], end_stream=n == len(data))
                    data = data[n:]
            except (StreamClosedError, ProtocolError):
                data = b""
            if data:
                self.outbox[sid] = data
            else:
                del self.outbox[sid]
        self.flush()
