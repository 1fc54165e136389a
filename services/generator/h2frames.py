"""HTTP/2 messages as bytes: a request's fields and frames, a response's frames and head.

What ``h2pool.H2Pool`` sends and reads, built here in a few lines where h2 would build
objects per frame (each shortcut measured, docs/engine.md "HTTP/2"). h2 (pinned,
pyproject.toml; this follows 4.4.1) keeps the connection's state: streams, windows,
settings, HPACK tables; the pool moves the bytes.

* A request: ``H2Fields`` (a flow step's fields compiled once per pool, templated values
  rendered per request) and ``H2Client.encode`` give its header list, ``[(name, value)]``
  of bytes, pseudo-headers first, names lower-case, connection-specific ones (``DROP``)
  left out (RFC 9113 8.2.2, 8.3.1); ``ClientConnection.send_request`` HPACK-encodes it and
  writes its frames: HEADERS (then CONTINUATIONs when the block exceeds the peer's
  SETTINGS_MAX_FRAME_SIZE, END_HEADERS on the last; RFC 9113 6.2, 6.10) and one DATA
  frame with END_STREAM (6.1) when the body fits a frame and both flow-control windows
  (5.2); a larger body goes by h2's ``send_data``.
* Every frame starts with a 9-byte header (RFC 9113 4.1): length (24 bits, bytes of the
  payload), type (8), flags (8), a reserved bit and the stream id (31).
* A response: ``ResponseFrames`` cuts DATA, whole HEADERS, RST_STREAM (6.4: a 4-byte
  error code) and WINDOW_UPDATE (6.9: a 31-bit increment, in bytes) frames from the read
  bytes into hyperframe's frame objects; ``response_head`` turns the decoded header list
  into (status from ``:status`` (8.3.2), a ``head.Head``, its size in bytes as
  SETTINGS_MAX_HEADER_LIST_SIZE counts it: name + value + 32 per field, 6.5.2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import h2.connection
import h2.errors
from h2.connection import AllowedStreamIDs, ConnectionInputs
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.frame_buffer import FrameBuffer
from h2.stream import StreamInputs
from hyperframe.flags import Flags
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from services.generator.client import Client
from services.generator.head import Head

DROP = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                  "upgrade", "te"})  # connection-specific: not sent over HTTP/2 (RFC 9113 8.2.2)

# h2 checks and rewrites nothing we build ourselves: the pool lowercases names, drops the
# connection-specific ones and puts the pseudo-headers first (docs/engine.md, "HTTP/2")
CONFIG = {"client_side": True, "header_encoding": None,
          "validate_outbound_headers": False, "normalize_outbound_headers": False,
          "validate_inbound_headers": False, "normalize_inbound_headers": False}
_FRAME = struct.Struct(">BHBBL").pack  # a frame's 9-byte header: length (24 bits), type, flags, stream


_DATA_VALID = {f.name for f in DataFrame.defined_flags}
_HEADERS_VALID = {f.name for f in HeadersFrame.defined_flags}
_NO_FLAGS: set[str] = set()
_new = object.__new__


class ResponseFrames(FrameBuffer):
    """h2's frame buffer, with the frames a response is made of built in a few lines.

    A DATA frame, or a HEADERS frame holding a whole head (END_HEADERS), neither padded
    nor with priority data, and a RST_STREAM or WINDOW_UPDATE, is cut from the buffer
    here and made without hyperframe's constructors (its flag set, padding and priority
    fields, each by a chain of ``__init__``s: ~15 % of the CPU); every other frame,
    anything unusual (padding, CONTINUATION, a stream id 0 where one is needed, an
    overlong frame) and every error is h2's own path.
    The frames are the ones hyperframe makes: the same class and attributes
    (``tests/unit/test_h2_frames.py`` compares them on random frame streams)."""

    def __next__(self):
        data = self._data
        if len(data) < 9 or self._headers_buffer:
            return super().__next__()
        kind, flags = data[3], data[4]
        length = (data[0] << 16) | (data[1] << 8) | data[2]
        sid = ((data[5] & 0x7F) << 24) | (data[6] << 16) | (data[7] << 8) | data[8]
        if kind > 1:
            # RST_STREAM (nginx resets each POST's stream once it has answered) and
            # WINDOW_UPDATE of 4 bytes, valid: no flags to parse, one number each
            if length != 4 or (kind != 3 and kind != 8) or len(data) < 13 or (kind == 3 and not sid):
                return super().__next__()
            value = int.from_bytes(data[9:13], "big")
            if kind == 8:
                value &= 0x7FFFFFFF
                if not value:
                    return super().__next__()  # h2's error
            del data[:13]
            f = _new(RstStreamFrame if kind == 3 else WindowUpdateFrame)
            fl = _new(Flags)
            fl._valid_flags, fl._flags = _NO_FLAGS, set()
            f.stream_id, f.flags, f.body_len = sid, fl, 4
            if kind == 3:
                f.error_code = value
            else:
                f.window_increment = value
            return f
        if flags & 0x28 or (kind == 1 and not flags & 0x4):  # PADDED, PRIORITY; no END_HEADERS
            return super().__next__()
        if not sid or length > self.max_frame_size:
            return super().__next__()  # h2's errors
        end = 9 + length
        if len(data) < end:
            raise StopIteration
        body = bytes(data[9:end])
        del data[:end]
        named = {"END_STREAM"} if flags & 0x1 else set()
        fl = _new(Flags)
        fl._flags = named
        f = _new(HeadersFrame if kind else DataFrame)
        if kind:
            named.add("END_HEADERS")
            fl._valid_flags = _HEADERS_VALID
            f.depends_on, f.stream_weight, f.exclusive = 0, 0, False
        else:
            fl._valid_flags = _DATA_VALID
        f.stream_id, f.flags, f.body_len, f.data, f.pad_length = sid, fl, length, body, 0
        return f


class ClientConnection(h2.connection.H2Connection):
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

    def send_request(self, sid: int, fields: list[tuple[bytes, bytes]], data: bytes | None) -> bool:
        """``send_headers`` + ``send_data`` without h2's frame objects: the same state
        changes on the connection and the new stream (its state machine, windows, request
        method), the frames' bytes written here. h2 built a HeadersFrame, a DataFrame,
        their flags and a header list copy per request and serialised them (~a quarter
        of the CPU). False: the body is beyond one DATA frame or a window, and only the
        head went (the caller sends the body by h2's ``send_data``)."""
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self._begin_new_stream(sid, AllowedStreamIDs.ODD)
        machine = stream.state_machine
        machine.process_input(StreamInputs.SEND_HEADERS)
        stream.request_method = fields[0][1]  # HEAD: a response with no body (h2's content-length check)
        block = self.encoder.encode(fields)
        whole = not data or len(data) <= min(self.max_outbound_frame_size, self.outbound_flow_control_window,
                                             stream.outbound_flow_control_window)
        flags = 0x4 if data else 0x5  # END_HEADERS (+ END_STREAM without a body)
        if not data:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        size, out = len(block), self._data_to_send
        limit = self.max_outbound_frame_size
        if size <= limit:
            out += _FRAME(size >> 16, size & 0xFFFF, 0x1, flags, sid)
            out += block
        else:  # HEADERS, then CONTINUATIONs; END_HEADERS on the last, END_STREAM on the first
            for at in range(0, size, limit):
                piece = block[at:at + limit]
                last = at + limit >= size
                kind, f = (0x1, flags & 0x1) if at == 0 else (0x9, 0)
                out += _FRAME(len(piece) >> 16, len(piece) & 0xFFFF, kind, f | (0x4 if last else 0), sid)
                out += piece
        if not whole:
            return False
        if data:
            self.state_machine.process_input(ConnectionInputs.SEND_DATA)
            machine.process_input(StreamInputs.SEND_DATA)
            machine.process_input(StreamInputs.SEND_END_STREAM)
            size = len(data)
            stream.outbound_flow_control_window -= size
            self.outbound_flow_control_window -= size
            out += _FRAME(size >> 16, size & 0xFFFF, 0x0, 0x1, sid)
            out += data
        return True

    def forget_ended(self, sid: int) -> None:
        """A stream both sides ended leaves h2's table now, as h2's own walk would drop it
        (``_open_streams``): the walk then finds only streams in flight."""
        stream = self.streams.get(sid)
        if stream is not None and stream.closed:
            del self.streams[sid]
            self._closed_streams[sid] = stream.closed_by

    def _receive_frame(self, frame):
        # h2's own, less its first line: ``logger.trace("Received frame: %s", repr(frame))``,
        # a repr of every frame (its flags, a hex dump of its data) built for a log that
        # does nothing (~5 % of the CPU). h2 is pinned (pyproject.toml): this follows 4.4.1.
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = h2.errors.ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _receive_rst_stream_frame(self, frame):
        # h2's own, less the exception it raises and catches for a stream already gone
        # from its table (nginx resets each POST's stream once it has answered it)
        if frame.stream_id in self.streams:
            return super()._receive_rst_stream_frame(frame)
        return [], self.state_machine.process_input(ConnectionInputs.RECV_RST_STREAM)

    def _receive_goaway_frame(self, frame):
        # h2 refuses every frame after a GOAWAY, but the streams up to its last_stream_id
        # are still answered (RFC 9113 6.8; nginx sends one at keepalive_requests, then
        # finishes them): the connection stays open for them, and takes no new stream
        state = self.state_machine.state
        out = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return out


HEADS: dict[tuple, tuple[int, Head, int]] = {}
NO_HEAD = Head(b"HTTP/2 0")


def response_head(fields: tuple) -> tuple[int, Head, int]:
    """A response head as h2 gives it (bytes) → (status, its fields as a ``Head``, HPACK size).

    The ``Head`` is the HTTP/1.1 pool's (fields read only when asked for, ``Client.received``
    searching it for Set-Cookie and Content-Encoding), over the head written as HTTP/1.1
    lines. Remembered (up to 256 heads of ≤ 8 KB) and shared by the responses that
    repeat it: a server answers the same few heads over and over, so a response costs
    one lookup, not a decode per field."""
    status, lines, size = 0, [b"HTTP/2 "], 0
    for k, v in fields:
        size += len(k) + len(v) + 32
        if k == b":status":
            status = int(v)
            lines[0] += v
        elif k[:1] != b":":
            lines.append(k + b": " + v)
    out = (status, Head(b"\r\n".join(lines)), size)
    if size <= 8192:
        if len(HEADS) >= 256:
            HEADS.clear()
        HEADS[fields] = out
    return out


class H2Fields:
    """A flow step's HTTP/2 fields compiled for one pool (``H2Pool.compile``): ``render``
    gives (fields, templated values as text); ``H2Client.encode`` encodes those (a value
    beyond latin-1 fails the request there, as on HTTP/1.1) and adds Cookie and
    Content-Length."""

    __slots__ = ("fields", "dynamic")

    def __init__(self, fields: list, dynamic: list[tuple[int, bytes, Callable[[dict], str]]]) -> None:
        self.fields, self.dynamic = fields, dynamic

    def render(self, v: dict) -> tuple[list, list]:
        return self.fields, [(i, name, render(v)) for i, name, render in self.dynamic]


class H2Client(Client):
    """A virtual user on HTTP/2: ``Client`` with its encoded requests as h2 fields."""

    __slots__ = ()

    def encode(self, head: tuple[list, list], body: bytes | None) -> tuple[list, bytes | None]:  # type: ignore[override]
        fields, texts = head
        fields = fields.copy()
        for i, name, text in texts:
            fields[i] = (name, text.encode("latin-1"))
        jar = self.jar
        if jar:
            fields.append((b"cookie", "; ".join([f"{k}={v}" for k, v in jar.items()]).encode("latin-1")))
        if body is not None:
            fields.append((b"content-length", str(len(body)).encode()))
        return fields, body or None  # an empty body: HEADERS with END_STREAM, as exchange sends it
