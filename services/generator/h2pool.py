"""HTTP/2 for flows on asyncio protocols: the sans-I/O ``h2`` library over stdlib TLS or TCP (h2c).

``H2Pool`` is ``pool.Pool`` with HTTP/2 connections: the same dialing (every address,
``localhost`` on both loopbacks, a CONNECT tunnel through a proxy), the same per-user
``Client`` (cookies, redirects, decoded bodies) and the same error kinds; a request is a
stream, many streams share a connection (up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``; then another connection opens). ``h2`` only turns
events into frames and frames into events: the protocol below moves the bytes, so no
general-purpose client (and no thread, no memory-BIO stream layer) is on the path.

A flow step's request is compiled once per pool (``H2Pool.compile``: its fields as h2
takes them, constant ones encoded once) and goes out from the previous response's
callback (``H2Pool.start``, the waiter ``session._Chain``), as on HTTP/1.1: a stream
that ends calls its waiter in the connection's stack, no future or task per request.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schemas.plan import Plan
from services.generator.client import Client
from services.generator.encode import base_headers, merge_headers, quote_path
from services.generator.h2frames import (
    CONFIG, DROP, HEADS, NO_HEAD, ClientConnection, H2Client, H2Fields, ResponseFrames, response_head,
)
from services.generator.head import Head
from services.generator.hpack_fast import BlockDecoder, FieldEncoder
from services.generator.http import MAX_HEAD
from services.generator.pool import Pool, Reset, ResponseTooLarge

if TYPE_CHECKING:
    from services.generator.session import CompiledStep

_now = time.monotonic


class Refused(Reset):
    """A stream the server did not process: above a GOAWAY's last_stream_id, or reset with
    REFUSED_STREAM (RFC 9113 8.7). The pool sends it again (``H2Pool.again``); it is
    never counted."""


class _Stream:
    """A request and its response: ``waiter`` (an asyncio Future, or any object with
    done/set_result/set_exception: ``session._Chain``) gets (status, Head, body)."""

    __slots__ = ("waiter", "fields", "data", "first", "sent", "status", "headers", "body")

    def __init__(self, waiter: Any, fields: list[tuple[bytes, bytes]], data: bytes | None) -> None:
        self.waiter, self.fields, self.data = waiter, fields, data
        self.first = self.sent = _now()  # first: sent again after a refusal, within the timeout
        self.status = 0
        self.headers: Head = NO_HEAD
        self.body: list[bytes] = []


_REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
_ACK_AT = 1 << 15  # connection-level bytes of ended streams acknowledged together
_ResponseReceived, _DataReceived, _StreamEnded = (
    h2.events.ResponseReceived, h2.events.DataReceived, h2.events.StreamEnded)


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
        conn = self.h2 = ClientConnection(h2.config.H2Configuration(**CONFIG), self.streams)
        decoder = BlockDecoder()
        decoder.max_header_list_size = conn.decoder.max_header_list_size
        conn.encoder, conn.decoder = FieldEncoder(), decoder  # type: ignore[assignment]
        conn.incoming_buffer = ResponseFrames()
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

    def start(self, st: _Stream) -> None:
        """A stream for ``st``'s request. A failure here raises (the stream is not kept):
        the caller's waiter is never called in its own stack, so a chain that fails
        every time cannot recurse."""
        h = self.h2
        sid = h.get_next_available_stream_id()
        data = st.data
        if h.send_request(sid, st.fields, data):
            st.sent = _now()
            self.streams[sid] = st
            if not self.flush_due:
                self.flush_due = True
                self.loop.call_soon(self._flush)
            return
        # a body beyond one frame or the window: h2's frames, one per max frame size; what
        # the window does not take fails the request (bodies of flows are small: none waits)
        window, step = h.local_flow_control_window(sid), h.max_outbound_frame_size
        for at in range(0, min(len(data), window), step):  # type: ignore[arg-type]
            h.send_data(sid, data[at:at + step], end_stream=at + step >= len(data))  # type: ignore[index,arg-type]
        if len(data) > window:  # type: ignore[arg-type]
            h.reset_stream(sid)
            self._want_flush()
            raise OverflowError("request body beyond the HTTP/2 window")
        st.sent = _now()
        self.streams[sid] = st
        self._want_flush()

    def _want_flush(self) -> None:
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        if not self.heard:
            self.heard = True
            if data[:5] == b"HTTP/":  # an HTTP/1.x answer to the HTTP/2 preface (h2c only)
                self.going = True  # no stream starts here from a waiter called below
                self.failure = Reset(f"the target answered {data[:8].decode('latin-1')}, not HTTP/2: "
                                     "it does not speak h2c (http2: h2c); use http2: off")
                self._fail_all(self.failure)
                self.close()
                return
        h = self.h2
        try:
            events = h.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.going = True
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
                h.forget_ended(ev.stream_id)
                st = streams.pop(ev.stream_id, None)
                if st is not None and not st.waiter.done():
                    body = st.body
                    # the waiter may start its next stream at once, here or on another connection
                    st.waiter.set_result((st.status, st.headers, body[0] if len(body) == 1 else b"".join(body)))
                if self.going and not streams:
                    self.close()
            elif kind is _ResponseReceived:
                st = streams.get(ev.stream_id)
                if st is None:
                    continue
                fields = tuple(ev.headers)
                head = HEADS.get(fields) or response_head(fields)
                if head[2] > MAX_HEAD:
                    # HPACK's list size (RFC 9113 6.5.2) against HTTP/1.1's 64 KB head bound
                    self._fail_stream(ev.stream_id, ResponseTooLarge("response head beyond 64 KB"))
                    try:  # the rest of it is not wanted (unless it came in the same read)
                        h.reset_stream(ev.stream_id, h2.errors.ErrorCodes.CANCEL)
                    except h2.exceptions.StreamClosedError:
                        pass
                else:
                    st.status, st.headers = head[0], head[1]
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
        if st is None:
            return
        if exc.__class__ is Refused:  # never processed: sent again, on a connection still taking streams
            self.pool.again(st)
        elif not st.waiter.done():
            st.waiter.set_exception(exc)

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
        self._later: set[asyncio.Task] = set()  # refused streams waiting for a connection

    def client(self) -> Client:
        return H2Client(self)

    def _name(self, k: str) -> bytes:
        """A header's HTTP/2 name: lower case; b"" for one not sent over HTTP/2 (``DROP``)."""
        names = self._names
        name = names.get(k)
        if name is None:
            low = k.lower()
            name = b"" if low in DROP else low.encode("latin-1")
            if len(names) < 1024:
                names[k] = name
        return name

    def compile(self, step: CompiledStep, common: list) -> tuple[H2Fields, Callable[[dict], bytes] | None]:
        """A flow step's request as ``exchange`` would send it (``session.CompiledStep.encoder``):
        the same merge (``encode.merge_headers`` onto ``base_headers``), the same fields, with
        what is constant encoded once; the body as on HTTP/1.1 (``step.body_encoder``)."""
        merged = merge_headers(base_headers(self.host_header), common, step.headers,
                               json=step.json is not None)
        method = step.method
        fields: list = [self._methods.get(method) or (b":method", method.encode("latin-1")),
                        *self._prefix, None]
        dynamic: list = []
        if step.path.static:
            fields[3] = (b":path", quote_path(step.path.render({})).encode("latin-1"))
        else:
            render = step.path.render
            dynamic.append((3, b":path", lambda v: quote_path(render(v))))
        for k, value in merged:
            name = self._name(k)
            if not name:
                continue
            if isinstance(value, str) or value.static:
                text = value if isinstance(value, str) else value.render({})
                fields.append((name, text.encode("latin-1")))
            else:
                dynamic.append((len(fields), name, value.render))
                fields.append(None)
        return H2Fields(fields, dynamic), step.body_encoder()

    def has_idle(self) -> bool:
        """A connection takes another stream now (``start`` will not need to dial)."""
        for conn in self.conns:
            if conn.free():
                return True
        return False

    def start(self, data: tuple[list, bytes | None], head_only: bool, waiter: Any) -> None:
        """A stream on a connection that takes one (``has_idle()`` said there is one);
        ``waiter`` gets (status, Head, body) or the failure, as on ``Pool.start``.
        ``data``: (fields, body) as ``H2Client.encode`` gives them."""
        for conn in self.conns:
            if conn.free():
                conn.start(_Stream(waiter, data[0], data[1]))
                return
        raise Reset("no HTTP/2 connection takes a stream now")

    async def request(self, data: tuple[list, bytes | None], head_only: bool) -> tuple[int, Head, bytes]:
        """``start``, dialling when no connection takes a stream, awaited."""
        conn = next((c for c in self.conns if c.free()), None)
        if conn is None:
            conn = await self._new_conn()
        fut = self.loop.create_future()
        conn.start(_Stream(fut, data[0], data[1]))
        return await fut

    async def exchange(self, method: str, path: str, headers: list[tuple[str, str]],
                       data: bytes | None) -> tuple[int, Head, bytes]:
        fields = [self._methods.get(method) or (b":method", method.encode("latin-1")),
                  *self._prefix, (b":path", path.encode("latin-1"))]
        for k, v in headers:
            name = self._name(k)
            if name:
                fields.append((name, v.encode("latin-1")))
        if data is not None or method in ("POST", "PUT", "PATCH"):
            fields.append((b"content-length", str(len(data or b"")).encode()))
        return await self.request((fields, data), method == "HEAD")

    def again(self, st: _Stream) -> None:
        """A stream the server refused (never processed): sent again on a connection that
        takes it, or a new one, until the plan's timeout (then ``timeout``)."""
        if _now() - st.first >= self.timeout:
            if not st.waiter.done():
                st.waiter.set_exception(TimeoutError("refused by the server until the plan's timeout"))
            return
        for conn in self.conns:
            if conn.free():
                try:
                    conn.start(st)
                except Exception as exc:
                    if not st.waiter.done():
                        st.waiter.set_exception(exc)
                return
        task = self.loop.create_task(self._again_later(st))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _again_later(self, st: _Stream) -> None:
        try:
            conn = await self._new_conn()
            conn.start(st)
        except Exception as exc:  # the request's outcome, as its first dial's would be
            if not st.waiter.done():
                st.waiter.set_exception(exc)

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
        for task in list(self._later):
            task.cancel()
        for conn in list(self.conns):
            conn.close()
        await super().close()

