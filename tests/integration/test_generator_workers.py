"""A generator with SURGE_WORKERS=2 in a real run: one identity, two engine processes."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import pytest

from services.common import histogram
from tests.conftest import Cluster, api_with, one_seconds_count, target_stats, until
from tests.integration.test_distributed_run import finished_report, start_and_follow
from tests.plans import CHECKED, raw

pytestmark = pytest.mark.timeout(90)


async def test_two_engine_processes_report_as_one_generator_with_exact_totals(cluster: Cluster):
    _, target = cluster.target()
    cluster.coordinator()
    gen = cluster.generator(SURGE_WORKERS="2")
    api = await api_with(cluster, 1)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=300, duration="4s"))
    assert list(started.generators.values()) == [1.0]
    # the worker process carries half the load on its own connections to the target
    port = urlsplit(target).port
    workers = [c for c in psutil.Process(gen.pid).children()
               if "spawn_main" in " ".join(c.cmdline())]  # not multiprocessing's resource tracker
    assert len(workers) == 1

    async def worker_connected() -> bool:
        return any(c.raddr and c.raddr.port == port for c in workers[0].net_connections("tcp"))

    await until(worker_connected, 10, "the engine worker connected to the target")
    report = await finished_report(api, feed, started.run_id)

    expected = 300 * 4
    assert report.state == "finished"
    # the schedule's count is exact: every arrival is answered or dropped, none is lost
    assert report.totals.requests + report.totals.dropped == expected, report.totals
    assert abs(report.totals.requests - expected) <= expected * 0.01, report.totals
    assert report.totals.errors == 0, report.totals.error_kinds
    assert target_stats(target)["requests"] == report.totals.requests
    assert len(report.generators) == 1
    assert histogram.decode(report.histogram).get_total_count() == report.totals.requests
    assert sum(e.requests for e in report.timeline) == report.totals.requests
    for before, entry in zip([None, *report.timeline], report.timeline):
        assert entry.target_rps == 300  # the schedule's, exact
        # the generator's clock's: a second's latency says how much crossed its boundaries
        assert entry.requests == one_seconds_count(300, entry.p99_ms, before and before.p99_ms), report.timeline
    await api.close()
