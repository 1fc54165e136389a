"""A late interval amends the report of any ended run, also after a coordinator restart.

Real nats-server, the coordinator as a real process. Two generators are played by this
test (heartbeats into the registry, intervals as requests, resent on a 5xx as a
generator's outbox does); one of them sends its interval only after the run has ended
and the coordinator has been restarted, so nothing of the run is in any memory.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats
import numpy as np
import pytest

from schemas import subjects
from schemas.stats import IntervalStats, StatsAck
from services.common import histogram
from tests import plans
from tests.conftest import api_with
from tests.integration.test_scale_faults import SIM, _beat_forever, _interval, _report

pytestmark = pytest.mark.timeout(90)


async def _outbox(nc, stats: IntervalStats, limit_s: float = 30.0) -> str:
    """Send an interval until the coordinator takes it or refuses it for good (its answer:
    "" for an ack, else the error code), like the generator's outbox."""
    data = msgspec.json.encode(stats)
    deadline = time.monotonic() + limit_s
    while True:
        try:
            msg = await nc.request(subjects.stats(stats.run_id, stats.generator_id), data, timeout=2)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            code = "503"  # no coordinator right now
        else:
            code = msg.headers.get("Nats-Service-Error-Code", "") if msg.headers else ""
            if not code:
                assert msgspec.json.decode(msg.data, type=StatsAck).seq == stats.seq
                return ""
        if not code.startswith("5"):
            return code
        assert time.monotonic() < deadline, f"interval {stats.seq} of {stats.generator_id} never taken"
        await asyncio.sleep(0.2)  # the outbox's resend back-off, as the generator's own


def _counts(*encoded: str) -> np.ndarray:
    into = histogram.zeros()
    for text in encoded:
        histogram.add_sparse(into, histogram.decode_sparse(text))
    return into


async def test_a_late_interval_amends_a_report_stored_before_a_coordinator_restart(cluster):
    coord = cluster.coordinator()
    nc = await nats.connect(cluster.url)
    await coord.said("started", 20)  # its buckets made
    ids, state = ["g-a", "g-b"], {}
    beats = asyncio.create_task(_beat_forever(nc, ids, state))
    api = await api_with(cluster, 2)
    try:
        started = await api.start(plans.plan(SIM, name="late", rate=20, duration=1, timeout=0.2))
        run_id = started.run_id
        state.update({g: run_id for g in ids})
        on_time, late = _interval(run_id, "g-b", 0), _interval(run_id, "g-a", 0)
        assert await _outbox(nc, on_time) == ""
        # g-a's interval stays in its outbox: the run ends by its deadline without it
        before = await _report(api, run_id)
        assert before.totals.requests == 10 and "g-a" not in before.generators
        state.clear()

        coord.stop()  # nothing of the run is left in any coordinator's memory
        coord = cluster.coordinator()
        assert await _outbox(nc, late) == ""  # 503 while the run is reopened, then taken

        after = await api.report(run_id)
        assert after.totals.requests == 20
        assert after.requests["home"].requests == 20
        assert {g: t.requests for g, t in after.generators.items()} == {"g-a": 10, "g-b": 10}
        assert after.timeline[0].requests == 20
        assert np.array_equal(_counts(after.latency_histogram),
                              _counts(on_time.requests["home"].latency, late.requests["home"].latency))
        assert np.array_equal(_counts(after.service_histogram),
                              _counts(on_time.requests["home"].service, late.requests["home"].service))
        assert "t=0s interval 0 of generator g-a arrived after the report and was added to it" \
            in after.events
        assert after.events[: len(before.events)] == before.events  # the run's own, kept
        assert (after.state, after.ended_at, after.hosts) == (before.state, before.ended_at, before.hosts)
        assert (await api.get(run_id)).requests == 20

        # sent again (its ack lost), and again after one more restart: counted once
        assert await _outbox(nc, late) == ""
        coord.stop()
        coord = cluster.coordinator()
        assert await _outbox(nc, late) == ""
        again = await api.report(run_id)
        assert again.totals.requests == 20
        assert again.events.count(
            "t=0s interval 0 of generator g-a arrived after the report and was added to it") == 1

        # its run log gone (retention, the stream's max age): refused for good, not guessed
        await nc.jetstream().purge_stream(subjects.RUNLOG_STREAM, subject=subjects.runlog_of_run(run_id))
        coord.stop()
        coord = cluster.coordinator()
        assert await _outbox(nc, _interval(run_id, "g-a", 1)) == "409"
        assert (await api.report(run_id)).totals.requests == 20
    finally:
        beats.cancel()
        await api.close()
        await nc.close()
