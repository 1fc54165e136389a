"""Live rate change end to end: the change request → the assignment write → the generator on the wire.

    python -m bench.rate_e2e URL [--changes 50] [--rate 2000] [--server-core 0] [--client-core 1]

Starts a real nats-server (JetStream, temp dir), a coordinator and one generator
service as processes, starts a run against URL through the coordinator's API, then
changes its rate ``changes`` times (alternating ``rate`` and 1.5 × ``rate``), two
seconds apart. The generator's interval stats say, for each new epoch,
when the coordinator's assignment write was stored (the NATS server's timestamp of the
KV entry) and when its engine began following it; this listens to those intervals on
the bus (as the coordinator does) and prints one JSON object:

* ``write_to_applied_*``: assignment write → engine following the new schedule (the
  issue's figure; the engine's own step to the first arrival on the wire is
  ``ratechange`` in ``bench.surge_run``, ~1 ms);
* ``request_to_applied_*``: the operator's request (``surge rate``) → the same;
* ``next_second``: the first whole interval after each change, its count against the
  new rate (the change really took: the next second runs at the new rate).

Everything runs on this machine: one clock for the server's timestamps and ours.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec

from bench.stack import Services, connect, pct, plan_for, run_measurement
from schemas import subjects
from schemas.stats import IntervalStats


async def measure(args, services: Services) -> dict:
    api = await connect(args.nats)
    changes: dict[int, tuple[float | None, float]] = {}  # epoch -> (written_at, applied_at)
    counts: dict[int, int] = {}  # interval seq -> completed requests
    got = asyncio.Event()

    async def on_interval(msg) -> None:
        stats = msgspec.json.decode(msg.data, type=IntervalStats)
        counts[stats.seq] = counts.get(stats.seq, 0) + sum(r.count for r in stats.requests.values())
        for c in stats.changes:
            changes[c.epoch] = (c.written_at, c.applied_at)
        got.set()

    # a change every 2 s, at 0.8 s into a second: each is followed by a whole interval
    # (seq k covers [start_at + k, start_at + k + 1)) at its rate before the next change
    every = 2.0
    duration = args.changes * every + 6
    plan = plan_for(args.url, rate=args.rate, duration_s=math.ceil(duration), conns=32,
                    name="bench-rate-change")
    started = await api.start(plan)
    await api.nc.subscribe(subjects.stats_of_run(started.run_id), cb=on_interval)
    asked: dict[int, tuple[float, float]] = {}  # epoch -> (request sent, new rate)
    for k in range(args.changes):
        rate = args.rate * (1.5 if k % 2 == 0 else 1.0)
        await asyncio.sleep(max(started.start_at + 1.8 + k * every - time.time(), 0))
        t = time.time()
        ok = await api.rate(started.run_id, rate)
        asked[ok.epoch] = (t, rate)
    last_second = math.ceil(time.time() - started.start_at)  # the last change's whole second
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (set(asked) <= set(changes) and last_second in counts):
        got.clear()
        try:
            await asyncio.wait_for(got.wait(), 1.5)
        except asyncio.TimeoutError:
            pass
    await api.stop(started.run_id)
    await api.close()

    write_ms, request_ms, next_err = [], [], []
    for epoch, (t_req, rate) in asked.items():
        if epoch not in changes:
            continue
        written, applied = changes[epoch]
        request_ms.append((applied - t_req) * 1000)
        if written is not None:
            write_ms.append((applied - written) * 1000)
        seq = math.ceil(applied - started.start_at)  # the first whole second at the new rate
        following = changes.get(epoch + 1)
        whole = following is None or following[1] >= started.start_at + seq + 1
        if whole and seq in counts:
            next_err.append(abs(counts[seq] - rate) / rate * 100)
    return {
        "changes": len(asked), "seen": len(set(asked) & set(changes)), "rate": args.rate,
        "write_to_applied_p50_ms": pct(write_ms, 0.5), "write_to_applied_p99_ms": pct(write_ms, 0.99),
        "write_to_applied_max_ms": pct(write_ms, 1.0),
        "request_to_applied_p50_ms": pct(request_ms, 0.5), "request_to_applied_p99_ms": pct(request_ms, 0.99),
        "next_second_worst_error_pct": pct(next_err, 1.0), "next_seconds_checked": len(next_err),
        "scope": "coordinator's assignment write (NATS server timestamp) → the generator's engine on the "
                 "new schedule, real processes over NATS",
    }


def main() -> None:
    run_measurement("python -m bench.rate_e2e", measure, changes=50, rate=2000.0)


if __name__ == "__main__":
    main()
