"""HTTP/1.1 requests as bytes: the one request head, and every request of a plan encoded.

Requests are encoded once per plan into bytes (``payloads``, ``encode_request``); sending
one is a ``transport.write``. Templates render per request: a request whose templates
call a generator (``{{$uuid}}``…) is rendered anew at each send (``Rendered``), through
the virtual users' own compiled step (``session.CompiledStep``). The head's rules — the
default fields, the header merge, the path's %-encoding (docs/engine.md, "One request
head") — are written here once for the fast engine, the flow engine's HTTP/1.1 and
HTTP/2 pools (``h2pool.H2Pool.compile`` takes the same merge) and send-once.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import msgspec

from schemas.plan import Plan, RequestSpec
from services.common.identity import USER_AGENT
from services.plan.templating import REF_RE, Splice, Template

if TYPE_CHECKING:
    from services.generator.session import CompiledStep

PATH_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # what may stay as written; the rest is %-encoded
V = TypeVar("V")
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
