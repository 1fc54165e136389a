"""HTTP/1.1 on the wire: pre-encoded requests and a keep-alive connection protocol.

Requests are encoded once per plan into bytes; sending one is a ``transport.write``.
Responses are parsed by httptools (llhttp, the parser Node.js uses). The protocol
only reports events to its owner (the engine); it keeps no statistics itself.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httptools
import msgspec

from schemas.plan import Plan, RequestSpec
from services.common.identity import USER_AGENT
from services.plan.templating import REF_RE, Splice, Template

if TYPE_CHECKING:
    from services.generator.session import CompiledStep

PATH_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # what may stay as written; the rest is %-encoded
MAX_CHECK_BODY = 1 << 20  # bytes kept for a body_contains check; the rest is counted only
CHECK_BUDGET = 64 << 20  # all connections' check buffers together: many connections keep less
MIN_CHECK_BODY = 64 << 10  # ... but never less than this each
MAX_HEAD = 64 << 10  # status line + headers; more is a "too_large" error, never buffered
READ_SIZE = 256 << 10  # the engine's read buffer, shared by its connections
V = TypeVar("V")


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


BODY_METHODS = ("POST", "PUT", "PATCH")  # a Content-Length even when the body is empty
# what every request carries unless the plan names it (docs/engine.md, "One request head"):
# the one place the HTTP/1.1 encoders, HTTP/2's header list and send-once take them from
DEFAULT_HEADERS = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate, br"))
JSON_TYPE = ("Content-Type", "application/json")


def base_headers(host_header: str) -> list[tuple[str, str]]:
    """The head every request starts from: Host, User-Agent, then ``DEFAULT_HEADERS``."""
    return [("Host", host_header), ("User-Agent", USER_AGENT), *DEFAULT_HEADERS]


def base_map(host_header: str) -> dict[str, tuple[str, str]]:
    """``base_headers`` merged (``merge_headers``' ``onto``): for a path that merges per request."""
    return {name.lower(): (name, value) for name, value in base_headers(host_header)}


def merge_headers(*layers: Iterable[tuple[str, V]], json: bool = False,
                  onto: dict[str, tuple[str, str]] | None = None) -> list[tuple[str, V | str]]:
    """The one header-merge rule: each layer's headers in order (the base, the plan's, the
    request's); a name already there, compared case-insensitively, is replaced where it
    stands by the later one, keeping the later one's spelling. A ``json`` body adds
    ``Content-Type: application/json`` unless a layer named it; Content-Length is never
    taken from a layer (the encoders compute it from the body). ``onto``: a first layer
    merged already (``base_map``), copied rather than merged again."""
    merged: dict[str, tuple[str, V | str]] = dict(onto) if onto else {}  # type: ignore[arg-type]
    for layer in layers:
        for name, value in layer:
            merged[name.lower()] = (name, value)
    merged.pop("content-length", None)
    if json and "content-type" not in merged:
        merged["content-type"] = JSON_TYPE
    return list(merged.values())


_AS_WRITTEN = re.compile(r"[A-Za-z0-9/?&=%:@!$'()*+,;~\-._\[\]]+").fullmatch  # PATH_SAFE, letters, digits


def quote_path(path: str) -> str:
    """A request target as sent: what may not stay as written %-encoded (UTF-8), an
    existing ``%xx`` kept, an empty path ``/``."""
    if _AS_WRITTEN(path):  # most paths: nothing to encode (a regex, ~5x cheaper than quote)
        return path
    return quote(path, safe=PATH_SAFE) if path else "/"


def request_head(method: str, path: str | Template, headers: Iterable[tuple[str, str | Template]],
                 target_prefix: str = "") -> Splice:
    """The one HTTP/1.1 request head (docs/engine.md, "One request head"), less what
    ``finish`` adds: the request line and ``headers`` (``merge_headers``'s), compiled
    once; only templated values are rendered per request, one join."""
    if isinstance(path, str) or path.static:
        text = path if isinstance(path, str) else path.render({})
        pieces: list = [f"{method} {target_prefix}{quote_path(text)} HTTP/1.1\r\n"]
    else:
        render = path.render
        pieces = [f"{method} {target_prefix}", lambda v: quote_path(render(v)), " HTTP/1.1\r\n"]
    for name, value in headers:
        pieces += [f"{name}: ", value, "\r\n"]
    return Splice(pieces)


def finish(head: str, body: bytes | None) -> bytes:
    """A rendered head and its body as the bytes written: Content-Length when there is a
    body, even an empty one (None: no body, no Content-Length)."""
    if body is None:
        return (head + "\r\n").encode("latin-1")
    return (head + "Content-Length: " + str(len(body)) + "\r\n\r\n").encode("latin-1") + body


def encode(method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes | None,
           host_header: str, json: bool = False) -> bytes:
    """One HTTP/1.1 request as bytes: ``base_headers``, then ``headers``, merged by
    ``merge_headers``; Content-Length from the body (always for POST/PUT/PATCH); the
    path %-encoded where needed (``quote_path``)."""
    if body is None and method in BODY_METHODS:
        body = b""
    fields = merge_headers(base_headers(host_header), headers, json=json)
    return finish(request_head(method, path, fields).render({}), body)


def encode_request(plan: Plan, spec: RequestSpec, host_header: str) -> bytes:
    """A static request spec as its final bytes (the plan's headers, then the spec's)."""
    body = None
    if spec.json is not None:
        body = msgspec.json.encode(spec.json)
    elif spec.body is not None:
        body = spec.body.encode()
    return encode(spec.method, spec.path, [*plan.headers.items(), *spec.headers.items()], body,
                  host_header, json=spec.json is not None)


def request_texts(plan: Plan, spec: RequestSpec) -> Iterator[str]:
    """Every text of a request that may hold ``{{…}}``: path, headers (the plan's and
    its own), body, and the strings and keys of a json body."""
    yield spec.path
    yield from plan.headers.values()
    yield from spec.headers.values()
    if spec.body is not None:
        yield spec.body
    if spec.json is not None:
        yield from _json_texts(spec.json)


def _json_texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _json_texts(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _json_texts(v)


def renders_per_request(plan: Plan, spec: RequestSpec) -> bool:
    """True when a request calls a generator (``{{$uuid}}``, ``{{$randint(a,b)}}``…): its
    bytes differ at every send. References to the plan's ``vars`` alone are constant."""
    return any(m.group(1).startswith("$") for text in request_texts(plan, spec)
               for m in REF_RE.finditer(text))


class Rendered:
    """A templated plan's payloads: ``payloads[i]`` is request *i*'s bytes, pre-encoded
    when they never change, else rendered anew for this send (one render, no user).

    It has the lookup a list of pre-encoded bytes has, so the engine's send path is
    the same for every plan; a static plan gets a plain list and pays nothing."""

    __slots__ = ("fixed", "renders")

    def __init__(self, fixed: list[bytes | None], renders: list[Callable[[], bytes] | None]) -> None:
        self.fixed = fixed
        self.renders = renders

    def __getitem__(self, i: int) -> bytes:
        payload = self.fixed[i]
        return payload if payload is not None else self.renders[i]()  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.fixed)


def payloads(plan: Plan, host_header: str) -> list[bytes] | Rendered:
    """Every request of the plan as the engine sends it (docs/engine.md, "What each
    feature costs"): bytes encoded once, or, for a request whose templates call a
    generator, a render per send. Templates go through virtual users' own
    ``CompiledStep.render`` with the plan's ``vars`` (rendered once, as for virtual
    users); ``flows.needs_users`` keeps plans whose templates need per-user state
    (extracted values, data rows, ``__user``…) away from here."""
    templated = [any("{{" in t for t in request_texts(plan, r)) for r in plan.requests]
    if not any(templated):
        return [encode_request(plan, r, host_header) for r in plan.requests]
    from services.generator.session import Program  # only templated plans pay the import

    # OS entropy, not a seed: {{$uuid}} differs in every engine process and every run
    program = Program(plan, random.Random())
    fixed: list[bytes | None] = []
    renders: list[Callable[[], bytes] | None] = []
    for i, spec in enumerate(plan.requests):
        if not templated[i]:
            fixed.append(encode_request(plan, spec, host_header))
            renders.append(None)
            continue
        render = _renderer(program.flows[i][0], program.headers, program.vars, host_header)
        first = render()  # a template that cannot render fails here, not mid-run
        dynamic = renders_per_request(plan, spec)
        fixed.append(None if dynamic else first)
        renders.append(render if dynamic else None)
    if all(p is not None for p in fixed):
        return fixed  # type: ignore[return-value]
    return Rendered(fixed, renders)


def _renderer(step: CompiledStep, common: list, variables: dict, host_header: str) -> Callable[[], bytes]:
    """A request's bytes for one send: the step's head compiled once (virtual users'
    ``CompiledStep.compile``, the same encoder), only rendered values spliced in."""
    head, body = step.compile(host_header, common)
    render = head.render
    if body is None:
        return lambda: (render(variables) + "\r\n").encode("latin-1")

    def payload() -> bytes:
        data = body(variables)  # type: ignore[misc]
        return (render(variables) + "Content-Length: " + str(len(data))
                + "\r\n\r\n").encode("latin-1") + data

    return payload


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
