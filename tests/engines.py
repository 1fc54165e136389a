"""An engine run the generator service's way, for the tests that drive one in-process.

``assignment`` wraps a plan as the coordinator would for one generator running a
constant rate; ``run_arrivals`` starts an engine (any of ``load.engine_for``'s) on that
schedule, waits until every arrival has been answered (an event: the engine has nothing
in flight or waiting once the schedule's last arrival is due), drains it and returns
the interval. What a test checks is the interval and what its server received.
"""

from __future__ import annotations

import time

from schemas.control import Assignment, Segment
from schemas.plan import Plan
from services.generator.pacing import Schedule
from tests.conftest import until


def constant(rate: float, arrivals: int) -> list[Segment]:
    """A profile of ``arrivals`` at ``rate`` a second, from 0 s."""
    return [Segment(0.0, arrivals / rate, rate, rate)]


def assignment(plan: Plan, rate: float, arrivals: int, run_id: str = "r") -> Assignment:
    """The whole of a constant-rate run, for one generator (share 1)."""
    now = time.time()
    return Assignment(run_id=run_id, epoch=1, share=1.0, start_at=now, end_at=now + 5,
                      profile=constant(rate, arrivals), plan=plan)


async def run_arrivals(engine, rate: float, arrivals: int, limit_s: float = 20.0):
    """Start ``engine`` on ``arrivals`` at ``rate``, wait until each is answered (or failed),
    then drain it: the run's interval."""
    t0 = time.monotonic()
    engine.start(Schedule(constant(rate, arrivals), 1.0), t0)
    await until(lambda: engine.in_flight() == 0 and time.monotonic() > t0 + arrivals / rate, limit_s,
                f"every one of {arrivals} arrivals answered")
    await engine.gather()
    await engine.drain(2.0)
    return engine.take_interval()
