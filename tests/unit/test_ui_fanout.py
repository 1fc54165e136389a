"""services/ui/fanout.py and state.py: bounded per-browser queues, slow ones dropped."""

from __future__ import annotations

import asyncio
import json

from services.ui import state
from services.ui.fanout import Hub


async def test_slow_client_is_dropped_and_others_keep_every_frame() -> None:
    hub = Hub(max_queue=3)
    fast, slow = hub.connect(), hub.connect()
    hub.subscribe(fast, "runs")
    hub.subscribe(slow, "runs")
    dropped_calls = []
    slow.on_drop = lambda: dropped_calls.append(1)
    got = []
    for i in range(10):
        hub.publish("runs", f"frame-{i}")
        got.append(await fast.next())  # the fast browser keeps up
    assert got == [f"frame-{i}" for i in range(10)]
    assert slow.dropped and slow.closed and dropped_calls == [1]
    assert hub.subscribers("runs") == 1 and hub.dropped_total == 1
    assert await slow.next() is None  # its pump ends


async def test_publish_reaches_only_subscribers_of_the_topic() -> None:
    hub = Hub(max_queue=10)
    a, b = hub.connect(), hub.connect()
    hub.subscribe(a, "live:run-1")
    hub.subscribe(b, "live:run-2")
    assert hub.publish("live:run-1", "x") == 0
    assert len(a) == 1 and len(b) == 0
    hub.disconnect(a)
    assert hub.subscribers("live:run-1") == 0
    assert hub.publish("live:run-1", "y") == 0


async def test_next_waits_for_a_frame() -> None:
    hub = Hub(max_queue=2)
    c = hub.connect()
    hub.subscribe(c, "hosts")
    waiter = asyncio.create_task(c.next())
    done, _ = await asyncio.wait({waiter}, timeout=0.05)  # nothing published: it keeps waiting
    assert not done
    hub.publish("hosts", "sample")
    assert await asyncio.wait_for(waiter, 1) == "sample"


def test_topics_per_client_are_bounded() -> None:
    hub = Hub(max_queue=2, max_topics_per_client=2)
    c = hub.connect()
    assert hub.subscribe(c, "a") and hub.subscribe(c, "b")
    assert not hub.subscribe(c, "c")


def test_frame_splices_raw_json_without_reencoding() -> None:
    text = state.frame("live:r1", b'{"seq":3}', kind="live", key="r1")
    assert json.loads(text) == {"t": "live", "k": "r1", "d": {"seq": 3}}


def test_backlog_of_generators_forgets_silent_ones() -> None:
    from schemas.control import Heartbeat
    import msgspec

    st = state.State()
    beat = Heartbeat(id="g1", host="h", pid=1, cores=2, version="x", started_at=0, sent_at=100.0, capacity_rps=1)
    st.on_generator("g1", beat, msgspec.json.encode(beat))
    assert "g1" in json.loads(st.backlog(state.GENERATORS, now=110.0)[0])["d"]
    assert json.loads(st.backlog(state.GENERATORS, now=200.0)[0])["d"] == {}
