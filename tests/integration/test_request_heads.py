"""One request head on every path (docs/engine.md, "One request head").

The same plan — plan headers, a request header whose name differs from a plan header's
only in case, a templated value per request and one from ``vars``, a non-ASCII path, a
JSON body — runs on every path of test_http_conformance.py (the fast engine plain and
over TLS, the flow engine plain and over TLS, HTTP/2 over TLS and h2c) against a server
on 127.0.0.1 that records the heads it read. What the server received is the same on
every path, byte for byte on HTTP/1.1 and field for field on HTTP/2, once the values
rendered per request (``{{$uuid}}``, ``{{$randint}}``) are written as placeholders.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from services.common.identity import USER_AGENT
from tests import plans
from tests.integration.test_http_conformance import (
    ARRIVALS, H2_PATHS, PATHS, RATE, h2_ok, outcome, run_flow, run_static,
)
from tests.servers import H2Server, RawServer, reply, tls_server_context

pytestmark = pytest.mark.timeout(60)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

REQUEST = {
    "name": "r", "method": "POST", "path": "/o/{{$randint(1,9)}}/caf\u00e9?q={{token}}",
    "headers": {"X-Token": "{{$uuid}}", "Authorization": "Bearer {{token}}"},
    "json": {"id": "{{$uuid}}", "n": 1},
}
PLAN = dict(headers={"x-token": "plan", "X-Plan": "p"}, vars={"token": "t-1"})


class HeadServer(RawServer):
    """HTTP/1.1: every request's head and body as read, answered 200."""

    def __init__(self, ctx=None) -> None:
        super().__init__(self._serve, ctx=ctx)
        self.received: list[tuple[bytes, bytes]] = []

    async def _serve(self, _, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
            body = await reader.readexactly(int(length.group(1))) if length else b""
            self.received.append((head, body))
            writer.write(reply())
            await writer.drain()


def placeholders(text: str, port: int) -> str:
    text = UUID.sub("<uuid>", text).replace(f":{port}", ":<port>")
    return re.sub(r"^(POST )?/o/\d/", r"\1/o/<n>/", text, flags=re.M)


def as_fields(head: bytes, body: bytes, port: int) -> list[tuple[str, str]]:
    """An HTTP/1.1 head as HTTP/2 would carry it: pseudo-headers, then its fields (names
    lower-cased, Host as :authority), in order."""
    lines = placeholders(head.decode("latin-1"), port).split("\r\n")[:-2]
    method, target, _ = lines[0].split(" ")
    fields = [(":method", method), (":scheme", "<scheme>"), (":authority", "127.0.0.1:<port>"),
              (":path", target)]
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if name.lower() != "host":
            fields.append((name.lower(), value))
    return fields


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    return {"tls": tls_server_context(tmp_path_factory.mktemp("tls")),
            "h2": tls_server_context(tmp_path_factory.mktemp("h2"), alpn=("h2",))}


async def heads_on(path: str, contexts) -> tuple[list, list[bytes]]:
    """(the heads as HTTP/2 fields, the HTTP/1.1 heads as bytes) the server read on ``path``."""
    if path in H2_PATHS:
        srv = H2Server(h2_ok, contexts["h2"] if path == "h2" else None)
    else:
        srv = HeadServer(contexts["tls"] if path in ("tls", "static-tls") else None)
    async with srv:
        scheme, tls = {"tls": ("https", {"insecure": True, "http2": "off"}),
                       "static-tls": ("https", {"insecure": True, "http2": "off"}),
                       "h2": ("https", {"insecure": True, "http2": "auto"}),
                       "h2c": ("http", {"http2": "h2c"})}.get(path, ("http", {}))
        plan = plans.plan(plans.ENGINE, f"{scheme}://127.0.0.1:{srv.port}", name="heads", rate=RATE,
                          timeout=5, connections=ARRIVALS, requests=[REQUEST], **PLAN, **tls)
        iv = await (run_static if path.startswith("static") else run_flow)(plan, srv)
    assert outcome(iv) == (ARRIVALS, {})
    if path in H2_PATHS:
        assert len(srv.heads) == ARRIVALS
        fields = [[(k, placeholders(v, srv.port)) for k, v in head] for head in srv.heads]
        return [[(k, "<scheme>" if k == ":scheme" else v) for k, v in f] for f in fields], []
    assert len(srv.received) == ARRIVALS
    bodies = {placeholders(body.decode(), srv.port) for _, body in srv.received}
    assert bodies == {'{"id":"<uuid>","n":1}'}
    heads = [placeholders(head.decode("latin-1"), srv.port).encode("latin-1") for head, _ in srv.received]
    return [as_fields(head, body, srv.port) for head, body in srv.received], heads


WANT = (
    "POST /o/<n>/caf%C3%A9?q=t-1 HTTP/1.1\r\n"
    "Host: 127.0.0.1:<port>\r\n"
    f"User-Agent: {USER_AGENT}\r\n"
    "Accept: */*\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "X-Token: <uuid>\r\n"  # the request's spelling, where the plan's x-token stood
    "X-Plan: p\r\n"
    "Authorization: Bearer t-1\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 51\r\n\r\n"
).encode()


@pytest.mark.parametrize("path", PATHS)
async def test_every_path_sends_the_one_request_head(path, contexts):
    """Each path against the one head: the same bytes on HTTP/1.1, the same field list
    (that head's, as HTTP/2 carries it) on HTTP/2, so every path sends the same."""
    fields, heads = await heads_on(path, contexts)
    if path not in H2_PATHS:
        assert set(heads) == {WANT}
    want = as_fields(WANT, b"", 0)
    assert all(f == want for f in fields), (fields[0], want)


async def test_send_once_sends_that_head_and_shows_what_it_sent():
    from services.generator.tryout import send_once

    async with HeadServer() as srv:
        plan = plans.plan(plans.ENGINE, srv.url, name="heads", rate=RATE, timeout=5,
                          requests=[REQUEST], **PLAN)
        result = await send_once(plan, "g-1")
    assert result.ok and len(srv.received) == 1
    head, body = srv.received[0]
    assert placeholders(head.decode("latin-1"), srv.port).encode("latin-1") == WANT
    shown = "".join(f"{k}: {v}\r\n" for k, v in result.steps[0].request_headers.items())
    assert head.decode("latin-1").split("\r\n", 1)[1] == shown + f"Content-Length: {len(body)}\r\n\r\n"


async def test_a_redirect_hop_is_encoded_as_every_request():
    """A ``Location`` with a space and a non-ASCII letter: the hop's target is %-encoded by
    the same rule (``encode.quote_path``), its head the same defaults."""
    async with HeadServer() as srv:
        async def redirect(_, reader, writer):
            while (head := await reader.readuntil(b"\r\n\r\n")):
                srv.received.append((head, b""))
                if head.startswith(b"GET /x "):
                    writer.write(reply("302 Found", b"", "Location: /landed here/caf\u00e9?a=b c\r\n"))
                else:
                    writer.write(reply())
                await writer.drain()

        srv.handler = redirect
        plan = plans.plan(plans.ENGINE, srv.url, name="heads", rate=RATE, timeout=5, connections=ARRIVALS,
                          follow_redirects=1, requests=[{"name": "r", "path": "/x"}])
        iv = await run_flow(plan, srv)
    assert outcome(iv) == (ARRIVALS, {})
    hops = [head for head, _ in srv.received if not head.startswith(b"GET /x ")]
    assert len(hops) == ARRIVALS
    assert {h.split(b"\r\n", 1)[0] for h in hops} == {b"GET /landed%20here/caf%C3%A9?a=b%20c HTTP/1.1"}
    assert {h.split(b"\r\n", 1)[1] for h in hops} == {
        f"Host: 127.0.0.1:{srv.port}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n\r\n".encode()}
