"""``http2: h2c`` against a target that speaks only HTTP/1.1: a clear error, at once.

A real HTTP/1.1 server on 127.0.0.1 that answers the HTTP/2 preface as nginx without
``http2`` does (``400 Bad Request``, then closes). Send-once says why in words; a run
counts every arrival as an error without waiting for the plan's timeout.
"""

from __future__ import annotations

import asyncio

import pytest

from services.generator import tryout
from services.generator.load import engine_for
from tests import engines, plans

pytestmark = pytest.mark.timeout(30)

RATE, ARRIVALS = 20.0, 6


class Http1Only:
    """Reads what comes and answers 400 with Connection: close, or (``hang_up``) closes
    every connection at once, unread; counts connections."""

    def __init__(self, hang_up: bool = False) -> None:
        self.connections = 0
        self.hang_up = hang_up

    async def __aenter__(self) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            if self.hang_up:
                writer.close()
                return
            await reader.read(24)  # "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


def h2c_plan(url: str):
    return plans.plan(plans.ENGINE, url, name="h2c", rate=RATE, timeout=10, connections=2,
                      http2="h2c", requests=[{"name": "a", "path": "/"}])


async def test_send_once_says_the_target_does_not_speak_h2c():
    async with Http1Only() as url:
        result = await asyncio.wait_for(tryout.send_once(h2c_plan(url), "g1"), 5)
    (step,) = result.steps
    assert not result.ok and step.status is None
    assert "HTTP/1" in step.error and "http2: off" in step.error, step.error


async def test_a_server_that_hangs_up_at_once_costs_one_connection_per_request():
    """Closed before the first stream: the request fails as a reset, without dialling
    again and again (it used to, until Python's recursion limit: ~1,000 connections)."""
    srv = Http1Only(hang_up=True)
    async with srv as url:
        result = await asyncio.wait_for(tryout.send_once(h2c_plan(url), "g1"), 5)
    (step,) = result.steps
    assert step.error.startswith("reset:"), step.error
    assert srv.connections == 1


async def test_a_run_counts_every_arrival_as_an_error_well_before_the_timeout():
    async with Http1Only() as url:
        a = engines.assignment(h2c_plan(url), RATE, ARRIVALS, run_id="h2c")
        engine = engine_for(a, asyncio.get_running_loop())
        # every arrival answered in 5 s: long before the plan's 10 s timeout
        iv = await engines.run_arrivals(engine, RATE, ARRIVALS, limit_s=5)
    assert iv.completed() == ARRIVALS and iv.errors[0] == {"reset": ARRIVALS}, iv.errors
