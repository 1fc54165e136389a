"""A generator assigned before the start whose engine is ready only after it (a flow
plan's steps compiled, first imports, on a busy machine) runs the whole schedule: what
fell due meanwhile goes out late, or is counted dropped, never silently skipped as a
late joiner's would be. Real nats-server, the generator service in-process, a real
HTTP server on 127.0.0.1 counting what it received."""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.control import Assignment
from schemas.stats import IntervalStats
from services.generator import service as generator_service
from services.generator.config import Config as GeneratorConfig
from services.generator.service import Service as GeneratorService
from services.plan import profile
from tests import plans
from tests.events import Heard
from tests.integration.test_http_conformance import Server, ok

pytestmark = pytest.mark.timeout(60)


async def test_an_engine_ready_after_the_start_sends_the_whole_schedule(cluster, monkeypatch):
    real_engine_for = generator_service.engine_for

    def slow_engine_for(*args, **kwargs):
        time.sleep(0.8)  # building the engine holds the loop past the start, as a compile does
        return real_engine_for(*args, **kwargs)

    monkeypatch.setattr(generator_service, "engine_for", slow_engine_for)
    svc = GeneratorService(GeneratorConfig(nats_url=cluster.url, generator_id="g-slow"))
    await svc.start()
    nc = await nats.connect(cluster.url)
    heard = Heard()

    async def coordinator(msg):  # takes every interval, as the coordinator acknowledges it
        heard.add(msgspec.json.decode(msg.data, type=IntervalStats))
        await msg.respond(b"{}")

    await nc.subscribe(subjects.stats("r-slow", "g-slow"), cb=coordinator)
    try:
        async with Server(ok) as srv:
            plan = plans.plan(plans.BASIC, srv.url, name="slow", rate=10.0, duration=2.0, timeout=5.0)
            prof = profile.from_plan(plan)
            start = time.time() + 0.3  # before the engine is ready
            a = Assignment(run_id="r-slow", epoch=1, share=1.0, start_at=start,
                           end_at=start + profile.duration(prof), profile=prof, plan=plan)
            kv = await nc.jetstream().key_value(subjects.ASSIGN_BUCKET)
            await kv.put("g-slow", msgspec.json.encode(a))
            await heard.first(lambda s: s.final, 20, "the final interval")
            intervals = heard.items
            sent = sum(s.sent for s in intervals)
            dropped = sum(r.dropped for s in intervals for r in s.requests.values())
            assert sent + dropped == 20, (sent, dropped, [(s.seq, s.sent, s.target) for s in intervals])
            assert len(srv.received) == sent
            assert sum(s.target for s in intervals) == 20  # the seconds' targets are the plan's
    finally:
        await nc.close()
        await svc.stop()
