"""Python cost per response of the engine's hot path against the bare protocol's, no syscalls.

    python -m bench.hotpath [--n 200000] [--core 1] [--plan static|vars|render]

A response as nginx sends it sits in the engine's read buffer; ``buffer_updated`` is
called again and again on one connection whose transport's ``write`` does nothing.
So each iteration is exactly the engine's per-response Python work (llhttp, status
check, two appends, next request) and the bare protocol's (llhttp, next request);
the difference is what Surge's own code adds. ``engine_open_us_per_response`` is the
same in the open model (static plan): every response finds an arrival due (a schedule
far ahead of its time), so it is the response path plus taking the next arrival off
the cursor. Best of 5, which is what noise distorts least. ``--plan``
(``bench.templated``'s rows): ``vars`` adds ``Authorization: Bearer {{token}}`` from
the plan's vars, ``render`` also ``X-Request-Id: {{$uuid}}`` (a render per request on
the fast engine). ``engine_tick_us_per_arrival`` is the pacer's side of the open model:
one tick's batch (``_send_due`` with 40 connections free and 40 arrivals due, about a
tick's at 20,000 req/s), per arrival sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from bench.bare import Bare
from bench.nginx import BODY
from bench.surge_run import make_plan
from schemas.control import Segment
from services.generator.closed import ClosedLoop
from services.generator.engine import Engine
from services.generator.pacing import Schedule

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 10:47:40 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: %d\r\nLast-Modified: Mon, 23 Nov 2026 "
    b"10:47:40 GMT\r\nConnection: keep-alive\r\nETag: \"6562e0bc-198\"\r\n"
    b"Accept-Ranges: bytes\r\n\r\n%s" % (len(BODY), BODY)
)


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn(len(RESPONSE))
    return (time.perf_counter() - t) / n * 1e6


async def run(n: int, plan: str = "static") -> dict:
    from bench.templated import plan_of

    url = "http://127.0.0.1:1/index.txt"
    engine = Engine(make_plan(url, 64) if plan == "static" else plan_of(url, plan, 64, rate=1, duration=1),
                    asyncio.get_running_loop())
    ClosedLoop(engine, 1).attach(0.0)  # its users' next requests, without opening them
    conn = engine.conn_class(engine)
    conn.connection_made(NullTransport())
    engine.conns.add(conn)
    engine.read_buffer[: len(RESPONSE)] = RESPONSE
    conn.send(0, engine.payloads[0], 0.0, 0.0)
    view = memoryview(bytearray(len(RESPONSE)))
    view[:] = RESPONSE
    bare = Bare(b"GET / HTTP/1.1\r\n\r\n", view)
    bare.connection_made(NullTransport())
    eng_us, bare_us = [], []
    for _ in range(5):
        eng_us.append(timed(conn.buffer_updated, n))
        engine.take_interval()  # keep memory flat between rounds
        bare_us.append(timed(bare.buffer_updated, n))
    e, b = min(eng_us), min(bare_us)
    o = min(open_model(n, asyncio.get_running_loop()) for _ in range(5))
    tick = min(tick_batch(n, asyncio.get_running_loop()) for _ in range(5))
    return {"engine_us_per_response": round(e, 3), "bare_us_per_response": round(b, 3),
            "engine_overhead_us": round(e - b, 3), "engine_open_us_per_response": round(o, 3),
            "engine_tick_us_per_arrival": round(tick, 3),
            "responses_per_round": n, "plan": plan}


def open_model(n: int, loop: asyncio.AbstractEventLoop) -> float:
    """The open model's response path when an arrival is due at every response."""
    engine = Engine(make_plan("http://127.0.0.1:1/index.txt", 64), loop)
    # 10^9 arrivals a second for an hour, started 100 s ago: always due, never dropped
    engine.timeout = 1e9
    engine.arrivals.start(Schedule([Segment(0.0, 3600.0, 1e9, 1e9)], 1.0), time.monotonic() - 100.0)
    engine.t0, engine.pacing = engine.arrivals.t0, True
    conn = engine.conn_class(engine)
    conn.connection_made(NullTransport())
    engine.conns.add(conn)
    engine.read_buffer[: len(RESPONSE)] = RESPONSE
    conn.send(0, engine.payloads[0], 0.0, 0.0)
    engine.arrivals.head()
    us = timed(conn.buffer_updated, n)
    engine.take_interval()
    return us


def tick_batch(n: int, loop: asyncio.AbstractEventLoop, batch: int = 40) -> float:
    """The pacer's tick: ``_send_due`` sending ``batch`` due arrivals on as many free
    connections (their transports write nothing), per arrival."""
    engine = Engine(make_plan("http://127.0.0.1:1/index.txt", 64), loop)
    engine.timeout = 1e9  # always due, never dropped (as in ``open_model``)
    engine.arrivals.start(Schedule([Segment(0.0, 3600.0, 1e9, 1e9)], 1.0), time.monotonic() - 100.0)
    engine.t0, engine.pacing, engine.max_conns = engine.arrivals.t0, True, batch
    conns = []
    for _ in range(batch):
        conn = engine.conn_class(engine)
        conn.connection_made(NullTransport())
        engine.conns.add(conn)
        conns.append(conn)
    ticks = max(n // batch, 1)
    t = time.perf_counter()
    for _ in range(ticks):
        engine.idle[:] = conns
        engine._send_due(time.monotonic())
    us = (time.perf_counter() - t) / (ticks * batch) * 1e6
    engine.take_interval()
    return us


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--core", type=int, default=None)
    p.add_argument("--plan", choices=["static", "vars", "render"], default="static")
    args = p.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    json.dump(asyncio.run(run(args.n, args.plan)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
