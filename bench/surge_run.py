"""One Surge engine measurement in this process; prints one JSON object on stdout.

    python -m bench.surge_run closed URL --seconds 10 --conns 64 [--core 1]
    python -m bench.surge_run open URL --rate 20000 --seconds 6
    python -m bench.surge_run ratechange URL --rate 5000 --changes 50
    python -m bench.surge_run rss URL --rate 20000 --seconds 60

The engine runs exactly as in the generator service: every response's latency is
appended, and every second the interval is bucketed into HdrHistograms and encoded
(``Interval.to_stats``), the same work the service does before publishing. CPU is this
process's CPU time over the measured span (startup excluded). ``closed`` runs a plan's
own closed model (``users: CONNS``, static requests) through the service's entry
(``load.engine_for`` + ``start``, with ``--workers`` a ``WorkerPool``): what a user's
closed plan runs, one user per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import time

import msgspec

from bench.stack import pct, plan_for
from schemas.control import Assignment, Segment
from services.common import histogram
from services.generator.engine import Engine
from services.generator.load import LoadEngine, engine_for
from services.generator.pacing import Schedule, start_schedule
from services.generator.workers import WorkerPool
from services.plan import profile


def make_plan(url: str, conns: int, timeout_s: float = 5.0):
    return plan_for(url, conns=conns, timeout_s=timeout_s)


class Meter:
    """Takes the engine's interval every second, as the service does, and keeps totals."""

    def __init__(self, engine: Engine, totals: bool = True) -> None:
        self.engine = engine
        self.totals = totals  # merge into a run histogram (the coordinator's work, not the generator's)
        self.lat = histogram.new()
        self.seconds: list[dict] = []
        self.errors: dict[str, int] = {}
        self._clock = (time.monotonic(), time.process_time())

    def take(self, target: float = 0.0) -> None:
        interval = self.engine.take_interval()
        stats = interval.to_stats(self.engine.names, run_id="bench", generator_id="bench",
                                  epoch=1, seq=len(self.seconds), target=target,
                                  in_flight=self.engine.in_flight())
        count = 0
        for r in stats.requests.values():
            count += r.count
            if self.totals:
                h = histogram.decode(r.latency)
                histogram.add(self.lat, h)
                h.encoder.histogram = None  # hdrh's reference cycle: free it now, not at a full GC
            for k, n in r.errors.items():
                self.errors[k] = self.errors.get(k, 0) + n
        late = sum(r.late for r in stats.requests.values())
        dropped = sum(r.dropped for r in stats.requests.values())
        # this process's share of its core over the second: a second that fell short with
        # the core at 100 % was CPU-bound; one well under 100 % had the core taken away
        wall, cpu = time.monotonic(), time.process_time()
        core_pct = 100 * (cpu - self._clock[1]) / max(wall - self._clock[0], 1e-9)
        self._clock = (wall, cpu)
        self.seconds.append({"count": count, "sent": stats.sent, "target": target,
                             "late": late, "dropped": dropped, "core_pct": round(core_pct, 1)})

    def summary(self) -> dict:
        return {
            "p50_ms": histogram.percentile_ms(self.lat, 50.0),
            "p99_ms": histogram.percentile_ms(self.lat, 99.0),
            "max_ms": histogram.percentile_ms(self.lat, 100.0),
            "errors": self.errors,
        }


async def every_second(meter: Meter, t0: float, seconds: int, target: float = 0.0) -> None:
    for k in range(seconds):
        await asyncio.sleep(max(t0 + k + 1 - time.monotonic(), 0))
        await meter.engine.gather()
        meter.take(target)


def closed_assignment(url: str, users: int, duration_s: float) -> Assignment:
    """A plan's closed model as the coordinator assigns it to a lone generator: ``users``
    users (static requests: one keep-alive connection each) for ``duration_s``."""
    plan = msgspec.structs.replace(make_plan(url, users), rate=None, users=users, duration=duration_s)
    now = time.time()
    return Assignment(run_id="bench", epoch=1, share=1.0, start_at=now, end_at=now + duration_s,
                      profile=profile.from_plan(plan), plan=plan)


async def start_closed_plan(args, loop) -> tuple[LoadEngine, WorkerPool | None]:
    """The service's start of a closed plan: ``engine_for`` (with ``--workers N`` on a
    ``WorkerPool``, SURGE_WORKERS) and ``start`` on the assignment's schedule, now."""
    pool = None
    if args.workers > 1:
        pool = WorkerPool(args.workers)
        await pool.start()
        await pool.ready()  # every worker imported: the run starts together
    a = closed_assignment(args.url, args.conns, args.warmup + args.seconds + 5.0)
    engine = engine_for(a, loop, pool)
    engine.start(start_schedule(a.profile, a.share), time.monotonic())
    return engine, pool


async def closed(args) -> dict:
    loop = asyncio.get_running_loop()
    engine, pool = await start_closed_plan(args, loop)
    meter = Meter(engine)
    # warm up: connections open, caches warm; not measured
    await asyncio.sleep(args.warmup)
    await engine.gather()
    engine.take_interval()
    t0, cpu0 = time.monotonic(), time.process_time()
    await every_second(meter, t0, args.seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    await engine.drain(1.0)
    if pool is not None:
        await pool.close()
    total = sum(s["count"] for s in meter.seconds)
    return {"mode": "closed", "conns": args.conns, "users": args.conns, "workers": args.workers,
            "entry": f"load.engine_for -> {type(engine).__name__}.start (the plan's closed model)",
            **({"cpu_note": "engine 0's process only"} if args.workers > 1 else {}), "requests": total, "seconds": wall,
            "rps": total / wall, "cpu_s": cpu, "cpu_us_per_req": cpu / max(total, 1) * 1e6,
            "per_second": [s["count"] for s in meter.seconds],
            "best_second_rps": max((s["count"] for s in meter.seconds), default=0), **meter.summary()}


async def open_(args) -> dict:
    loop = asyncio.get_running_loop()
    engine = Engine(make_plan(args.url, args.conns), loop)
    meter = Meter(engine)
    start_at = time.monotonic() + 0.2
    schedule = Schedule([Segment(0.0, float(args.seconds), args.rate, args.rate)], 1.0)
    cpu0 = time.process_time()
    engine.start(schedule, start_at)
    await every_second(meter, start_at, args.seconds, target=args.rate)
    cpu = time.process_time() - cpu0
    await engine.drain(1.0)
    counts = [s["count"] for s in meter.seconds]
    errs = [abs(c - args.rate) / args.rate * 100 for c in counts]
    steady = errs[1:] or errs
    total = sum(counts)
    return {"mode": "open", "target_rps": args.rate, "seconds": args.seconds, "achieved_rps": total / args.seconds,
            "requests": total, "cpu_s": cpu, "cpu_us_per_req": cpu / max(total, 1) * 1e6,
            "worst_second_error_pct": round(max(errs), 3),
            "worst_steady_second_error_pct": round(max(steady), 3),
            "late": sum(s["late"] for s in meter.seconds),
            "dropped": sum(s["dropped"] for s in meter.seconds),
            "per_second": counts, "per_second_core_pct": [sec["core_pct"] for sec in meter.seconds],
            **meter.summary()}


async def ratechange(args) -> dict:
    """Rebase the schedule ``changes`` times; time from rebase() until the pacer sends at
    the new rate (the first arrival of the new schedule on the wire)."""
    loop = asyncio.get_running_loop()
    engine = Engine(make_plan(args.url, args.conns), loop)
    horizon = float(args.changes) * 0.25 + 5.0
    schedule = Schedule([Segment(0.0, horizon, args.rate, args.rate)], 1.0)
    t0 = time.monotonic() + 0.1
    engine.start(schedule, t0)
    await asyncio.sleep(1.0)
    delays = []
    for k in range(args.changes):
        rate = args.rate * (0.5 if k % 2 == 0 else 1.0)
        at = engine.now_s()
        new = schedule.rebased(at, [Segment(0.0, horizon, rate, rate)], 1.0)
        first_new = math.ceil(new.count_at(at) - 1e-9)
        changed = time.monotonic()
        engine.rebase(new)
        schedule = new
        while engine.arrivals.i <= first_new:
            await asyncio.sleep(0.0002)
        delays.append((time.monotonic() - changed) * 1000)
        await asyncio.sleep(0.2)
        engine.take_interval()
    await engine.drain(1.0)
    return {"mode": "ratechange", "changes": len(delays),
            "p50_ms": pct(delays, 0.5), "p99_ms": pct(delays, 0.99), "max_ms": pct(delays, 1.0), "scope": "engine: rebase() to the first arrival sent on the new schedule"}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def rss(args) -> dict:
    loop = asyncio.get_running_loop()
    engine = Engine(make_plan(args.url, args.conns), loop)
    meter = Meter(engine, totals=False)  # what the generator process does, nothing more
    start_at = time.monotonic() + 0.2
    schedule = Schedule([Segment(0.0, float(args.seconds), args.rate, args.rate)], 1.0)
    engine.start(schedule, start_at)
    samples: list[float] = []
    late = dropped = backlog_max = 0
    for k in range(args.seconds):
        await asyncio.sleep(max(start_at + k + 1 - time.monotonic(), 0))
        meter.take(args.rate)
        late += meter.seconds[-1]["late"]
        dropped += meter.seconds[-1]["dropped"]
        meter.seconds.clear()  # keep nothing per second: only the RSS matters here
        samples.append(rss_mb())
        backlog_max = max(backlog_max, engine.waiting())
    await engine.drain(1.0)
    warm = min(10, max(len(samples) // 6, 1))  # allocator and histogram warm-up
    base = samples[warm - 1]
    return {"mode": "rss", "rate": args.rate, "seconds": args.seconds,
            "rss_start_mb": round(base, 2), "rss_end_mb": round(samples[-1], 2),
            "rss_max_mb": round(max(samples[warm - 1:]), 2),
            "growth_mb": round(max(samples[warm - 1:]) - base, 2),
            "samples_mb": [round(x, 1) for x in samples],
            # arrivals waiting for a connection hold memory (bounded by rate × timeout):
            # a starved core shows here, not as a leak
            "late": late, "dropped": dropped, "backlog_max": backlog_max,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["closed", "open", "ratechange", "rss"])
    p.add_argument("url")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--changes", type=int, default=50)
    p.add_argument("--core", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="engine processes (SURGE_WORKERS)")
    args = p.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    import uvloop

    run = {"closed": closed, "open": open_, "ratechange": ratechange, "rss": rss}[args.mode]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    result = uvloop.run(run(args))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    # how contended the core was: preemptions, and the share of the wall the process ran
    result["preempted"] = ru1.ru_nivcsw - ru0.ru_nivcsw
    if "cpu_s" in result and result.get("seconds"):
        result["cpu_share"] = round(result["cpu_s"] / result["seconds"], 3)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
