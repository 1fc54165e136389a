"""HTTP/2 for flows on asyncio protocols: the sans-I/O ``h2`` library over stdlib TLS or TCP (h2c).

``H2Pool`` is ``pool.Pool`` with HTTP/2 connections: the same dialing (every address,
``localhost`` on both loopbacks, a CONNECT tunnel through a proxy), the same per-user
``Client`` (cookies, redirects, decoded bodies) and the same error kinds; a request is a
stream, many streams share a connection (up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``; then another connection opens). ``h2`` only turns
events into frames and frames into events: the protocol below moves the bytes, so no
general-purpose client (and no thread, no memory-BIO stream layer) is on the path.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from schemas.plan import Plan
from services.generator.hpack_fast import BlockDecoder, FieldEncoder
from services.generator.http import MAX_HEAD
from services.generator.pool import Pool, Reset, ResponseTooLarge

_now = time.monotonic
_DROP = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                   "upgrade", "te"})  # connection-specific: not sent over HTTP/2 (RFC 9113 8.2.2)


class Refused(Reset):
    """A stream the server did not process: above a GOAWAY's last_stream_id, or reset with
    REFUSED_STREAM (RFC 9113 8.7). ``exchange`` sends it again; it is never counted."""


class _Stream:
    __slots__ = ("fut", "sent", "status", "headers", "body")

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut
        self.sent = _now()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []


class _Client(h2.connection.H2Connection):
    """h2's client connection: heads up to 1 MB decoded, streams answered after a GOAWAY,
    told how many streams are open instead of counting them.

    h2 counts its open outbound streams before every request by walking all of them
    (and drops the closed ones as it goes): with 64 streams in flight that walk was 8 %
    of the CPU. The pool knows the number (its own table of streams waiting for a
    response, ``_H2Conn.streams``), so h2 walks only every 64th time, to drop closed
    streams. The limit itself is still h2's: ``SETTINGS_MAX_CONCURRENT_STREAMS``.
    """

    # HPACK must decode a whole header block to stay in step, so it decodes (and we
    # advertise) up to 1 MB; a response head beyond MAX_HEAD is then that stream's
    # too_large and the connection carries on; beyond 1 MB h2 drops the connection
    # (a protocol error: its streams are reset)
    DEFAULT_MAX_HEADER_LIST_SIZE = 1 << 20

    def __init__(self, config: h2.config.H2Configuration, waiting: dict) -> None:
        super().__init__(config)
        self._waiting = waiting
        self._counted = 0

    @property
    def open_outbound_streams(self) -> int:
        self._counted += 1
        if self._counted & 63:
            return len(self._waiting)
        return super().open_outbound_streams

    def _receive_goaway_frame(self, frame):
        # h2 refuses every frame after a GOAWAY, but the streams up to its last_stream_id
        # are still answered (RFC 9113 6.8; nginx sends one at keepalive_requests, then
        # finishes them): the connection stays open for them, and takes no new stream
        state = self.state_machine.state
        out = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return out


# h2 checks and rewrites nothing we build ourselves: the pool lowercases names, drops the
# connection-specific ones and puts the pseudo-headers first (docs/engine.md, "HTTP/2")
_CONFIG = {"client_side": True, "header_encoding": None,
           "validate_outbound_headers": False, "normalize_outbound_headers": False,
           "validate_inbound_headers": False, "normalize_inbound_headers": False}
_REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
_ACK_AT = 1 << 15  # connection-level bytes of ended streams acknowledged together
_ResponseReceived, _DataReceived, _StreamEnded = (
    h2.events.ResponseReceived, h2.events.DataReceived, h2.events.StreamEnded)


_HEADS: dict[tuple, tuple[int, list[tuple[str, str]], int]] = {}


def _head(fields: tuple) -> tuple[int, list[tuple[str, str]], int]:
    """A response head as h2 gives it (bytes) → (status, [(name, value)] as text, HPACK size).

    Remembered (up to 256 heads of ≤ 8 KB): a server answers the same few heads over and
    over, so a response costs one tuple and one lookup, not a decode per field."""
    status, headers, size = 0, [], 0
    for k, v in fields:
        size += len(k) + len(v) + 32
        if k == b":status":
            status = int(v)
        elif k[:1] != b":":
            headers.append((k.decode("latin-1"), v.decode("latin-1")))
    out = (status, headers, size)
    if size <= 8192:
        if len(_HEADS) >= 256:
            _HEADS.clear()
        _HEADS[fields] = out
    return out


class _H2Conn(asyncio.Protocol):
    """One HTTP/2 connection carrying many streams.

    What h2 has to send is written once per pass of the event loop (``_flush``, put on
    the loop by the first request or read that needs it), not once per request: the
    streams started by every user a read woke up leave in one TLS record and one send.
    """

    def __init__(self, pool: H2Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.streams: dict[int, _Stream] = {}
        conn = self.h2 = _Client(h2.config.H2Configuration(**_CONFIG), self.streams)
        decoder = BlockDecoder()
        decoder.max_header_list_size = conn.decoder.max_header_list_size
        conn.encoder, conn.decoder = FieldEncoder(), decoder  # type: ignore[assignment]
        self.max_streams = 100  # until the server's SETTINGS say
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.going = False  # a GOAWAY came: the open streams end, no new one starts
        self.flush_due = False
        self.unacked = 0
        self.fut = None  # the pool's sweep looks at streams, not this
        self.heard = False  # the server's first bytes came (its SETTINGS, if it speaks HTTP/2)
        self.failure: Exception | None = None  # why it closed before its first stream

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def free(self) -> bool:
        return not self.closed and not self.going and len(self.streams) < self.max_streams

    def _flush(self) -> None:
        self.flush_due = False
        out = self.h2.data_to_send()
        if out and not self.closed:
            self.transport.write(out)  # type: ignore[union-attr]

    def start(self, headers: list[tuple[bytes, bytes]], body: bytes | None, fut: asyncio.Future) -> None:
        h = self.h2
        sid = h.get_next_available_stream_id()
        h.send_headers(sid, headers, end_stream=not body)
        self.streams[sid] = _Stream(fut)
        if body:
            window = h.local_flow_control_window(sid)
            if len(body) > window:  # bodies of flows are small; a big one waits for no window
                h.send_data(sid, body[:window])
                self._fail_stream(sid, OverflowError("request body beyond the HTTP/2 window"))
                h.reset_stream(sid)
            else:
                h.send_data(sid, body, end_stream=True)
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        if not self.heard:
            self.heard = True
            if data[:5] == b"HTTP/":  # an HTTP/1.x answer to the HTTP/2 preface (h2c only)
                self.failure = Reset(f"the target answered {data[:8].decode('latin-1')}, not HTTP/2: "
                                     "it does not speak h2c (http2: h2c); use http2: off")
                self._fail_all(self.failure)
                self.close()
                return
        h = self.h2
        try:
            events = h.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(Reset(f"HTTP/2 protocol error: {exc}"))
            self.close()
            return
        streams = self.streams
        for ev in events:
            kind = type(ev)
            if kind is _DataReceived:
                st = streams.get(ev.stream_id)
                if st is not None:
                    st.body.append(ev.data)
                if ev.stream_ended is not None:  # only the connection's window matters now
                    self.unacked += ev.flow_controlled_length
                elif not self.closed:
                    h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif kind is _StreamEnded:
                st = streams.pop(ev.stream_id, None)
                if st is not None and not st.fut.done():
                    st.fut.set_result((st.status, st.headers, b"".join(st.body)))
                if self.going and not streams:
                    self.close()
            elif kind is _ResponseReceived:
                st = streams.get(ev.stream_id)
                if st is None:
                    continue
                fields = tuple(ev.headers)
                head = _HEADS.get(fields) or _head(fields)
                if head[2] > MAX_HEAD:
                    # HPACK's list size (RFC 9113 6.5.2) against HTTP/1.1's 64 KB head bound
                    self._fail_stream(ev.stream_id, ResponseTooLarge("response head beyond 64 KB"))
                    try:  # the rest of it is not wanted (unless it came in the same read)
                        h.reset_stream(ev.stream_id, h2.errors.ErrorCodes.CANCEL)
                    except h2.exceptions.StreamClosedError:
                        pass
                else:
                    st.status, st.headers = head[0], list(head[1])
            elif kind is h2.events.StreamReset:
                self._fail_stream(ev.stream_id, (Refused if ev.error_code == _REFUSED else Reset)(
                    f"stream reset by the server ({ev.error_code})"))
            elif kind is h2.events.RemoteSettingsChanged:
                got = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                if got is not None:
                    self.max_streams = max(int(got.new_value), 1)
            elif kind is h2.events.ConnectionTerminated:
                # streams above the last one the server took were never processed; those
                # up to it are still answered, then the connection closes (kept in the
                # pool meanwhile: its sweep times the open streams out)
                self.going = True
                for sid in [sid for sid in streams if sid > (ev.last_stream_id or 0)]:
                    self._fail_stream(sid, Refused("above the last stream of the server's GOAWAY"))
                if not streams:
                    self.close()
            # InformationalResponseReceived (1xx): skipped, the final response follows
        if self.unacked >= _ACK_AT and not self.closed:
            h.increment_flow_control_window(self.unacked)
            self.unacked = 0
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_all(Reset("connection closed with streams open"))
        self.pool.forget(self)

    def _fail_stream(self, sid: int, exc: BaseException) -> None:
        st = self.streams.pop(sid, None)
        if st is not None and not st.fut.done():
            st.fut.set_exception(exc)

    def _fail_all(self, exc: BaseException) -> None:
        for sid in list(self.streams):
            self._fail_stream(sid, exc)

    def timeout_before(self, limit: float) -> None:
        for sid, st in list(self.streams.items()):
            if st.sent < limit:
                self._fail_stream(sid, TimeoutError("no response within the plan's timeout"))
                try:
                    self.h2.reset_stream(sid)
                except h2.exceptions.ProtocolError:
                    pass
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)

    def close(self) -> None:
        self.pool.forget(self)
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


class H2Pool(Pool):
    """HTTP/2 connections to the plan's target, streams multiplexed on them: over TLS
    (``h2`` by ALPN) for https, or over TCP for ``http2: h2c`` (no ``ssl_context``)."""

    protocol = "h2"

    def __init__(self, plan: Plan, ssl_context: ssl.SSLContext | None, target: str | None = None) -> None:
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        else:
            self.protocol = "h2c"
        super().__init__(plan, ssl_context, target)
        self.conn_factory = _H2Conn  # type: ignore[assignment]
        self.conns: list[_H2Conn] = []
        # a request's fields as h2 takes them, bytes; what every request repeats made once
        self._prefix = ((b":scheme", b"https" if self.https else b"http"),
                        (b":authority", self.host_header.encode("latin-1")))
        self._methods = {m: (b":method", m.encode()) for m in
                         ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
        self._names: dict[str, bytes] = {}  # a header's name → its HTTP/2 name (b"": not sent)
        self._dialing: asyncio.Task | None = None

    async def exchange(self, method: str, path: str, headers: list[tuple[str, str]],
                       data: bytes | None) -> tuple[int, list, bytes]:
        fields = [self._methods.get(method) or (b":method", method.encode("latin-1")),
                  *self._prefix, (b":path", path.encode("latin-1"))]
        names = self._names
        for k, v in headers:
            name = names.get(k)
            if name is None:
                low = k.lower()
                name = b"" if low in _DROP else low.encode("latin-1")
                if len(names) < 1024:
                    names[k] = name
            if name:
                fields.append((name, v.encode("latin-1")))
        if data is not None or method in ("POST", "PUT", "PATCH"):
            fields.append((b"content-length", str(len(data or b"")).encode()))
        first = _now()
        while True:
            conn = next((c for c in self.conns if c.free()), None)
            if conn is None:
                conn = await self._new_conn()
            fut = self.loop.create_future()
            conn.start(fields, data, fut)
            try:
                return await fut
            except Refused:  # never processed: sent again, within the plan's timeout
                if _now() - first >= self.timeout:
                    raise TimeoutError("refused by the server until the plan's timeout") from None

    async def _new_conn(self) -> _H2Conn:
        # users arriving together share one dial, not one connection each
        if self._dialing is None or self._dialing.done():
            self._dialing = self.loop.create_task(asyncio.wait_for(self._dial(), self.timeout))
        conn = await asyncio.shield(self._dialing)
        if conn.closed:  # gone before its first stream: this request fails, no dial after dial
            raise conn.failure or Reset("the server closed the connection before any request")
        if conn not in self.conns:
            ssl_obj = conn.transport.get_extra_info("ssl_object") if conn.transport else None
            if ssl_obj is not None and ssl_obj.selected_alpn_protocol() != "h2":
                conn.close()
                raise ConnectionRefusedError("the target did not pick h2 by ALPN")
            self.conns.append(conn)
        if not conn.free():  # taken up by the others who waited for it: one more
            return await self._new_conn()
        return conn

    def release(self, conn) -> None:  # streams end, the connection stays
        pass

    def forget(self, conn) -> None:
        if conn in self.conns:
            self.conns.remove(conn)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            limit = _now() - self.timeout
            for conn in list(self.conns):
                conn.timeout_before(limit)

    def pool_for(self, origin: str) -> Pool:
        if origin == self.origin:
            return self
        pool = self.others.get(origin)
        if pool is None:  # another origin (a redirect): HTTP/1.1, with no ALPN of ours
            ctx = ssl.create_default_context()
            if self.plan.insecure:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            pool = self.others[origin] = Pool(self.plan, ctx if origin.startswith("https:") else None,
                                              target=origin)
        return pool

    async def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        await super().close()
