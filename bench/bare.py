"""The floor under any Python client: a bare uvloop ``BufferedProtocol`` + httptools, no recording.

    python -m bench.bare URL --seconds 5 --conns 64 [--core 1]

Each connection writes the same request bytes again as soon as llhttp reports the
previous response complete. Nothing is measured per request; the Surge engine's
closed loop is this plus timing, recording, checks and bookkeeping, so the gap
between the two is what Surge's own code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

import httptools


class Bare(asyncio.BufferedProtocol):
    count = 0

    def __init__(self, request: bytes, view: memoryview) -> None:
        self.request = request
        self.view = view
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.parser.feed_data(self.view[:nbytes])

    def on_message_complete(self) -> None:
        Bare.count += 1
        self.transport.write(self.request)


async def run(url: str, seconds: float, conns: int) -> dict:
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "User-Agent: bare\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    view = memoryview(bytearray(256 << 10))
    transports = [
        (await loop.create_connection(lambda: Bare(request, view), parts.hostname, parts.port))[0]
        for _ in range(conns)
    ]
    await asyncio.sleep(0.5)
    n0, t0, c0 = Bare.count, time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    n, wall, cpu = Bare.count - n0, time.monotonic() - t0, time.process_time() - c0
    for t in transports:
        t.abort()
    return {"mode": "bare", "requests": n, "rps": n / wall, "cpu_s": cpu, "seconds": wall,
            "cpu_share": round(cpu / wall, 3),
            "cpu_us_per_req": cpu / max(n, 1) * 1e6}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--core", type=int, default=None)
    args = p.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    import uvloop

    json.dump(uvloop.run(run(args.url, args.seconds, args.conns)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
