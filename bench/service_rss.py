"""RSS of a real generator service over a long run at a fixed rate, through the whole stack.

    python -m bench.service_rss URL [--rate 20000] [--seconds 600] [--server-core 0] [--client-core 1]

What the issue asks of "a generator": ``python -m services.generator`` as a process,
registered over NATS, carrying a coordinator's run against URL with its 1-second
interval histograms encoded, sent and acknowledged, its heartbeat and its outbox. Its
RSS is sampled every second (psutil); the first tenth of the run (at most 10 s) is
warm-up (allocator arenas, histogram buffers). The intervals on the bus say what rate
it really carried. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import psutil

from bench.stack import Services, connect, plan_for, run_measurement
from schemas import subjects
from schemas.stats import IntervalStats


async def measure(args, services: Services) -> dict:
    api = await connect(args.nats)
    proc = psutil.Process(services.generator.pid)
    counts: dict[int, int] = {}
    late = dropped = 0

    async def on_interval(msg) -> None:
        nonlocal late, dropped
        stats = msgspec.json.decode(msg.data, type=IntervalStats)
        counts[stats.seq] = counts.get(stats.seq, 0) + sum(r.count for r in stats.requests.values())
        late += sum(r.late for r in stats.requests.values())
        dropped += sum(r.dropped for r in stats.requests.values())

    plan = plan_for(args.url, rate=args.rate, duration_s=args.seconds, conns=64, name="bench-rss")
    started = await api.start(plan)
    await api.nc.subscribe(subjects.stats_of_run(started.run_id), cb=on_interval)
    samples: list[float] = []
    for k in range(args.seconds):
        await asyncio.sleep(max(started.start_at + k + 1 - time.time(), 0))
        samples.append(proc.memory_info().rss / 2**20)
    # every interval reaches the coordinator (and us) within a couple of seconds of the end
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(counts) < args.seconds:
        await asyncio.sleep(0.2)
    record = await api.get(started.run_id)
    while record.state == "running" and time.monotonic() < deadline + 10:  # its final interval
        await asyncio.sleep(0.2)
        record = await api.get(started.run_id)
    await api.close()
    warm = min(10, max(len(samples) // 10, 1))
    base = samples[warm - 1]
    steady = [counts[k] for k in sorted(counts)[1:-1]]
    return {
        "mode": "service_rss", "rate": args.rate, "seconds": args.seconds, "state": record.state,
        "rss_start_mb": round(base, 2), "rss_end_mb": round(samples[-1], 2),
        "rss_max_mb": round(max(samples[warm - 1:]), 2),
        "growth_mb": round(max(samples[warm - 1:]) - base, 2),
        "samples_mb": [round(x, 1) for x in samples[:: max(len(samples) // 120, 1)]],
        "achieved_rps": round(sum(counts.values()) / args.seconds, 1),
        "worst_second_error_pct": round(max((abs(c - args.rate) / args.rate * 100 for c in steady), default=0), 3),
        "late": late, "dropped": dropped,
        "scope": "python -m services.generator under a coordinator over NATS (intervals encoded, sent, acked)",
    }


def main() -> None:
    run_measurement("python -m bench.service_rss", measure, rate=20000.0, seconds=600)


if __name__ == "__main__":
    main()
