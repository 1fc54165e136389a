"""Hand-written asyncio servers on 127.0.0.1 (or ::1) for the engine's tests.

Beside ``tests/recording.py`` (a threaded server that records whole requests for the
importer tests), these are the servers whose wire shape is exact because the test
writes it: ``RawServer`` runs a handler on each connection (HTTP/1.1 byte by byte,
plain or TLS), ``H2Server`` speaks HTTP/2 over TLS (ALPN ``h2``) or TCP (h2c) with the sans-I/O
``h2`` library, server side, and lets a test answer each stream frame by frame.
Both count connections; ``H2Server`` and the HTTP/1.1 request loops built on
``read_request`` record every request they received.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import struct
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from tests.events import Changes


class RawServer:
    """An asyncio server whose connections each run ``handler(server, reader, writer)``.

    A handler's ``ConnectionError`` or ``IncompleteReadError`` (the client went away)
    ends its connection quietly; the connection is closed when the handler returns.
    ``await server.until(predicate, limit_s, what)`` re-checks at each connection and
    each ``got_request()`` (a subclass's "request received" signal), not on a timer.
    """

    def __init__(self, handler, host: str = "127.0.0.1", ctx: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.host = host
        self.ctx = ctx  # TLS
        self.connections = 0
        self.changes = Changes()

    def got_request(self) -> None:
        """A request (or whatever a test counts) came: wake whoever waits on it."""
        self.changes.changed()

    async def until(self, predicate, limit_s: float, what: str):
        return await self.changes.until(predicate, limit_s, what)

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._conn, self.host, 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if self.ctx else 'http'}://{host}:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.changes.changed()
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    """One HTTP/1.1 request: method, target and body (by Content-Length); None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return method, path, (await reader.readexactly(length) if length else b"")


def reply(status: str = "200 OK", body: bytes = b"hello", headers: str = "") -> bytes:
    """An HTTP/1.1 response with a Content-Length."""
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def abort_with_rst(transport: asyncio.BaseTransport) -> None:
    """Close a connection with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def tls_server_context(cert_dir: Path, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A server's TLS context with a fresh local certificate (``services.cli.secure``)."""
    from services.cli.secure import make_certificates

    files = make_certificates(cert_dir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


# --- HTTP/2 ----------------------------------------------------------------------------------


class H2Stream:
    """One request on an ``H2Server``: the test answers it frame by frame.

    Every call sends its frames at once, so the order on the wire is the order of the calls.
    """

    def __init__(self, conn: _H2ServerConn, sid: int, method: str, path: str) -> None:
        self.conn, self.sid, self.method, self.path = conn, sid, method, path

    def headers(self, status: int, headers: list[tuple[str, str]] | None = None, end: bool = False) -> None:
        self.conn.h2.send_headers(self.sid, [(":status", str(status)), *(headers or [])], end_stream=end)
        self.conn.flush()

    def data(self, body: bytes, end: bool = True) -> None:
        self.conn.h2.send_data(self.sid, body, end_stream=end)
        self.conn.flush()

    def trailers(self, headers: list[tuple[str, str]]) -> None:
        self.conn.h2.send_headers(self.sid, headers, end_stream=True)
        self.conn.flush()

    def send(self, status: int = 200, body: bytes = b"hello", headers: list[tuple[str, str]] | None = None) -> None:
        """A whole response: HEADERS (with content-length), then DATA when there is a body."""
        self.headers(status, [("content-length", str(len(body))), *(headers or [])], end=not body)
        if body:
            self.data(body)

    def reset(self, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        """RST_STREAM: this stream ends without a response; the connection stays."""
        self.conn.h2.reset_stream(self.sid, code)
        self.conn.flush()

    def goaway(self) -> None:
        """GOAWAY (NO_ERROR) naming this stream the last one the server takes: it is still
        answered. Written as a raw frame: h2 sends nothing more after its own GOAWAY."""
        self.conn.flush()
        # a frame head (length 8, type GOAWAY, no flags, stream 0), last_stream_id, NO_ERROR
        self.conn.writer.write(struct.pack(">I", 8)[1:] + b"\x07\x00" + struct.pack(">III", 0, self.sid, 0))
        conn = self.conn
        conn.last_taken = self.sid  # streams above it are ignored, as RFC 9113 6.8 says
        for sid in [sid for sid in conn.read if sid > self.sid]:  # read already, now refused
            conn.server.received.remove(conn.read.pop(sid))
            conn.server.refused += 1

    def refuse(self) -> None:
        """RST_STREAM REFUSED_STREAM: not processed (RFC 9113 8.7), so not in ``received``."""
        self.conn.server.received.remove((self.method, self.path))
        self.conn.server.refused += 1
        self.reset(h2.errors.ErrorCodes.REFUSED_STREAM)

    def close(self) -> None:
        """Close the connection (TLS close, then FIN) with no more frames."""
        self.conn.writer.close()

    def abort(self) -> None:
        """Close the connection with a TCP RST."""
        abort_with_rst(self.conn.writer.transport)

    async def drain(self) -> None:
        await self.conn.writer.drain()


class _H2ServerConn:
    def __init__(self, server: H2Server, writer: asyncio.StreamWriter) -> None:
        self.server, self.writer = server, writer
        self.h2 = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, header_encoding="latin-1"))
        # hpack's pure-Python Huffman coder takes ~0.8 s for a 60 KB header: literals only
        self.h2.encoder.encode = functools.partial(type(self.h2.encoder).encode, self.h2.encoder,
                                                   huffman=False)
        self.tasks: set[asyncio.Task] = set()
        self.read: dict[int, tuple[str, str]] = {}  # stream → request, as received
        self.arrived = asyncio.Event()  # set at each whole request read
        self.last_taken: int | None = None  # the last stream of a GOAWAY this server sent

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.write(out)

    async def answer(self, stream: H2Stream) -> None:
        if self.last_taken is not None and stream.sid > self.last_taken:
            return  # refused by a GOAWAY sent since it was read: never answered
        try:
            await self.server.respond(self.server, stream)
            await stream.drain()
        except (ConnectionError, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            pass  # the client went away, or reset the stream


class H2Server(RawServer):
    """HTTP/2 on 127.0.0.1 (or ::1): ``respond(server, stream)`` answers each request.

    Over TLS with ``ctx`` (give it ALPN ``h2``), else over TCP: h2c by prior knowledge.

    ``received`` is every request read whole (method, path), in order: a request counts
    once its stream's END_STREAM came, before the test's answer starts; one the server
    did not process (``refuse``, or above the last stream of its ``goaway``) is counted
    in ``refused`` instead.
    """

    def __init__(self, respond, ctx: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
        super().__init__(self._serve, host, ctx)
        self.respond = respond
        self.received: list[tuple[str, str]] = []
        self.refused = 0  # requests read but not processed (above a GOAWAY, REFUSED_STREAM)
        self.heads: list[list[tuple[str, str]]] = []  # every request's header list, as read

    async def _serve(self, _, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _H2ServerConn(self, writer)
        conn.h2.initiate_connection()
        conn.flush()
        heads: dict[int, tuple[str, str]] = {}
        try:
            while data := await reader.read(65536):
                try:
                    events = conn.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    conn.flush()  # h2's GOAWAY
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        self.heads.append(list(ev.headers))
                        fields = dict(ev.headers)
                        heads[ev.stream_id] = (fields[":method"], fields[":path"])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):  # the request is whole
                        head = heads.pop(ev.stream_id, None)
                        conn.arrived.set()
                        if conn.last_taken is not None and ev.stream_id > conn.last_taken:
                            self.refused += 1  # after our GOAWAY: never processed
                        elif head is not None:
                            self.received.append(head)
                            conn.read[ev.stream_id] = head
                            task = asyncio.get_running_loop().create_task(
                                conn.answer(H2Stream(conn, ev.stream_id, *head)))
                            conn.tasks.add(task)
                            task.add_done_callback(conn.tasks.discard)
                conn.flush()
        finally:
            for task in list(conn.tasks):
                task.cancel()
