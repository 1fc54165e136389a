"""Our own HTTP/2 request frames (``h2frames.ClientConnection.send_request``), checked against h2.

``send_request`` writes a request's HEADERS (and CONTINUATIONs) and DATA frames itself,
making the state changes h2's ``send_headers`` + ``send_data`` make. Side by side with
h2's own path on a twin connection it must write the same bytes and leave the same
state (stream states, windows, the stream table), and an h2 server must read requests
from those bytes exactly as sent — across large heads, small frame sizes and bodies.
"""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import pytest

from services.generator.h2frames import CONFIG, ClientConnection
from services.generator.hpack_fast import FieldEncoder


def _client() -> ClientConnection:
    c = ClientConnection(h2.config.H2Configuration(**CONFIG), {})
    c.encoder = FieldEncoder()  # type: ignore[assignment]
    c.initiate_connection()
    return c


def _request(rng: random.Random) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    method = rng.choice([b"GET", b"POST", b"HEAD", b"PUT"])
    fields = [(b":method", method), (b":scheme", b"https"), (b":authority", b"shop.test"),
              (b":path", f"/item/{rng.randrange(50)}".encode()), (b"accept", b"*/*"),
              (b"authorization", f"Bearer t-{rng.randrange(9)}".encode())]
    if rng.random() < 0.1:
        fields.append((b"x-big", b"v" * rng.randrange(17_000, 40_000)))  # CONTINUATION frames
    data = None
    if method in (b"POST", b"PUT"):
        data = rng.randbytes(rng.choice([0, 1, 300, 9000]))
        fields.append((b"content-length", str(len(data)).encode()))
    return fields, data or None


def _settings(server: h2.connection.H2Connection, **kw) -> bytes:
    server.update_settings({getattr(h2.settings.SettingCodes, k): v for k, v in kw.items()})
    return server.data_to_send()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("frame_size", [16_384, 16_777_215])
def test_own_frames_are_h2s_frames_and_a_server_reads_them(frame_size: int) -> None:
    rng = random.Random(frame_size)
    ours, theirs = _client(), _client()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    hello = server.data_to_send() + _settings(server, MAX_FRAME_SIZE=frame_size)
    for c in (ours, theirs):
        c.receive_data(hello)
    server.receive_data(ours.data_to_send())
    theirs.data_to_send()
    server.data_to_send()
    for _ in range(400):
        fields, data = _request(rng)
        sid = ours.get_next_available_stream_id()
        assert ours.send_request(sid, fields, data)
        theirs.send_headers(sid, fields, end_stream=not data)
        if data:
            theirs.send_data(sid, data, end_stream=True)
        wrote = ours.data_to_send()
        assert wrote == theirs.data_to_send()
        a, b = ours.streams[sid], theirs.streams[sid]
        assert (a.state_machine.state, a.request_method, a.outbound_flow_control_window) == (
            b.state_machine.state, b.request_method, b.outbound_flow_control_window)
        assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
        assert ours.state_machine.state == theirs.state_machine.state
        events = server.receive_data(wrote)
        got = next(e for e in events if isinstance(e, h2.events.RequestReceived))
        assert got.stream_id == sid and list(got.headers) == fields
        body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        assert body == (data or b"") and any(isinstance(e, h2.events.StreamEnded) for e in events)
        # the server answers; the stream, ended on both sides, leaves the table at once
        server.send_headers(sid, [(b":status", b"200")], end_stream=True)
        if data:
            server.acknowledge_received_data(len(data), sid)
        answer = server.data_to_send()
        for c in (ours, theirs):
            c.receive_data(answer)
        ours.forget_ended(sid)
        assert sid not in ours.streams and ours.open_outbound_streams == 0


def test_a_body_beyond_a_frame_is_left_to_h2_after_the_head() -> None:
    ours, theirs = _client(), _client()
    fields = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/"),
              (b"content-length", b"16385")]
    assert not ours.send_request(1, fields, b"x" * 16_385)  # one frame at the default SETTINGS_MAX_FRAME_SIZE
    theirs.send_headers(1, fields)
    assert ours.data_to_send() == theirs.data_to_send()
    assert ours.streams[1].state_machine.state == theirs.streams[1].state_machine.state


def _frame(rng: random.Random, sid: int) -> bytes:
    """One frame a server might send, serialised by hyperframe."""
    from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame,
                                  WindowUpdateFrame)

    kind = rng.choice(["data", "data", "headers", "headers", "split", "ping", "window", "rst"])
    if kind == "data":
        f = DataFrame(sid, rng.randbytes(rng.choice([0, 1, 50, 3000])))
        if rng.random() < 0.5:
            f.flags.add("END_STREAM")
        if rng.random() < 0.2:
            f.flags.add("PADDED")
            f.pad_length = rng.randrange(1, 20)
        return f.serialize()
    if kind in ("headers", "split"):
        block = rng.randbytes(rng.choice([1, 40, 500]))
        f = HeadersFrame(sid, block[:20] if kind == "split" else block)
        for flag, p in (("END_STREAM", 0.5), ("PRIORITY", 0.2), ("PADDED", 0.2)):
            if rng.random() < p:
                f.flags.add(flag)
        if "PADDED" in f.flags:
            f.pad_length = rng.randrange(1, 20)
        if "PRIORITY" in f.flags:
            f.depends_on, f.stream_weight, f.exclusive = rng.randrange(1, 99), rng.randrange(256), rng.random() < 0.5
        if kind == "headers":
            f.flags.add("END_HEADERS")
            return f.serialize()
        rest = ContinuationFrame(sid, block[20:])
        rest.flags.add("END_HEADERS")
        return f.serialize() + rest.serialize()
    if kind == "ping":
        return PingFrame(0, rng.randbytes(8)).serialize()
    if kind == "window":
        return WindowUpdateFrame(rng.choice([0, sid]), rng.randrange(1, 1 << 20)).serialize()
    return RstStreamFrame(sid, rng.randrange(14)).serialize()


def _seen(f) -> tuple:
    names = ("stream_id", "body_len", "data", "pad_length", "depends_on", "stream_weight", "exclusive",
             "error_code", "window_increment", "opaque_data")
    return (type(f), sorted(f.flags), *(getattr(f, n, None) for n in names),
            getattr(f, "flow_controlled_length", None))


@pytest.mark.timeout(30)
def test_the_frame_buffer_gives_hyperframes_frames_whatever_the_reads():
    """``h2frames.ResponseFrames`` builds DATA and whole HEADERS frames itself: fed the same bytes
    in random reads, it gives what h2's own ``FrameBuffer`` gives, frame for frame."""
    from h2.frame_buffer import FrameBuffer

    from services.generator.h2frames import ResponseFrames

    rng = random.Random(3)
    wire = b"".join(_frame(rng, rng.choice([1, 3, 5, 2**31 - 1])) for _ in range(3000))
    results = []
    for buf in (FrameBuffer(), ResponseFrames()):
        buf.max_frame_size = 16_384
        got, at = [], 0
        while at < len(wire):
            step = rng.choice([1, 9, 10, 100, 4096, 70_000])
            buf.add_data(wire[at:at + step])
            at += step
            got += [_seen(f) for f in buf]
        results.append(got)
    assert len(results[0]) > 2500 and results[0] == results[1]


def test_a_reset_of_a_stream_already_gone_is_what_h2_makes_of_it():
    """nginx resets each POST's stream after answering it: ``ClientConnection`` skips h2's
    exception for a stream no longer in its table, with the same outcome as h2's own."""
    from hyperframe.frame import RstStreamFrame

    plain = h2.connection.H2Connection(h2.config.H2Configuration(**CONFIG))
    plain.initiate_connection()
    ours = _client()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    hello = server.data_to_send()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    outcomes = []
    for c in (plain, ours):
        c.receive_data(hello)
        c.send_headers(1, fields, end_stream=True)
        c.send_headers(3, fields, end_stream=True)
        peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        peer.initiate_connection()
        peer.data_to_send()
        peer.receive_data(c.data_to_send())
        peer.send_headers(1, [(b":status", b"200")], end_stream=True)
        c.receive_data(peer.data_to_send())
        if c is ours:
            ours.forget_ended(1)
        # stream 1 ended (gone from ours' table, closed in plain's), 3 in flight, 9 never opened
        events = [type(e).__name__ for sid in (1, 3, 9)
                  for e in c.receive_data(RstStreamFrame(sid, 0).serialize())]
        outcomes.append((events, c.data_to_send(), c.state_machine.state, 3 in c.streams and c.streams[3].closed))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ["StreamReset"]  # only the stream in flight
