"""A response head as the HTTP/1.1 pool hands it over: fields read from the raw bytes only when asked.

``http.FullConnection`` keeps the reads up to the end of a response head; ``Head`` wraps them.
``SET_COOKIE`` and ``CONTENT_ENCODING`` are the byte searches a ``client.Client`` makes
before it pays for parsing (docs/engine.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import multidict

SET_COOKIE = b"\r\nset-cookie:"
CONTENT_ENCODING = b"\r\ncontent-encoding:"


class Head(Mapping):
    """A response's header fields, read from its raw head only when asked for.

    ``chunks`` are the bytes received for the request up to the end of the final head
    (1xx interim heads before it, maybe body bytes after it): the engine keeps the
    reads, not a parsed field per header. A lookup first searches the lower-cased head
    for the name (``has``); only a hit, or iterating, parses every field into a
    case-insensitive multidict (as the client libraries gave before).
    """

    __slots__ = ("_chunks", "_raw", "_lower", "_fields")

    def __init__(self, chunks: list[bytes] | bytes) -> None:
        self._chunks = chunks
        self._raw: bytes | None = None
        self._lower: bytes | None = None
        self._fields: multidict.CIMultiDict | None = None

    @property
    def raw(self) -> bytes:
        """The final response's head: status line and fields, without the blank line."""
        if self._raw is None:
            chunks = self._chunks
            data = chunks if isinstance(chunks, bytes) else b"".join(chunks)
            pos = 0
            while True:
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    end = len(data)
                status = data.find(b" ", pos) + 1
                if data[status:status + 1] != b"1" or end + 4 >= len(data):
                    break
                pos = end + 4  # a 1xx interim head (no body): the final one follows
            self._raw = data[pos:end]
        return self._raw

    def has(self, needle: bytes) -> bool:
        """``b"\\r\\nname:"`` (lower case) is in the head: cheap, no parse."""
        if self._lower is None:
            self._lower = self.raw.lower()
        return needle in self._lower

    def _may_have(self, name: str) -> bool:
        return self.has(b"\r\n" + name.lower().encode("latin-1") + b":")

    @property
    def fields(self) -> multidict.CIMultiDict:
        if self._fields is None:
            pairs = []
            for line in self.raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                pairs.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
            self._fields = multidict.CIMultiDict(pairs)
        return self._fields

    def __getitem__(self, name: str) -> str:
        if not self._may_have(name):
            raise KeyError(name)
        return self.fields[name]

    def get(self, name: str, default=None):
        return self.fields.get(name, default) if self._may_have(name) else default

    def getall(self, name: str, default=()):
        return self.fields.getall(name, default) if self._may_have(name) else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._may_have(name) and name in self.fields

    def __iter__(self):
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def items(self):
        return self.fields.items()
