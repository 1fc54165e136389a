"""The cluster's arrivals are the plan's: generator k of n runs at phase k/n.

A real coordinator and real generator processes against a target on 127.0.0.1 that
records when each request arrived: the merged stream must be what one generator at
the total rate would send, not n-request bursts (docs/engine.md, "Arrivals").
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from services.plan import loader
from tests.conftest import Cluster, api_with

pytestmark = pytest.mark.timeout(90)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RecordingTarget:
    """Answers every request at once and keeps the monotonic time each one arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.changed = asyncio.Event()

    async def __aenter__(self) -> RecordingTarget:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.times.append(time.monotonic())
                self.changed.set()
                writer.write(OK)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def wait_for(self, count: int, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while len(self.times) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(deadline - time.monotonic(), 0.01))


async def run_recorded(cluster: Cluster, generators: int, rate: float, seconds: float) -> list[float]:
    cluster.coordinator()
    for _ in range(generators):
        cluster.generator()
    api = await api_with(cluster, generators)
    async with RecordingTarget() as target:
        plan = loader.from_obj({"name": "phases", "target": target.url, "rate": rate,
                                "duration": seconds, "connections": 4,
                                "requests": [{"name": "r", "path": "/"}]})
        started = await api.start(plan)
        assert len(started.generators) == generators
        expected = round(rate * seconds)
        await target.wait_for(expected, seconds + 15)
        await api.close()
        return sorted(target.times)


async def test_rate_1_on_2_generators_is_one_request_a_second_alternating(cluster: Cluster):
    times = await run_recorded(cluster, 2, 1.0, 6)
    assert len(times) == 6
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) > 0.1, gaps  # never the two generators at once
    assert all(abs(g - 1.0) < 0.1 for g in gaps), gaps


async def test_4_generators_at_40_per_second_never_send_within_5_ms(cluster: Cluster):
    times = await run_recorded(cluster, 4, 40.0, 3)
    assert len(times) == 120
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) > 0.005, sorted(gaps)[:5]
