"""The load engine's surface: what the service drives, and which engine runs a plan.

One surface for every engine (vegeta's ``Pacer``/``Attacker`` idea): the service starts
an engine on a ``Schedule`` anchored at a clock time, rebases it on a rate change,
hands it each new assignment, takes an ``Interval`` every second and drains it at the
end. One engine runs every plan (``engine.Engine``, docs/engine.md, "Shape"); what an
arrival does is decided once per plan:

* static requests, templated ones included (a render per request: the plan's vars
  and generators such as ``{{$uuid}}``), plain or https with ``http2: off`` — one request
  on a free connection (``Engine`` without users; ``SURGE_WORKERS``: a pool of them,
  ``workers.PooledEngine``);
* the same over https with ``http2: auto`` (the default) — the target decides by ALPN
  (``ByAlpn``): virtual users on HTTP/2 when it picks ``h2``, else the fast path;
* the closed model (``users``/``user_stages``) of such a plan — a user per connection of
  the same engine (``closed.ClosedLoop``), each sending its next request when its
  response completes;
* anything with per-user state (flows, templates naming extracted values or data,
  data, https that may speak HTTP/2, proxies, redirects) — a
  virtual user's flow per arrival (``Engine`` with ``flows.Users``), whose HTTP/1.1 is
  the engine's own pool (``pool.py``) of the fast path's protocol (``http.Connection``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

import msgspec
import structlog

from schemas.control import Assignment
from services.generator import flows, transport
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


log = structlog.get_logger(__name__)


def engine_for(a: Assignment, loop: asyncio.AbstractEventLoop,
               workers: WorkerPool | None = None) -> LoadEngine:
    """The engine that runs this assignment's plan, paying only for what it uses."""
    plan = a.plan
    if (plan.target.startswith("https:") and plan.http2 == "auto"
            and not flows.needs_users(msgspec.structs.replace(plan, http2="off"))):
        return ByAlpn(a, loop, workers)
    if flows.needs_users(plan):
        return Engine.of(a, loop, per_user=True)
    return _fast(a, loop, workers)


def _fast(a: Assignment, loop: asyncio.AbstractEventLoop, workers: WorkerPool | None) -> LoadEngine:
    if workers is not None:  # SURGE_WORKERS: engine 0 here, the rest in worker processes
        return workers.engine(a.plan, loop, seed=a.index, index=a.index, count=a.count)
    return Engine.of(a, loop, per_user=False)


class ByAlpn:
    """An https plan the fast engine could run, with ``http2: auto``: the target picks
    the protocol by ALPN, as for the flow engine (``transport.alpn``, one TLS handshake
    when the run is set up). ``h2``: the flow engine (HTTP/2), handed the answer so it
    does not ask again; anything else, or a probe that fails: the fast engine
    (HTTP/1.1). Calls made before the answer are replayed to the engine in order; nothing is sent meanwhile, so arrivals that fell due go at once
    and count late if they waited more than 10 ms. No answer by the drain: the fast
    engine, so the run's arrivals are in its report (sent or dropped), not lost."""

    def __init__(self, a: Assignment, loop: asyncio.AbstractEventLoop,
                 workers: WorkerPool | None) -> None:
        self.a, self.loop, self.workers = a, loop, workers
        self.names = [r.name for r in a.plan.requests]  # the flow engine's step names too
        self.inner: LoadEngine | None = None
        self.t0: float | None = None
        self._calls: list[tuple[str, tuple]] = []
        self._probe = loop.create_task(self._choose(), name="alpn")

    async def _choose(self) -> None:
        plan = self.a.plan
        try:
            picked = await transport.alpn(plan, plan.timeout)
        except Exception as exc:  # as the flow engine does: HTTP/1.1, whose requests will tell
            log.warning("ALPN probe failed; using HTTP/1.1", target=plan.target, error=repr(exc))
            picked = None
        if picked == transport.H2:
            inner: LoadEngine = Engine.of(self.a, self.loop, per_user=True)
            inner.users.alpn = picked  # type: ignore[attr-defined]  # asked once: not again
        else:
            inner = _fast(self.a, self.loop, self.workers)
        log.info("engine chosen by ALPN", target=plan.target, protocol=picked or "http/1.1",
                 engine=type(inner).__name__, users=getattr(inner, "users", None) is not None)
        self._use(inner)

    def _use(self, inner: LoadEngine) -> None:
        for name, args in self._calls:
            getattr(inner, name)(*args)
        self._calls = []
        self.inner = inner

    def _call(self, name: str, *args) -> None:
        if self.inner is not None:
            getattr(self.inner, name)(*args)
        else:
            self._calls.append((name, args))

    def start(self, schedule: Schedule, t0: float) -> None:
        self.t0 = t0
        self._call("start", schedule, t0)

    def rebase(self, schedule: Schedule) -> None:
        self._call("rebase", schedule)

    def reassign(self, a: Assignment) -> None:
        self.a = a
        self._call("reassign", a)

    def now_s(self) -> float:
        if self.inner is not None:
            return self.inner.now_s()
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def stop_pacing(self) -> None:
        self._call("stop_pacing")

    def in_flight(self) -> int:
        return self.inner.in_flight() if self.inner is not None else 0

    async def gather(self) -> None:
        if self.inner is not None:
            await self.inner.gather()

    def take_interval(self) -> Interval:
        return self.inner.take_interval() if self.inner is not None else Interval(len(self.names))

    async def drain(self, limit_s: float) -> None:
        if self.inner is None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.inner is None and self.t0 is not None:
            # the run ended before the target answered: as after a failed probe, the fast
            # engine takes the calls, so what fell due is sent or counted dropped, not lost
            log.warning("no ALPN answer before the run's end; using HTTP/1.1", target=self.a.plan.target)
            self._use(_fast(self.a, self.loop, self.workers))
        if self.inner is not None:
            await self.inner.drain(limit_s)
