"""The flow engine's step chain (session._Chain) against a real server on 127.0.0.1.

On HTTP/1.1 a closed-model user's next step is sent from the previous response's
callback, across iterations too (no task wake-up per request). These pin what that must
keep: every request the report counts is one the server received, a failed extraction
ends its iteration and the next one starts, a connection the server closes sends the
user back to the general path (a dial) and the chain on, and a drain counts a request
still in flight as a timeout.
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from schemas.control import Assignment
from services.generator.engine import Engine
from services.generator.pacing import Schedule
from services.plan import loader, profile
from tests.servers import RawServer, read_request, reply

pytestmark = pytest.mark.timeout(30)


class Counting(RawServer):
    """Answers each request with ``respond(n, method, path)`` -> (bytes, keep the connection)."""

    def __init__(self, respond) -> None:
        super().__init__(self._requests)
        self.respond = respond
        self.received: collections.Counter[str] = collections.Counter()
        self.held = 0

    async def _requests(self, _, reader, writer) -> None:
        while (request := await read_request(reader)) is not None:
            method, path, _ = request
            self.received[path.split("/")[1]] += 1
            self.got_request()
            answer = self.respond(sum(self.received.values()), method, path)
            if answer is None:  # never answered
                self.held += 1
                self.got_request()
                await asyncio.Event().wait()
            data, keep = answer
            writer.write(data)
            await writer.drain()
            if not keep:
                return


def flow_engine(target: str, steps: list[dict], users: int = 4, timeout_s: float = 2) -> Engine:
    plan = loader.from_obj({"name": "chain", "target": target, "users": users, "duration": 30,
                            "timeout": timeout_s, "flows": [{"name": "f", "steps": steps}]})
    now = time.time()
    prof = profile.from_plan(plan)
    a = Assignment(run_id="chain", epoch=1, share=1.0, start_at=now, end_at=now + 30,
                   profile=prof, plan=plan)
    engine = Engine.of(a, asyncio.get_running_loop())
    assert engine.users is not None
    engine.start(Schedule(prof, 1.0), time.monotonic())
    return engine


def counts(engine: Engine, iv) -> dict[str, tuple[int, dict[str, int]]]:
    return {name: (iv.count(i), dict(iv.errors[i])) for i, name in enumerate(engine.names)}


STEPS = [
    {"name": "a", "path": "/a", "extract": {"n": {"jsonpath": "$.n"}}},
    {"name": "b", "method": "POST", "path": "/b/{{n}}", "json": {"n": "{{n}}"}, "check": {"status": 200}},
    {"name": "c", "path": "/c", "check": {"jsonpath": [{"path": "$.ok", "equals": True}]}},
]


def shop(n: int, method: str, path: str):
    if path == "/a":  # every 5th login gives no n: the extraction fails, the iteration ends
        return reply(body=b"{}" if n % 5 == 0 else b'{"n": 7}'), True
    if path.startswith("/b/"):  # every 4th is a 500: recorded, the flow goes on
        return reply("500 Oops" if n % 4 == 0 else "200 OK", b"{}"), True
    return reply(body=b'{"ok": true}'), True


@pytest.mark.parametrize("keep", [True, False], ids=["keep-alive", "connection: close"])
async def test_closed_users_chain_steps_and_iterations_the_server_counting_the_same(keep):
    def respond(n, method, path):
        data, _ = shop(n, method, path)
        if not keep:  # said, as a server closing after its response must (RFC 9112 9.6)
            data = data.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
        return data, keep

    async with Counting(respond) as srv:
        engine = flow_engine(srv.url, STEPS)
        await srv.until(lambda: srv.received["c"] >= 200, 20, "200 iterations through")
        await engine.drain(2.0)
        got = counts(engine, engine.take_interval())
    assert engine.in_flight() == 0
    assert got["a"][0] == srv.received["a"] and got["b"][0] == srv.received["b"]
    assert got["c"][0] == srv.received["c"]
    # no n: the iteration ends (no b, no c); the drain stops up to one user each after a or b
    assert got["a"][1]["check"] <= srv.received["a"] - srv.received["b"] <= got["a"][1]["check"] + 4
    assert 0 <= srv.received["b"] - srv.received["c"] <= 4  # a 500 on b does not end the iteration
    assert 0 < got["b"][1]["status"] < srv.received["b"] and got["c"][1] == {}
    if not keep:
        assert srv.connections >= sum(srv.received.values())


async def test_a_drain_counts_the_requests_still_in_flight_as_timeouts():
    def respond(n, method, path):
        return (reply(body=b'{"n": 1}'), True) if path == "/a" else None

    async with Counting(respond) as srv:
        engine = flow_engine(srv.url, STEPS[:2], users=3, timeout_s=20)  # only the drain ends b
        await srv.until(lambda: srv.held == 3, 10, "every user waiting on b")
        await engine.drain(0.2)
        got = counts(engine, engine.take_interval())
    assert got["a"] == (3, {}) and got["b"] == (3, {"timeout": 3})
    assert engine.in_flight() == 0
