"""The flow engine with no sockets: nginx's answers to the 3-step flow, canned.

``python -m bench.flows ORIGIN --flow three --canned`` runs the flow engine exactly as
the bench's flow row does, but each connection is a loopback whose ``write`` answers
with the bytes ``bench.nginx.FlowNginx`` sends for that path, delivered by the loop on
its next pass (as a read would be). What is left per request is the engine's own
Python (template render, encoding, parse, checks, extraction, recording) and uvloop's
callback machinery: the part of the flow's cost that is ours, steady enough to compare
before/after on a loaded machine where the socket rows move by 1.5x.
"""

from __future__ import annotations

import asyncio

from services.generator import flows
from services.generator.pool import Pool

_HEAD = (b"HTTP/1.1 %s\r\nServer: nginx/1.22.1\r\nDate: Mon, 30 Nov 2026 06:22:15 GMT\r\n"
         b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s")


def _response(status: bytes, body: bytes) -> bytes:
    return _HEAD % (status, len(body), body)


ANSWERS = {
    b"/login": _response(b"200 OK", b'{"token":"t0k3n-abc"}'),
    b"/api/me": _response(b"200 OK", b'{"user":"ann","plan":"pro"}'),
    b"/api/orders": _response(b"201 Created", b'{"id":17,"status":"accepted"}'),
}


class _Loopback:
    """A transport whose write is answered (FlowNginx's bytes for the request's path)."""

    def __init__(self, conn, loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.loop = conn, loop

    def write(self, data: bytes) -> None:
        path = data[data.index(b" ") + 1:data.index(b" HTTP/1.1")]
        self.loop.call_soon(self._read, ANSWERS[path])

    def _read(self, data: bytes) -> None:
        """What the loop does for a read: into the protocol's buffer, then parsed."""
        n = len(data)
        self.conn.get_buffer(n)[:n] = data
        self.conn.buffer_updated(n)

    def abort(self) -> None:
        pass

    close = abort

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name, default=None):
        return default


class CannedPool(Pool):
    async def _dial(self):
        conn = self.conn_factory(self)
        conn.connection_made(_Loopback(conn, self.loop))
        return conn


async def _choose(plan) -> Pool:
    return CannedPool(plan)


def install() -> None:
    """Every flow engine made from now on in this process talks to the canned nginx."""
    flows.choose = _choose
