"""The one HTTP/1.1 request head (services/generator/encode.py: merge_headers,
request_head, finish; docs/engine.md, "One request head"): its exact bytes, and the
same bytes from every encoder that writes a request — the fast engine's static
``encode_request`` and templated ``payloads``, the flow engine's ``CompiledStep.encoder``
and its general path (``render`` + ``Client.send``, send-once's and redirects' path)."""

from __future__ import annotations

import random

import pytest

from services.common.identity import USER_AGENT
from services.generator.encode import DEFAULT_HEADERS, encode_request, merge_headers, payloads, quote_path
from services.generator.head import Head
from services.generator.pool import Pool
from services.generator.session import Program
from services.plan import loader
from tests import plans

AGENT = USER_AGENT.encode()


class _Recording(Pool):
    """A pool whose requests go nowhere: it keeps the bytes each would have written."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.wrote: list[bytes] = []

    async def request(self, data: bytes, head_only: bool):
        self.wrote.append(data)
        return 200, Head([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]), b""


def test_the_defaults_are_what_the_docs_say():
    assert DEFAULT_HEADERS == (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate, br"))


def test_merge_replaces_a_name_where_it_stands_with_the_later_spelling():
    got = merge_headers([("Host", "h"), ("Accept", "*/*")], [("x-a", "1"), ("ACCEPT", "text/html")],
                        [("X-A", "2"), ("content-length", "9")], json=True)
    assert got == [("Host", "h"), ("ACCEPT", "text/html"), ("X-A", "2"),
                   ("Content-Type", "application/json")]
    assert merge_headers([("content-type", "text/x")], json=True) == [("content-type", "text/x")]


@pytest.mark.parametrize("path, sent", [
    ("/a b/caf\u00e9?q=1%20&r=[x]", "/a%20b/caf%C3%A9?q=1%20&r=[x]"),
    ("", "/"),
    ("/p;m=1/~u/*?a=b+c@d:e,f!g$h'i(j)", "/p;m=1/~u/*?a=b+c@d:e,f!g$h'i(j)"),
    ("/x\"<>`{}|\\^", "/x%22%3C%3E%60%7B%7D%7C%5C%5E"),
])
def test_paths_are_percent_encoded_where_they_must_be(path, sent):
    assert quote_path(path) == sent


PLAN = {
    "name": "head", "target": "http://127.0.0.1:8080", "users": 1, "duration": 1,
    "headers": {"X-Plan": "p", "x-token": "plan", "Accept": "application/json"},
    "vars": {"tok": "t 1"},
    "requests": [
        {"name": "post", "method": "POST", "path": "/o/{{tok}}/é",
         "headers": {"X-Token": "{{tok}}", "user-agent": "mine"}, "json": {"k": "{{tok}}"}},
        {"name": "get", "path": "/g"},
        {"name": "body", "method": "DELETE", "path": "/d", "body": "x={{tok}}",
         "headers": {"accept-encoding": "identity"}},
        {"name": "head", "method": "HEAD", "path": "/h"},
        {"name": "empty", "method": "PUT", "path": "/e"},
    ],
}

WANT = [
    b"POST /o/t%201/%C3%A9 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nuser-agent: mine\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nX-Plan: p\r\n"
    b"X-Token: t 1\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    b'{"k":"t 1"}',
    b"GET /g HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: " + AGENT + b"\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nX-Plan: p\r\n"
    b"x-token: plan\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: " + AGENT + b"\r\n"
    b"Accept: application/json\r\naccept-encoding: identity\r\nX-Plan: p\r\n"
    b"x-token: plan\r\nContent-Length: 5\r\n\r\nx=t 1",
    b"HEAD /h HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: " + AGENT + b"\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nX-Plan: p\r\n"
    b"x-token: plan\r\n\r\n",
    b"PUT /e HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: " + AGENT + b"\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nX-Plan: p\r\n"
    b"x-token: plan\r\nContent-Length: 0\r\n\r\n",
]


def _literal(spec: dict) -> dict:
    """The request with its templates written out (a static plan)."""
    text = repr(spec).replace("/o/{{tok}}", "/o/t%201").replace("{{tok}}", "t 1")
    return eval(text)  # noqa: S307 -- our own literal


def test_the_fast_engine_writes_these_bytes_static_or_templated():
    templated = loader.from_obj(PLAN)
    assert list(payloads(templated, "127.0.0.1:8080")) == WANT  # rendered once: vars only
    static = loader.from_obj({**PLAN, "vars": {}, "requests": [_literal(r) for r in PLAN["requests"]]})
    assert [encode_request(static, r, "127.0.0.1:8080") for r in static.requests] == WANT


async def test_the_flow_engine_writes_the_same_bytes_encoded_and_by_the_general_path():
    plan = loader.from_obj(PLAN)
    prog = Program(plan, random.Random(0))
    pool = _Recording(plan)
    client = pool.client()
    try:
        for step, want in zip((f[0] for f in prog.flows), WANT):
            enc = step.encoder(pool, prog.headers)
            await client.send_encoded(enc.head.render(prog.vars),
                                      enc.body(prog.vars) if enc.body else None, enc.head_only)
            url, headers, data = step.render(plan.target, prog.headers, prog.vars)
            await client.send(step.method, url, headers, data)
            assert pool.wrote[-2:] == [want, want]
    finally:
        await pool.close()


def test_a_generator_renders_per_send_into_the_same_layout():
    plan = loader.from_obj({**PLAN, "requests": [
        {"name": "a", "method": "POST", "path": "/u/{{$randint(1,9)}}",
         "headers": {"X-Id": "{{$uuid}}", "x-plan": "own"}, "body": "b"}]})
    got = payloads(plan, "127.0.0.1:8080")
    one, two = got[0], got[0]
    assert one != two
    for payload in (one, two):
        head, _, body = payload.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0][:8] == b"POST /u/" and body == b"b"
        assert [line.split(b":")[0] for line in lines[1:]] == [
            b"Host", b"User-Agent", b"Accept", b"Accept-Encoding", b"x-plan", b"x-token", b"X-Id",
            b"Content-Length"]


def test_the_fast_check_encodes_exactly_as_quote_would():
    import string
    from urllib.parse import quote

    from services.generator.encode import PATH_SAFE

    rng = random.Random(7)
    chars = string.printable + "\u00e9\u00fc\u65e5"
    for _ in range(5000):
        path = "/" + "".join(rng.choice(chars) for _ in range(rng.randrange(12)))
        assert quote_path(path) == quote(path, safe=PATH_SAFE), path
