"""HTTP/2 for flows on asyncio protocols: the sans-I/O ``h2`` library over stdlib TLS.

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
import h2.events
import h2.exceptions
import h2.settings

from schemas.plan import Plan
from services.common.identity import USER_AGENT
from services.generator.pool import Pool, Reset

_now = time.monotonic
_DROP = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                   "upgrade", "te"})  # connection-specific: not sent over HTTP/2 (RFC 9113 8.2.2)


class _Stream:
    __slots__ = ("fut", "sent", "status", "headers", "body")

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut
        self.sent = _now()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []


class _H2Conn(asyncio.Protocol):
    """One HTTP/2 connection carrying many streams."""

    def __init__(self, pool: H2Pool) -> None:
        self.pool = pool
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="latin-1", validate_inbound_headers=False))
        self.streams: dict[int, _Stream] = {}
        self.max_streams = 100  # until the server's SETTINGS say
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.fut = None  # the pool's sweep looks at streams, not this

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def free(self) -> bool:
        return not self.closed and len(self.streams) < self.max_streams

    def start(self, headers: list[tuple[str, str]], body: bytes | None, fut: asyncio.Future) -> None:
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
        self.transport.write(h.data_to_send())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(Reset(f"HTTP/2 protocol error: {exc}"))
            self.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    for k, v in ev.headers:
                        if k == ":status":
                            st.status = int(v)
                        elif not k.startswith(":"):
                            st.headers.append((k, v))
            elif isinstance(ev, h2.events.DataReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st.body.append(ev.data)
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None and not st.fut.done():
                    st.fut.set_result((st.status, st.headers, b"".join(st.body)))
            elif isinstance(ev, h2.events.StreamReset):
                self._fail_stream(ev.stream_id, Reset(f"stream reset by the server ({ev.error_code})"))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                got = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                if got is not None:
                    self.max_streams = max(int(got.new_value), 1)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                # streams above the last one the server took were never processed
                self._fail_all(Reset("the server ended the HTTP/2 connection (GOAWAY)"))
                self.closed = True
            # InformationalResponseReceived (1xx): skipped, the final response follows
        out = self.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

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
    """HTTP/2 connections to the plan's https target, streams multiplexed on them."""

    protocol = "h2"

    def __init__(self, plan: Plan, ssl_context: ssl.SSLContext, target: str | None = None) -> None:
        ctx = ssl_context
        ctx.set_alpn_protocols(["h2"])
        super().__init__(plan, ctx, target)
        self.conn_factory = _H2Conn  # type: ignore[assignment]
        self.conns: list[_H2Conn] = []
        self._dialing: asyncio.Task | None = None

    async def exchange(self, method: str, path: str, headers: list[tuple[str, str]],
                       data: bytes | None) -> tuple[int, list, bytes]:
        fields = [(":method", method), (":scheme", "https"), (":authority", self.host_header),
                  (":path", path), ("user-agent", USER_AGENT)]
        fields += [(k.lower(), v) for k, v in headers if k.lower() not in _DROP]
        if data is not None or method in ("POST", "PUT", "PATCH"):
            fields.append(("content-length", str(len(data or b""))))
        conn = next((c for c in self.conns if c.free()), None)
        if conn is None:
            conn = await self._new_conn()
        fut = self.loop.create_future()
        conn.start(fields, data, fut)
        return await fut

    async def _new_conn(self) -> _H2Conn:
        # users arriving together share one dial, not one connection each
        if self._dialing is None or self._dialing.done():
            self._dialing = self.loop.create_task(asyncio.wait_for(self._dial(), self.timeout))
        conn = await asyncio.shield(self._dialing)
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
