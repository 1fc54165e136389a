"""The load engine's surface: what the service drives, and which engine runs a plan.

One surface for every engine (vegeta's ``Pacer``/``Attacker`` idea): the service starts
an engine on a ``Schedule`` anchored at a clock time, rebases it on a rate change,
hands it each new assignment, takes an ``Interval`` every second and drains it at the
end. Which engine runs a plan is decided here, once (docs/engine.md, "Shape"):

* static requests, templated ones included (a render per request: the plan's vars
  and generators such as ``{{$uuid}}``), plain or https with ``http2: off`` — the fast engine (``engine.Engine``;
  ``SURGE_WORKERS``: a pool of them, ``workers.PooledEngine``);
* anything with per-user state (flows, templates naming extracted values or data,
  data, the closed model, https,
  proxies, redirects) — the flow engine (``flows.FlowEngine``), whose HTTP/1.1 is the
  engine's own asyncio-protocol pool (``pool.py``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from schemas.control import Assignment
from services.generator import flows
from services.generator.engine import Engine
from services.generator.pacing import Schedule
from services.generator.recorder import Interval
from services.generator.workers import WorkerPool


@runtime_checkable
class LoadEngine(Protocol):
    """What ``service.RunTask`` calls; every engine has exactly this."""

    names: list[str]  # request (step) names, the index of every recorded outcome

    def start(self, schedule: Schedule, t0: float) -> None:
        """Open model: arrival i at ``t0 + schedule.time_of(i)`` (closed: users from ``t0``)."""

    def rebase(self, schedule: Schedule) -> None:
        """Follow ``schedule`` from now on (it continues the old one's count)."""

    def reassign(self, a: Assignment) -> None:
        """A new epoch's assignment (index/count: the closed model's part of the users)."""

    def now_s(self) -> float:
        """Seconds since the run's start."""

    def stop_pacing(self) -> None:
        """Send nothing due after now."""

    def in_flight(self) -> int:
        """Requests sent and not answered, plus arrivals waiting to be sent."""

    async def gather(self) -> None:
        """Before ``take_interval``: fold other processes' part of the second in."""

    def take_interval(self) -> Interval:
        """The outcomes recorded since the last call."""

    async def drain(self, limit_s: float) -> None:
        """Stop; wait up to ``limit_s`` for in-flight requests; close everything."""


def engine_for(a: Assignment, loop: asyncio.AbstractEventLoop,
               workers: WorkerPool | None = None) -> LoadEngine:
    """The engine that runs this assignment's plan, paying only for what it uses."""
    if flows.needs_flow_engine(a.plan):
        return flows.FlowEngine(a, loop)
    if workers is not None:  # SURGE_WORKERS: engine 0 here, the rest in worker processes
        return workers.engine(a.plan, loop, seed=a.index)
    return Engine(a.plan, loop, seed=a.index)
