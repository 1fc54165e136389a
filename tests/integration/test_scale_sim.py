"""200 simulated generators × 3 request names against a real coordinator: the report is exact.

``bench.simulator`` plays the generators in this process (heartbeats, assignment watch,
one interval a second each with real encoded histograms); the coordinator is a real
process. Every request any generator had acknowledged must be in the report: in total,
per name, per generator and in the histograms.
"""

from __future__ import annotations

import msgspec
import pytest

from bench.simulator import encoded_histograms, variant
from schemas import subjects
from schemas.stats import LiveSnapshot
from services.common import histogram
from tests import plans
from tests.conftest import until
from tests.integration.test_scale_faults import SIM, _report, simulated

pytestmark = pytest.mark.timeout(90)


async def test_200_generators_3_names_report_equals_every_acknowledged_interval(cluster):
    cluster.coordinator(SURGE_START_DELAY_S="1.5")
    names = ["home", "search", "order"]
    nc, sim, api = await simulated(cluster, 200, names, "s200")
    snapshots: list[LiveSnapshot] = []
    try:
        started = await api.start(plans.plan(SIM, name="s200", rate=200 * 10 * 3, duration=3, timeout=0.2,
                                             requests=[{"name": n} for n in names]))

        async def on_live(msg):
            snapshots.append(msgspec.json.decode(msg.data, type=LiveSnapshot))

        await nc.subscribe(subjects.live(started.run_id), cb=on_live)
        rep = await _report(api, started.run_id, 60)
        acked = sim.acked
        assert sim.refused == []
        assert len(acked.intervals) == 200 * 3
        assert rep.totals.requests == acked.total() == 200 * 3 * 3 * 10
        assert {k: v.requests for k, v in rep.requests.items()} == acked.by_name()
        assert {k: g.requests for k, g in rep.generators.items()} == acked.by_generator()
        assert sum(e.requests for e in rep.timeline) == acked.total()
        # the histograms too: the report's equals the sum of every interval sent
        expected = histogram.zeros()
        variants = encoded_histograms(10)
        for (gid, seq), counts in acked.intervals.items():
            lat, _ = variants[variant(gid, seq)]
            for _ in counts:
                histogram.add_sparse(expected, histogram.decode_sparse(lat))
        got = histogram.zeros()
        histogram.add_sparse(got, histogram.decode_sparse(rep.latency_histogram))
        assert (got == expected).all()
        seconds = [s for s in snapshots if not s.final]
        assert [s.seq for s in seconds] == [0, 1, 2]
        assert not any(g.lost for s in seconds for g in s.generators.values())
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


async def test_two_merger_workers_share_the_intake_and_the_report_stays_exact(cluster):
    """SURGE_MERGERS=2: two merger processes take the intervals as one queue group and
    hand the leader partial sums; the report still equals every acknowledged interval."""
    cluster.coordinator(SURGE_START_DELAY_S="1.5", SURGE_MERGERS="2")
    for i in range(2):
        cluster.service("coordinator.merger", name=f"merger-{i}", SURGE_MERGER_ID=f"merger-{i}")
    names = ["home", "order"]
    nc, sim, api = await simulated(cluster, 60, names, "m2")
    merged_by: set[str] = set()

    async def on_partial(msg):
        merged_by.add(msgspec.json.decode(msg.data)["merger_id"])

    await nc.subscribe(subjects.MERGED_ALL, cb=on_partial)
    try:
        started = await api.start(plans.plan(SIM, name="m2", rate=60 * 10 * 2, duration=3, timeout=0.2,
                                             requests=[{"name": n} for n in names]))
        rep = await _report(api, started.run_id, 60)
        acked = sim.acked
        assert sim.refused == []
        assert len(acked.intervals) == 60 * 3
        assert rep.totals.requests == acked.total()
        assert {k: v.requests for k, v in rep.requests.items()} == acked.by_name()
        assert {k: g.requests for k, g in rep.generators.items()} == acked.by_generator()
        assert merged_by == {"merger-0", "merger-1"}  # both workers took a share
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


async def test_a_slow_merger_is_no_evidence_against_the_generators_it_merges(cluster):
    """Two mergers, one handing its partials over only every 4 s (a busy worker): the
    other's rows of later seconds come first. That is no evidence that a generator whose
    first intervals the slow one holds sends nothing: nobody's share moves."""
    cluster.coordinator(SURGE_START_DELAY_S="1.0", SURGE_MERGERS="2")
    cluster.service("coordinator.merger", name="merger-fast", SURGE_MERGER_ID="merger-fast")
    cluster.service("coordinator.merger", name="merger-slow", SURGE_MERGER_ID="merger-slow",
                    SURGE_MERGER_FLUSH_S="4")
    nc, sim, api = await simulated(cluster, 12, ["home"], "ms")
    try:
        started = await api.start(plans.plan(SIM, name="ms", rate=12 * 10, duration=5, timeout=0.2))
        rep = await _report(api, started.run_id, 60)
        assert not [e for e in rep.events if "sends no intervals" in e or "lost" in e], rep.events
        assert rep.totals.requests == sim.acked.total() == 12 * 5 * 10
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


async def test_a_merger_that_dies_before_handing_over_loses_nothing_in_the_report(cluster):
    """The only merger acknowledges every interval (they are in the run log) but dies
    before it hands the leader anything: the leader's sweep of the run log counts them."""
    cluster.coordinator(SURGE_START_DELAY_S="1.0", SURGE_MERGERS="1")
    merger = cluster.service("coordinator.merger", name="merger-0", SURGE_MERGER_ID="merger-0",
                             SURGE_MERGER_FLUSH_S="3600")
    nc, sim, api = await simulated(cluster, 10, ["home"], "mx")
    try:
        started = await api.start(plans.plan(SIM, name="mx", rate=100, duration=2, timeout=0.2))
        await until(lambda: len(sim.acked.intervals) == 10 * 2, 20, "every interval acknowledged")
        merger.kill()
        rep = await _report(api, started.run_id, 40)
        assert rep.totals.requests == sim.acked.total() == 10 * 2 * 10
        assert {k: g.requests for k, g in rep.generators.items()} == sim.acked.by_generator()
        assert any("taken from the run log" in e for e in rep.events)
    finally:
        await sim.stop()
        await api.close()
        await nc.close()


SCALE_KEYS = {"generators", "names", "mergers", "coordinator_cpu_mean", "coordinator_cpu_max",
              "coordinator_rss_mb_max", "snapshot_lag_p50_s", "snapshot_lag_max_s", "snapshots",
              "snapshots_complete", "ack_latency_p99_ms", "report_exact"}


@pytest.mark.slow
def test_bench_scale_in_miniature_writes_every_figure(tmp_path):
    """`make bench-scale` at a tiny size (with and without a merger), so the harness cannot rot."""
    import json
    import subprocess
    import sys

    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "--points", "20x1,20x1m1",
                           "--seconds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr[-2000:]
    points = json.loads(out.read_text())["points"]
    assert len(points) == 2
    for row in points:
        assert SCALE_KEYS <= set(row)
        assert row["sent_requests"] == 20 * 2 * 10 and row["report_exact"] is True
