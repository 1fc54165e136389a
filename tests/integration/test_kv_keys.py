"""bus.kv_keys: every live key of a KV bucket, against a real nats-server.

nats-py's own ``keys()`` can end at its "nothing pending" marker before the entries
already delivered (an empty list on a busy machine): the catalogue once listed no
tests. ``kv_keys`` ends on the last entry itself; these cases pin what it returns.
"""

from __future__ import annotations

import nats
import pytest

from services.common import bus
from tests.conftest import Cluster

pytestmark = pytest.mark.timeout(30)


async def test_kv_keys_lists_live_keys_and_nothing_deleted(cluster: Cluster):
    nc = await nats.connect(cluster.url)
    try:
        kv = await bus.key_value(nc.jetstream(), "kv_keys_test", history=1)
        assert await bus.kv_keys(kv) == []  # an empty bucket ends at once
        for i in range(300):  # more than the watcher's queue holds at once
            await kv.put(f"k.{i}", b"x")
        await kv.put("k.0", b"again")  # a second revision of a key is one key
        await kv.delete("k.1")
        await kv.purge("k.2")
        keys = await bus.kv_keys(kv)
        assert sorted(keys) == sorted(f"k.{i}" for i in range(300) if i not in (1, 2))
        assert len(keys) == len(set(keys))
        await kv.delete("k.0")  # the newest message is a delete: the listing still ends
        assert "k.0" not in await bus.kv_keys(kv)
        for i in range(3, 300):
            await kv.purge(f"k.{i}")
        assert await bus.kv_keys(kv) == []  # only markers left: no live key
    finally:
        await nc.close()
