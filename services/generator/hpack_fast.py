"""HPACK (RFC 7541) for the HTTP/2 pool, memoised: the repeated work of a load test made a dict lookup.

h2 hands every header block to ``connection.encoder.encode`` and every received block to
``connection.decoder.decode``; ``FieldEncoder`` and ``BlockDecoder`` are drop-in
replacements that ``h2pool._H2Conn`` installs on each connection (docs/engine.md, "HTTP/2").
"""

from __future__ import annotations

import collections

import hpack
from hpack.table import HeaderTable

_STATIC = HeaderTable.STATIC_TABLE
_STATIC_PAIR = {pair: i + 1 for i, pair in reversed(list(enumerate(_STATIC)))}
_STATIC_NAME = {name: i + 1 for i, (name, _) in reversed(list(enumerate(_STATIC)))}
_TABLE_SIZE = 4096  # the most of the peer's table we use (its default, RFC 7541 6.5.2)
_MEMO = 4096  # distinct header fields remembered (then the memo starts over)


def _int(value: int, bits: int, flags: int) -> bytes:
    """An HPACK integer with a ``bits``-bit prefix (RFC 7541 5.1), ``flags`` in the first byte."""
    top = (1 << bits) - 1
    if value < top:
        return bytes((flags | value,))
    out = [flags | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:  # a string literal, not Huffman-coded (RFC 7541 5.2)
    return _int(len(raw), 7, 0) + raw


_INDEXED = [_int(i, 7, 0x80) for i in range(256)]  # an indexed field (RFC 7541 6.1)


class FieldEncoder:
    """HPACK encoding for request heads (RFC 7541), each distinct field encoded once.

    Every field goes into the peer's dynamic table (literal with incremental indexing,
    plain strings: Huffman coding would cost Python time on every new value to save a
    few bytes once) unless it is too big to be worth a table slot; a field already
    there is one indexed byte. The table is mirrored as insertion numbers, so finding a
    field is one dict lookup and eviction is FIFO by size, exactly as the peer evicts.
    What h2's own encoder did beyond this: Huffman strings, and "never indexed" for
    ``authorization`` and short cookies (a guard against compression side channels in
    browsers mixing secrets with attacker-chosen data, which a load generator's own
    tokens are not). h2 hands it fields as bytes.
    """

    def __init__(self) -> None:
        self.limit = _TABLE_SIZE  # our table's size: ≤ the peer's SETTINGS_HEADER_TABLE_SIZE
        self.resize: int | None = None  # a size update owed at the start of the next block
        self.numbers: dict[tuple[bytes, bytes], int] = {}  # field → its insertion number
        self.fifo: collections.deque[tuple[tuple[bytes, bytes], int, int]] = collections.deque()
        self.inserted = 0
        self.size = 0
        self.memo: dict[tuple[bytes, bytes], tuple[bytes, int, bool]] = {}

    @property
    def header_table_size(self) -> int:
        return self.limit

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:  # the peer's SETTINGS_HEADER_TABLE_SIZE
        limit = min(value, _TABLE_SIZE)
        if limit != self.limit:
            self.limit = limit
            self.resize = limit
            self._evict(0)
            # whether a field is worth a slot depends on the size: decided again (a field
            # bigger than the table would empty the peer's table, RFC 7541 4.4)
            self.memo.clear()

    def _evict(self, room: int) -> None:
        fifo, numbers = self.fifo, self.numbers
        while fifo and self.size + room > self.limit:
            field, size, n = fifo.popleft()
            self.size -= size
            if numbers.get(field) == n:  # not since inserted again
                del numbers[field]

    def _literal(self, field: tuple[bytes, bytes]) -> tuple[bytes, int, bool]:
        raw_name, raw_value = field
        size = len(raw_name) + len(raw_value) + 32
        index = size <= self.limit // 4  # a field worth a table slot
        at = _STATIC_NAME.get(raw_name)
        if index:
            head = _int(at, 6, 0x40) if at else b"\x40" + _string(raw_name)
        else:  # literal without indexing
            head = _int(at, 4, 0) if at else b"\x00" + _string(raw_name)
        out = (head + _string(raw_value), size, index)
        memo = self.memo
        if len(memo) >= _MEMO:
            memo.clear()
        memo[field] = out
        return out

    def encode(self, headers, huffman: bool = True) -> bytes:
        out = []
        if self.resize is not None:
            out.append(_int(self.resize, 5, 0x20))
            self.resize = None
        numbers, memo = self.numbers, self.memo
        for field in headers:
            n = numbers.get(field)
            if n is not None:
                i = 62 + self.inserted - n  # the newest entry is 62
                out.append(_INDEXED[i] if i < 256 else _int(i, 7, 0x80))
                continue
            at = _STATIC_PAIR.get(field)
            if at is not None:
                out.append(_INDEXED[at])
                continue
            lit = memo.get(field) or self._literal(field)
            out.append(lit[0])
            if lit[2]:
                size = lit[1]
                if self.size + size > self.limit:
                    self._evict(size)
                self.inserted += 1
                numbers[field] = self.inserted
                self.fifo.append((field, size, self.inserted))
                self.size += size
        return b"".join(out)


class BlockDecoder(hpack.Decoder):
    """hpack's decoder, remembering whole header blocks that leave the table empty.

    A block decoded while the dynamic table is empty, that leaves it empty with its
    size unchanged, references and changes nothing: its fields are a function of its
    bytes alone. Servers that never index response fields (nginx) send the same few
    blocks over and over (the ``date`` changes once a second), so those are decoded
    once; anything else goes through hpack as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[bytes, list] = {}

    def decode(self, data, raw: bool = False):
        table = self.header_table
        if not raw or table.dynamic_entries:
            return super().decode(data, raw)
        got = self.blocks.get(data)
        if got is not None:
            return got
        size = table.maxsize
        got = super().decode(data, raw)
        if not table.dynamic_entries and table.maxsize == size:
            blocks = self.blocks
            if len(blocks) >= 64:
                blocks.clear()
            blocks[bytes(data)] = got
        return got
