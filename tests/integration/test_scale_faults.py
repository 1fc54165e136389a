"""The faults that lost data or load at scale (issue 18), each made to happen on purpose.

Real nats-server; the coordinator or generator under test runs in-process or as a real
process, and the moment of each race is forced with events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.control import Assignment
from services.plan import loader, profile
from services.generator.config import Config as GeneratorConfig
from services.generator.service import Service as GeneratorService
from tests.conftest import free_port, until
from tests import plans

pytestmark = pytest.mark.timeout(60)


async def test_stale_resync_answer_does_not_stop_a_run_the_watch_started(cluster):
    """The heartbeat's resync read is answered "not found" (issued before the assignment
    was written); the watch starts the run; only then does the stale answer arrive."""
    svc = GeneratorService(GeneratorConfig(nats_url=cluster.url, generator_id="g-stale",
                                           heartbeat_s=3600.0))
    await svc.start()
    nc = await nats.connect(cluster.url)
    try:
        real_get = svc.assignments.get
        answered, deliver = asyncio.Event(), asyncio.Event()

        async def get_then_hold(key, *args, **kwargs):
            try:
                return await real_get(key, *args, **kwargs)  # the server's real answer
            finally:
                answered.set()
                await deliver.wait()  # ... handed over only after the watch acted

        svc.assignments.get = get_then_hold
        resync = asyncio.create_task(svc._resync())
        await asyncio.wait_for(answered.wait(), 5)  # "not found" is on its way

        # a closed port on 127.0.0.1: requests fail fast, nothing leaves the machine
        plan = plans.plan(plans.BASIC, f"http://127.0.0.1:{free_port()}", name="tiny", rate=2.0,
                          duration=3.0, timeout=0.5, requests=[{"name": "home"}])
        prof = profile.from_plan(plan)
        start = time.time() + 0.3
        a = Assignment(run_id="r-stale", epoch=1, share=1.0, start_at=start,
                       end_at=start + profile.duration(prof), profile=prof, plan=plan)
        kv = await nc.jetstream().key_value(subjects.ASSIGN_BUCKET)
        await kv.put("g-stale", msgspec.json.encode(a))
        await until(lambda: svc.run is not None, 5, "the watch starting the run")

        deliver.set()
        await asyncio.wait_for(resync, 5)
        assert svc.run is not None and not svc.run.stopping.is_set(), \
            "a resync answer older than the watch's news stopped the run"
    finally:
        deliver.set()
        await nc.close()
        await svc.stop()
