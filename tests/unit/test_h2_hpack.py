"""The HTTP/2 pool's memoised HPACK (services/generator/hpack_fast.py), checked against hpack.

``FieldEncoder`` keeps its own mirror of the peer's dynamic table; every block it writes
must decode, with hpack's independent decoder playing the server, to exactly the fields
given — across evictions and table size changes. ``BlockDecoder`` must give what hpack
gives, remembering only blocks that neither use nor change the dynamic table.
"""

from __future__ import annotations

import random

import hpack
import pytest

from services.generator.hpack_fast import BlockDecoder, FieldEncoder


def _fields(rng: random.Random) -> list[tuple[bytes, bytes]]:
    method = rng.choice([b"GET", b"POST", b"PATCH"])
    fields = [(b":method", method), (b":scheme", b"https"), (b":authority", b"shop.test:8443"),
              (b":path", rng.choice([b"/", b"/api/me", b"/api/orders", f"/item/{rng.randrange(500)}".encode()])),
              (b"user-agent", b"surge/test"), (b"accept", b"*/*"),
              (b"authorization", f"Bearer token-{rng.randrange(40)}".encode())]
    if rng.random() < 0.3:
        fields.append((b"x-big", b"v" * rng.randrange(900, 3000)))  # not worth a table slot
    if method != b"GET":
        fields.append((b"content-length", str(rng.randrange(200)).encode()))
    return fields


@pytest.mark.timeout(30)
def test_every_block_decodes_to_its_fields_across_evictions() -> None:
    rng = random.Random(7)
    enc, server = FieldEncoder(), hpack.Decoder()
    for _ in range(3000):
        fields = _fields(rng)
        assert server.decode(enc.encode(fields), raw=True) == fields
    assert enc.size <= 4096 and len(server.header_table.dynamic_entries) == len(enc.fifo)


@pytest.mark.timeout(30)
def test_repeated_fields_cost_one_byte_each() -> None:
    enc = FieldEncoder()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"),
              (b":path", b"/api/me"), (b"authorization", b"Bearer abc")]
    first, again = enc.encode(fields), enc.encode(fields)
    assert len(first) > 30 and len(again) == len(fields)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("size", [0, 256, 1000, 65536])
def test_the_peers_table_size_is_followed(size: int) -> None:
    rng = random.Random(size)
    enc, server = FieldEncoder(), hpack.Decoder()
    for _ in range(50):
        fields = _fields(rng)
        assert server.decode(enc.encode(fields), raw=True) == fields
    # the server's SETTINGS_HEADER_TABLE_SIZE: h2 sets it on the encoder; the next block
    # starts with a size update, and the table never outgrows it
    server.max_allowed_table_size = size
    enc.header_table_size = size
    for _ in range(300):
        fields = _fields(rng)
        assert server.decode(enc.encode(fields), raw=True) == fields
        assert server.header_table._current_size <= min(size, 4096)
    if size == 0:
        assert not server.header_table.dynamic_entries


@pytest.mark.timeout(30)
def test_a_field_indexed_before_a_shrink_is_not_indexed_into_a_smaller_table() -> None:
    enc, server = FieldEncoder(), hpack.Decoder()
    fields = [(b":method", b"GET"), (b"authorization", b"Bearer abc")]
    assert server.decode(enc.encode(fields), raw=True) == fields
    server.max_allowed_table_size = enc.header_table_size = 0
    for _ in range(3):  # the same field again and again: never a reference to a table of 0 bytes
        assert server.decode(enc.encode(fields), raw=True) == fields
    assert not enc.fifo and not server.header_table.dynamic_entries


@pytest.mark.timeout(30)
def test_block_decoder_agrees_with_hpack_and_remembers_only_pure_blocks() -> None:
    server = hpack.Encoder()
    plain, cached = hpack.Decoder(), BlockDecoder()
    # nginx's way: a size update to 0 first, then fields never indexed
    server.header_table_size = 0
    for status in [b"200", b"201", b"200", b"200"]:
        block = server.encode([(b":status", status), (b"server", b"nginx"), (b"content-length", b"27")])
        assert cached.decode(block, raw=True) == plain.decode(block, raw=True)
    assert len(cached.blocks) == 2  # the first block changed the table's size: not kept
    # a server that indexes: nothing is remembered once the table holds anything
    server2, plain2, cached2 = hpack.Encoder(), hpack.Decoder(), BlockDecoder()
    for n in range(20):
        block = server2.encode([(b":status", b"200"), (b"x-n", str(n % 3).encode())])
        assert cached2.decode(block, raw=True) == plain2.decode(block, raw=True)
    assert not cached2.blocks
