"""One virtual user over a shared pool: its cookies, redirects followed, bodies decoded.

``Pool.client()`` (HTTP/1.1, ``pool.py``, and HTTP/2, ``h2pool.py``) gives each virtual
user a ``Client``. Cookies are parsed by the stdlib's ``http.cookies`` and kept per user;
the cookie header is added only when the target set cookies. ``follow_redirects: N``
follows hops in ``send``, another origin getting a pool of its own (``Pool.pool_for``).
A flow step's request arrives already encoded (``send_encoded``: its constant parts
joined once per run, ``session.CompiledStep.encoder``).
"""

from __future__ import annotations

import http.cookies
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import multidict

from services.generator.encode import finish, merge_headers, quote_path
from services.generator.head import CONTENT_ENCODING, SET_COOKIE, Head
from services.generator.http import decode_body

if TYPE_CHECKING:
    from services.generator.pool import Pool


class TooManyRedirects(Exception):
    kind = "other"


REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Client:
    """One virtual user: its cookies over the shared pool."""

    __slots__ = ("pool", "jar")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.jar: dict[str, str] = {}

    async def send(self, method: str, url: str, headers: dict[str, str], data: bytes | None,
                   redirects: int = 0) -> tuple[int, Mapping[str, str], bytes]:
        """One request; with ``redirects`` > 0 up to that many hops followed, each a
        request the target sees, the latency covering all (docs/engine.md)."""
        pool = self.pool
        for hop in range(redirects + 1):
            status, resp_headers, body = await self._send(pool, method, url, headers, data)
            if redirects == 0 or status not in REDIRECTS or "Location" not in resp_headers:
                return status, resp_headers, body
            if hop == redirects:
                raise TooManyRedirects(f"more than {redirects} redirects")
            parts = urlsplit(urljoin(url, resp_headers["Location"]))
            # the hop's target as every request's (encode.quote_path), as curl -L and requests do
            target = parts.path + ("?" + parts.query if parts.query else "")
            try:  # a head is read as latin-1; a Location's non-ASCII bytes are UTF-8 (requests)
                target = target.encode("latin-1").decode("utf-8")
            except UnicodeError:
                pass
            url = f"{parts.scheme}://{parts.netloc}{quote_path(target)}"
            pool = self.pool.pool_for(f"{parts.scheme}://{parts.netloc}")
            if status == 303 or (status in (301, 302) and method == "POST"):
                # as browsers, curl -L and aiohttp do: the next hop is a GET without the body
                method, data = ("GET" if method != "HEAD" else "HEAD"), None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        raise AssertionError("unreachable")

    async def _send(self, pool: Pool, method: str, url: str, headers: dict[str, str],
                    data: bytes | None) -> tuple[int, Mapping[str, str], bytes]:
        if url.startswith(pool.base_url):
            path = url[len(pool.base_url):]
        elif url.startswith(pool.origin):
            path = url[len(pool.origin):]
        else:
            path = url
        if pool.absolute:  # through an HTTP proxy: the request line names the origin
            path = pool.origin + (path or "/")
        home = pool is self.pool
        # the one merge rule (encode.merge_headers): what the fast engine and the encoded
        # path send, Cookie and Content-Length after
        lines = merge_headers(headers.items(), onto=pool.base_fields)
        if self.jar and home:  # the user's cookies are the target's (one origin)
            lines.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items())))
        status, header_list, body = await pool.exchange(method, path or "/", lines, data)
        resp_headers = header_list if isinstance(header_list, Head) else multidict.CIMultiDict(header_list)
        if home:
            for value in resp_headers.getall("Set-Cookie", ()):
                self._take_cookie(value)
        encoding = resp_headers.get("Content-Encoding")
        if encoding and body:
            body = decode_body(body, encoding.strip().lower().encode())
        return status, resp_headers, body

    async def send_encoded(self, head: str, body: bytes | None,
                           head_only: bool) -> tuple[int, Head, bytes]:
        """A request this client's pool encoded already: ``head`` is the request line and
        every header but Cookie and Content-Length (``session.CompiledStep.encoder``
        joined it for this pool), ``body`` the body or None. One join, one write; the
        response's fields are looked at only for Set-Cookie and Content-Encoding."""
        status, headers, data = await self.pool.request(self.encode(head, body), head_only)
        return status, headers, self.received(headers, data)

    def start_encoded(self, head: str, body: bytes | None, head_only: bool, waiter) -> None:
        """``send_encoded`` without a coroutine: the pool has a free connection
        (``Pool.has_idle``) and ``waiter`` gets (status, Head, body); the caller passes
        them through ``received``."""
        self.pool.start(self.encode(head, body), head_only, waiter)

    def encode(self, head: str, body: bytes | None) -> bytes:
        """The request's bytes: ``head`` + Cookie + Content-Length + the body."""
        jar = self.jar
        if jar:
            head += "Cookie: " + "; ".join([f"{k}={v}" for k, v in jar.items()]) + "\r\n"
        return finish(head, body)

    def received(self, headers: Head, data: bytes) -> bytes:
        """The response's cookies taken, its body decoded (Content-Encoding)."""
        if headers.has(SET_COOKIE):
            for value in headers.getall("Set-Cookie", ()):
                self._take_cookie(value)
        if data and headers.has(CONTENT_ENCODING):
            data = decode_body(data, headers["Content-Encoding"].strip().lower().encode())
        return data

    def _take_cookie(self, value: str) -> None:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(value)
        except http.cookies.CookieError:
            return
        for name, morsel in jar.items():
            max_age = morsel["max-age"]
            if morsel.value == "" or (max_age and max_age.lstrip("-").isdigit() and int(max_age) <= 0):
                self.jar.pop(name, None)  # deleted by the target
            else:
                self.jar[name] = morsel.value

    def cookies(self) -> dict[str, str]:
        return dict(self.jar)

    def set_cookies(self, cookies: dict[str, str], base_url: str) -> None:
        self.jar.update(cookies)

    def clear_cookies(self) -> None:
        self.jar.clear()

    async def close(self) -> None:
        pass  # the pool's connections are shared
