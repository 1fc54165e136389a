"""HTTP/1.1 on the wire: dialling the target and a keep-alive connection protocol.

The target's address, its TLS settings and every address a name has (tried in turn) are
here; so is ``Connection``, which writes bytes encoded beforehand (``encode.py``: once
per plan, templates rendered per request) with one ``transport.write``. Responses are
parsed by httptools (llhttp, the parser Node.js uses). The protocol only reports events
to its owner (the engine); it keeps no statistics itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import httptools

from schemas.plan import Plan

MAX_CHECK_BODY = 1 << 20  # bytes kept for a body_contains check; the rest is counted only
CHECK_BUDGET = 64 << 20  # all connections' check buffers together: many connections keep less
MIN_CHECK_BODY = 64 << 10  # ... but never less than this each
MAX_HEAD = 64 << 10  # status line + headers; more is a "too_large" error, never buffered
READ_SIZE = 256 << 10  # the engine's read buffer, shared by its connections


def target_address(plan: Plan) -> tuple[str, int, str]:
    """(host, port, Host header) of the plan's target."""
    parts = urlsplit(plan.target)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return host, port, host_header


def tls_context(plan: Plan) -> ssl.SSLContext | None:
    """The TLS settings of an ``https://`` target (None: plain HTTP): the virtual users'
    (``transport.ssl_context``: certificates checked unless ``insecure``), offering only
    ``http/1.1`` by ALPN. Made once per engine: a context per connection would load the
    system's CA certificates each time."""
    if urlsplit(plan.target).scheme != "https":
        return None
    from services.generator.transport import ssl_context  # only https plans pay the import

    ctx = ssl_context(plan)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


LOOPBACKS = ("127.0.0.1", "::1")


async def resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
    """Every address ``host`` has, in the order to try them (docs/engine.md).

    ``localhost`` (and ``*.localhost``) is both loopbacks whatever the resolver says
    (RFC 6761, as curl and browsers do): a server listening on ``::1`` only is reached.
    """
    name = host.lower().rstrip(".")
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = list(dict.fromkeys(info[4][0] for info in infos))
    except OSError:
        if name != "localhost" and not name.endswith(".localhost"):
            raise
        found = []
    if name == "localhost" or name.endswith(".localhost"):
        found += [a for a in LOOPBACKS if a not in found]
    return found or [host]


T = TypeVar("T")


class Addresses:
    """A name's addresses (``resolve``), resolved once and tried in turn for each new
    connection; the one that took a connection is tried first from then on. The fast
    engine's connections and the pool's (``pool.Pool``, its proxy's name when it has
    one) are dialed so."""

    __slots__ = ("loop", "host", "port", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop, self.host, self.port = loop, host, port
        self._task: asyncio.Task[list[str]] | None = None

    async def connect(self, dial: Callable[[str], Awaitable[T]]) -> T:
        """``dial(address)``'s connection at the first address that takes one; the last
        address's ``OSError`` when none does."""
        if self._task is None:
            self._task = self.loop.create_task(resolve(self.loop, self.host, self.port))
        try:
            addrs = await asyncio.shield(self._task)
        except OSError:
            self._task = None  # a resolver failure is not kept: the next connect asks again
            raise
        error: OSError | None = None
        for addr in list(addrs):
            try:
                conn = await dial(addr)
            except OSError as exc:
                error = exc
                continue
            if addrs[0] != addr and addr in addrs:
                addrs.remove(addr)
                addrs.insert(0, addr)
            return conn
        raise error or OSError(f"no address for {self.host}")


def check_cap(connections: int) -> int:
    """Body bytes each connection keeps for a check: 1 MB, less when many connections
    together would exceed ``CHECK_BUDGET`` (bounded memory whatever the bodies)."""
    return max(MIN_CHECK_BODY, min(MAX_CHECK_BODY, CHECK_BUDGET // max(connections, 1)))


def decode_body(body: bytes, encoding: bytes | None) -> bytes:
    """A body as its ``Content-Encoding`` (gzip, deflate, br) made it, for checks and
    extraction only (bytes are counted as received). A body cut at the check cap
    decodes as far as it goes; one that does not decode is searched as it came."""
    if not encoding or encoding == b"identity":
        return body
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompressobj(wbits=31).decompress(body)
        if encoding == b"deflate":  # zlib-wrapped, as the RFC says, or raw, as some send
            try:
                return zlib.decompressobj().decompress(body)
            except zlib.error:
                return zlib.decompressobj(wbits=-15).decompress(body)
        if encoding == b"br":
            import brotli  # only plans that check a br-encoded body pay for the import

            return brotli.Decompressor().process(body)
    except Exception:  # a broken or truncated stream: what could be decoded is not there
        return body
    return body


HEAD_DONE = "head_done"  # not an error: the head of a response to HEAD is all of it


class BrokenResponse(Exception):
    """Raised from a parser callback to stop parsing: the response is this error kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


class Owner(Protocol):
    """What a ``Connection`` needs from whoever drives it: the fast engine
    (``engine.Engine``) or the flow engine's keep-alive pool (``pool.Pool``).

    ``read_buffer`` is the one buffer every connection of the owner reads into (each
    read is parsed before the loop does the next); ``heads[name_i]`` says the request
    sent as ``name_i`` was a HEAD (None: there are none); the three events are the
    only way a connection reports anything, called in the connection's stack.
    """

    read_buffer: memoryview
    heads: list[bool] | tuple[bool, ...] | None
    max_conns: int  # CheckedConnection: its share of the check budget
    want_body: list[bool]  # CheckedConnection: which requests' bodies a check reads

    def on_response(self, conn: Connection) -> None:
        """A whole response (status, keep_alive and, per class, body or head kept)."""

    def on_broken(self, conn: Connection, kind: str) -> None:
        """A response that cannot be one ("too_large", "other"): the request fails with
        ``kind`` and the connection is done for."""

    def on_lost(self, conn: Connection) -> None:
        """The connection closed (``conn.busy``: with a request unanswered, a "reset")."""


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection carrying one request at a time.

    A ``BufferedProtocol``: the loop reads straight into the engine's one read
    buffer (each read is parsed before the next one happens), which is fed to llhttp
    as a memoryview, so a response costs no bytes object of ours. Memory stays bounded whatever the target sends: the head may not
    exceed ``MAX_HEAD`` bytes ("too_large"); a body is skipped by llhttp, or, in a
    ``CheckedConnection``, only its first ``check_cap`` bytes (≤ 1 MB) are kept.
    """

    __slots__ = (
        "owner", "transport", "parser", "view", "busy", "name_i", "intended", "sent",
        "status", "body", "keep_alive", "closed", "want_body", "body_len", "head_len",
        "head_done", "last_read", "interim", "broken", "encoding", "heads",
    )

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.view = owner.read_buffer  # shared: each read is parsed before the next
        self.busy = False
        self.name_i = -1
        self.intended = 0.0
        self.sent = 0.0
        self.status = 0
        self.body: list[bytes] | None = None
        self.body_len = 0
        self.head_len = 0
        self.head_done = False
        self.want_body = False
        self.keep_alive = True
        self.closed = False
        self.last_read = 0  # bytes of the read being parsed (bounds the head)
        self.interim = False  # a 1xx (100 Continue, 103 Early Hints) being skipped
        self.encoding: bytes | None = None  # Content-Encoding (CheckedConnection only)
        self.heads = owner.heads  # which requests are HEADs (None: the plan has none)

    # --- asyncio.BufferedProtocol ------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.last_read = nbytes
        try:
            self.parser.feed_data(self.view[:nbytes])
        except httptools.HttpParserUpgrade:  # 101 Switching Protocols: never asked for
            self.owner.on_broken(self, "other")
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            kind = cause.kind if isinstance(cause, BrokenResponse) else "other"
            if kind is HEAD_DONE:
                self.parser = httptools.HttpResponseParser(self)  # the stopped one is spent
                self.owner.on_response(self)
            else:
                self.owner.on_broken(self, kind)
            return
        except httptools.HttpParserError:
            self.owner.on_broken(self, "other")
            return
        if not self.head_done and self.busy:
            # a head still unfinished after this read: bound it (slowloris, junk); a request
            # sent from this read's own response callback counts none of it (send zeroes it)
            self.head_len += self.last_read
            if self.head_len > MAX_HEAD:
                self.owner.on_broken(self, "too_large")

    def eof_received(self) -> bool:
        # a body delimited by the end of the connection ends here (llhttp needs EOF)
        if self.busy and self.head_done and not self.keep_alive:
            self.owner.on_response(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.on_lost(self)

    # --- used by the engine -----------------------------------------------
    def send(self, name_i: int, payload: bytes, intended: float, now: float) -> None:
        # the hot path: only what every response needs (a body kept for a check is
        # CheckedConnection's, reset in its own send)
        self.busy = True
        self.name_i = name_i
        self.intended = intended
        self.sent = now
        self.head_done = False
        self.head_len = 0
        self.last_read = 0  # the read being parsed, if any, holds none of its response
        self.transport.write(payload)  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # --- httptools callbacks ----------------------------------------------
    def on_headers_complete(self) -> None:
        if self.head_len + self.last_read > MAX_HEAD and self._head_size() > MAX_HEAD:
            raise BrokenResponse("too_large")  # a big read: measure the head exactly
        parser = self.parser
        status = self.status = parser.get_status_code()
        if status < 200:  # 1xx: an interim response; the real one follows
            self.interim = True
            return
        self.keep_alive = parser.should_keep_alive()
        self.head_done = True
        if self.heads is not None and self.busy and self.heads[self.name_i]:
            # a HEAD's response has no body whatever Content-Length says, and llhttp
            # cannot be told so: stop this parser here (buffer_updated completes it)
            raise BrokenResponse(HEAD_DONE)

    def _head_size(self) -> int:
        """The head's size when it ended in this read (a read may also hold body bytes,
        and, before the head, a 1xx's)."""
        return self.head_len + self._head_end()

    def _head_end(self) -> int:
        """Where the head being parsed ends in this read: after the first "\\r\\n\\r\\n"
        from where it began (``head_len`` < 0: that offset, after a 1xx in this read);
        for a head begun in an earlier read whose "\\r\\n\\r\\n" straddles the boundary,
        after its remainder, when the next head or nothing follows (a 1xx's); the
        read's end when it goes on."""
        buf, n, head_len = self.view.obj, self.last_read, self.head_len
        if head_len > 0:
            for k in (1, 2, 3):
                if buf[:k] == b"\r\n\r\n"[4 - k:] and (k == n or buf[k:k + 5] == b"HTTP/"):  # type: ignore[index]
                    return k
        end = buf.find(b"\r\n\r\n", -head_len if head_len < 0 else 0, n)  # type: ignore[union-attr]
        return end + 4 if end >= 0 else n

    def on_message_complete(self) -> None:
        if self.head_done and self.busy:  # the common case first: a response completes
            self.owner.on_response(self)
        elif self.interim:  # the 1xx ended: the final head is bounded on its own, from
            self.interim = False  # where it begins in this read (head_len < 0: the offset)
            self.head_len = -self._head_end()
        elif not self.busy:  # a response nobody asked for: the connection is out of step
            self.owner.on_broken(self, "other")


class CheckedConnection(Connection):
    """A connection whose responses may need their body (a ``body_contains`` check).

    A separate class because httptools calls only the callbacks that exist: without
    ``on_body`` a body is skipped inside llhttp, never turned into bytes objects
    (~0.2 µs a response), so plans without body checks use the base class.
    """

    __slots__ = ("check_cap",)

    def __init__(self, owner: Owner) -> None:
        super().__init__(owner)
        self.check_cap = check_cap(owner.max_conns)

    def send(self, name_i: int, payload: bytes, intended: float, now: float) -> None:
        self.want_body = self.owner.want_body[name_i]
        self.body = None
        self.body_len = 0
        self.encoding = None
        Connection.send(self, name_i, payload, intended, now)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 16 and name.lower() == b"content-encoding":
            self.encoding = value.strip().lower()

    def body_bytes(self) -> bytes:
        """The kept body, decoded for checks."""
        return decode_body(b"".join(self.body or ()), self.encoding)

    def on_body(self, body: bytes) -> None:
        if self.want_body:
            room = self.check_cap - self.body_len
            if room > 0:
                if self.body is None:
                    self.body = []
                self.body.append(body if len(body) <= room else body[:room])
        self.body_len += len(body)


SMALL_READ = 16 << 10  # a read this short is kept whole for its head (no search)


def final_head_end(buf: bytes | bytearray, n: int) -> int:
    """Where the final (non-1xx) head ends in a read that begins with a response's head."""
    pos = 0
    while True:
        end = buf.find(b"\r\n\r\n", pos, n)
        if end < 0:
            return n
        status = buf.find(b" ", pos, end) + 1
        if buf[status:status + 1] != b"1":
            return end + 4
        pos = end + 4  # a 1xx interim head: the final one follows


class FullConnection(Connection):
    """A connection whose responses a flow step reads whole (``pool.Pool``): the bytes
    of the response's head, for ``head.Head`` to parse only when something asks for a
    field, and the whole body (checks, extraction; decoded by ``client.Client``).

    A separate class, as ``CheckedConnection`` is, so that the fast engine's parser has
    no ``on_body``. The head costs no ``on_header`` callback either (httptools would
    call it for every field): a read that holds some of a head not yet ended is copied
    out of the shared buffer before it is parsed (a usual response: its one read, up
    to the end of its head when the read is long). The owner sets ``waiter`` and
    clears ``reads`` and ``body`` before each ``send``; ``name_i`` is 1 for a HEAD
    request (the pool's ``heads``)."""

    __slots__ = ("reads", "waiter", "kept")

    def __init__(self, owner: Owner) -> None:
        super().__init__(owner)
        self.reads: list[bytes] = []  # this response's reads up to the end of its head
        self.waiter = None
        self.kept = 0  # their bytes, once a head spans reads

    def buffer_updated(self, nbytes: int) -> None:
        if self.busy and not self.head_done:
            reads = self.reads
            view = self.view
            if not reads:
                self.kept = nbytes
                if nbytes <= SMALL_READ:
                    reads.append(bytes(view[:nbytes]))
                else:  # a long read that starts the response: its head, not its body
                    reads.append(bytes(view[:final_head_end(view.obj, nbytes)]))  # type: ignore[arg-type]
            else:
                # each head is bounded by MAX_HEAD, but 1xx heads may come one after
                # another without end (100 Continue, again and again): keep at most
                # what a 64 KB head and its read hold, then the response is too large
                self.kept += nbytes
                if self.kept > MAX_HEAD + READ_SIZE:
                    self.owner.on_broken(self, "too_large")
                    return
                reads.append(bytes(view[:nbytes]))
        Connection.buffer_updated(self, nbytes)

    def on_body(self, body: bytes) -> None:
        kept = self.body
        if kept is None:
            self.body = [body]
        else:
            kept.append(body)
