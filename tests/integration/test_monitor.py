"""The monitor with real parts: nats-server, the monitor as a process, VictoriaMetrics.

VictoriaMetrics stands in for InfluxDB: it accepts influxdb-client's v2 writes and
gives back every raw sample (duplicates too) through /api/v1/export, so "written
exactly once" is checked by counting samples per timestamp.
"""

from __future__ import annotations

import collections
import json
import time

import msgspec
import nats
import psutil
import pytest

from schemas import subjects
from schemas.host import Alert, HostSample, MonitorStatus
from schemas.stats import LiveGenerator, LiveRequest, LiveSnapshot
from tests.conftest import Cluster, until
from tests.events import Heard
from tests.victoria import Victoria

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def victoria(tmp_path):
    vm = Victoria(tmp_path)
    vm.start()
    yield vm
    vm.stop()


async def status(nc, host: str) -> MonitorStatus | None:
    try:
        msg = await nc.request(subjects.monitor_status(subjects.token(host)), b"", timeout=1)
        return msgspec.json.decode(msg.data, type=MonitorStatus)
    except Exception:
        return None


def snapshot(run_id: str, at: float, **over) -> LiveSnapshot:
    fields = dict(
        run_id=run_id, plan_name="checkout", state="running", seq=3, at=at, elapsed_s=4.0,
        duration_s=30.0, target_rps=200.0, rps=198.0, requests=198, errors=3,
        error_rate=3 / 198, late=5, dropped=1, in_flight=7, p50_ms=1.5, p90_ms=4.25,
        p99_ms=12.5, max_ms=40.0, total_requests=800, total_errors=9,
        per_request={
            "home": LiveRequest(rps=150.0, errors=1, p50_ms=1.25, p90_ms=3.5, p99_ms=9.0),
            "order": LiveRequest(rps=48.0, errors=2, p50_ms=2.5, p90_ms=6.0, p99_ms=20.0),
        },
        generators={
            "gen-a": LiveGenerator(target_rps=100.0, rps=99.0, sent=100, late=2, dropped=0,
                                   p99_ms=11.0, behind=False),
            "gen-b": LiveGenerator(target_rps=100.0, rps=99.0, sent=98, late=3, dropped=1,
                                   p99_ms=14.0, behind=True),
        },
    )
    fields.update(over)
    return LiveSnapshot(**fields)


async def read(vm: Victoria, match: str, at_least: int = 1, samples: int = 1) -> list[dict]:
    """The series matching ``match`` once ``at_least`` of them, each with ``samples``
    samples, are searchable (VictoriaMetrics shows what it took a moment later)."""

    def found() -> list[dict] | None:
        series = vm.export(match)
        if len(series) >= at_least and all(len(s["timestamps"]) >= samples for s in series):
            return series
        return None

    return await until(found, 10, f"{match} in VictoriaMetrics", every_s=0.2)


def by_label(series: list[dict], label: str) -> dict[str, dict]:
    return {s["metric"][label]: s for s in series}


async def test_host_samples_arrive_on_bus_with_sane_values(cluster: Cluster, make_monitor):
    host = "it-host.one"  # not a safe subject token: published as it-host-one
    nc = await nats.connect(cluster.url)
    heard = await Heard.subscribe(nc, subjects.host("it-host-one"),
                                  lambda msg: msgspec.json.decode(msg.data, type=HostSample))
    alerted = await Heard.subscribe(nc, subjects.alerts("it-host-one"),
                                    lambda msg: msgspec.json.decode(msg.data, type=Alert))
    samples, alerts = heard.items, alerted.items
    await nc.flush()
    monitor = make_monitor(host, SURGE_SAMPLE_S="0.3",
                           SURGE_ALERTS="always=cpu_pct>=0, cpu_high=cpu_pct>90 for 30s")
    try:
        await heard.until(lambda: len(samples) >= 3, 20, "three host samples")
        s = samples[-1]
        assert s.host == host
        assert abs(s.ts - time.time()) < 5
        # the time between its readings, which is exact (the readings' own clocks), not the
        # 0.3 s cadence: a slow reading on a loaded machine takes from one and gives to the next
        assert s.interval_s == pytest.approx(s.ts - samples[-2].ts, abs=0.01)
        assert 0.0 < s.interval_s < 1.0
        assert s.cores == psutil.cpu_count() == len(s.cpu_per_core)
        assert 0.0 <= s.cpu_pct <= 100.0 and all(0.0 <= c <= 100.0 for c in s.cpu_per_core)
        assert 0.0 <= s.iowait_pct <= 100.0
        assert s.mem_total_bytes == psutil.virtual_memory().total
        assert 0 < s.mem_used_bytes < s.mem_total_bytes and 0.0 < s.mem_pct < 100.0
        assert s.load1 >= 0.0
        assert s.disk_free_pct is not None and 0.0 < s.disk_free_pct <= 100.0
        assert "lo" in s.net and s.net["lo"].rx_bps >= 0.0
        assert s.tcp.get("ESTABLISHED", 0) >= 2  # at least the monitor's and our NATS links
        assert s.tcp.get("LISTEN", 0) >= 1  # nats-server
        assert s.open_fds is not None and s.open_fds > 0
        mine = [p for p in s.processes if p.pid == monitor.pid]
        assert mine and mine[0].name == "monitor" and mine[0].rss_bytes > 10_000_000
        assert 0.0 <= mine[0].cpu_pct < 250.0

        # the always-true rule fired once; the 30 s rule not (yet)
        await alerted.until(lambda: alerts, 5, "an alert")
        assert [(a.name, a.state) for a in alerts] == [("always", "firing")]
        assert alerts[0].host == host and alerts[0].metric == "cpu_pct"

        st = await status(nc, host)
        assert st is not None and st.influx is False and st.samples >= 3
        info = json.loads((await nc.request(f"$SRV.INFO.{subjects.MONITOR_SERVICE}", b"",
                                            timeout=2)).data)
        assert info["name"] == subjects.MONITOR_SERVICE
        assert info["metadata"]["host"] == host and info["metadata"]["influx"] == "False"
        assert "buffered_points" in info["metadata"] and "last_error" in info["metadata"]
        assert any(e["name"] == "status" for e in info["endpoints"])
        stats = json.loads((await nc.request(f"$SRV.STATS.{subjects.MONITOR_SERVICE}", b"",
                                             timeout=2)).data)
        assert stats["endpoints"][0]["data"]["samples"] >= 3
    finally:
        await nc.close()
    assert monitor.stop() == 0


async def test_host_samples_and_run_snapshots_read_back_with_tags(
    cluster: Cluster, make_monitor, victoria: Victoria
):
    host = "it-writes"
    nc = await nats.connect(cluster.url)
    monitor = make_monitor(host, influx_url=victoria.url)
    try:
        await monitor.said("started", 20)  # its status endpoint is served from then on
        at = float(int(time.time()) - 2)
        await nc.publish(subjects.live("run-it-1"), msgspec.json.encode(snapshot("run-it-1", at)))
        # None percentiles (no responses yet) are left out, not written as 0
        quiet = snapshot("run-it-1", at + 1, p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
        await nc.publish(subjects.live("run-it-1"), msgspec.json.encode(quiet))

        async def written() -> bool:
            st = await status(nc, host)
            return bool(st and st.snapshots_written == 2 and st.written_points > 0
                        and st.buffered_points == 0 and st.samples >= 2)

        await until(written, 20, "snapshots and samples written")

        [run] = await read(victoria, 'surge_run_rps{run_id="run-it-1"}', samples=2)
        assert run["metric"]["plan"] == "checkout"
        assert run["timestamps"] == [int(at * 1000), int(at * 1000) + 1000]
        assert run["values"] == [198.0, 198.0]
        [p99] = await read(victoria, 'surge_run_p99_ms{run_id="run-it-1"}')
        assert p99["timestamps"] == [int(at * 1000)] and p99["values"] == [12.5]
        [late] = await read(victoria, 'surge_run_late{run_id="run-it-1"}', samples=2)
        assert late["values"] == [5, 5]

        req = by_label(await read(victoria, 'surge_run_request_p99_ms{run_id="run-it-1"}', 2), "request")
        assert {k: v["values"][0] for k, v in req.items()} == {"home": 9.0, "order": 20.0}
        assert all(v["metric"]["plan"] == "checkout" for v in req.values())
        gen = by_label(await read(victoria, 'surge_run_generator_late{run_id="run-it-1"}', 2), "generator")
        assert {k: v["values"][0] for k, v in gen.items()} == {"gen-a": 2, "gen-b": 3}
        behind = by_label(await read(victoria, 'surge_run_generator_behind{run_id="run-it-1"}', 2),
                          "generator")
        assert {k: v["values"][0] for k, v in behind.items()} == {"gen-a": 0, "gen-b": 1}

        [cpu] = await read(victoria, f'surge_host_cpu_pct{{host="{host}"}}', samples=2)
        assert len(cpu["values"]) >= 2 and all(0.0 <= v <= 100.0 for v in cpu["values"])
        [mem] = await read(victoria, f'surge_host_mem_total_bytes{{host="{host}"}}')
        assert set(mem["values"]) == {psutil.virtual_memory().total}
        cores = await read(victoria, f'surge_host_cpu_cpu_pct{{host="{host}"}}', psutil.cpu_count())
        assert sorted(s["metric"]["core"] for s in cores) == [
            str(i) for i in range(psutil.cpu_count())
        ]
        nics = by_label(await read(victoria, f'surge_host_net_rx_bps{{host="{host}"}}'), "interface")
        assert "lo" in nics
        tcp = by_label(await read(victoria, f'surge_host_tcp_connections{{host="{host}"}}'), "state")
        assert tcp["ESTABLISHED"]["values"][-1] >= 1
        procs = await read(victoria, f'surge_process_rss_bytes{{host="{host}",service="monitor"}}')
        assert str(monitor.pid) in [p["metric"]["pid"] for p in procs]  # others' may run too
    finally:
        await nc.close()
    assert monitor.stop() == 0


async def test_malformed_snapshot_is_skipped_and_monitor_keeps_running(
    cluster: Cluster, make_monitor, victoria: Victoria
):
    host = "it-malformed"
    nc = await nats.connect(cluster.url)
    monitor = make_monitor(host, influx_url=victoria.url)
    sampled = await Heard.subscribe(nc, subjects.host(host))
    try:
        await monitor.said("started", 20)  # its status endpoint is served from then on
        good = msgspec.to_builtins(snapshot("run-it-2", float(int(time.time()))))
        for bad in (
            b"not json at all",
            b'{"run_id": 5}',
            json.dumps({**good, "rps": "fast"}).encode(),  # a field of the wrong type
            json.dumps({**good, "per_request": {"home": {"rps": 1}}}).encode(),
            b"\xff\xfe" * 100,
        ):
            await nc.publish(subjects.live("run-it-2"), bad)
        await nc.publish(subjects.live("run-it-2"), msgspec.json.encode(good))

        async def settled() -> bool:
            st = await status(nc, host)
            return bool(st and st.snapshots_skipped == 5 and st.snapshots_written == 1
                        and st.buffered_points == 0)

        await until(settled, 20, "five snapshots skipped, one written")
        [run] = await read(victoria, 'surge_run_rps{run_id="run-it-2"}')
        assert run["values"] == [198.0]
        assert monitor.alive()
        n = len(sampled.items)
        await sampled.until(lambda: len(sampled.items) > n, 10, "sampling goes on")
        assert monitor.output().count("malformed live snapshot skipped") == 5
    finally:
        await nc.close()
    assert monitor.stop() == 0


async def test_outage_points_are_buffered_spilled_and_written_exactly_once(
    cluster: Cluster, make_monitor, victoria: Victoria, tmp_path
):
    host = "it-outage"
    nc = await nats.connect(cluster.url)
    seen: list[float] = []

    async def on_sample(msg):
        seen.append(msgspec.json.decode(msg.data, type=HostSample).ts)

    await nc.subscribe(subjects.host(host), cb=on_sample)
    await nc.flush()
    data_dir = tmp_path / "m"
    monitor = make_monitor(
        host, influx_url=victoria.url, SURGE_SAMPLE_S="0.2", SURGE_DATA_DIR=str(data_dir),
        SURGE_INFLUX_BUFFER_POINTS="40",  # a few samples' worth: the outage must spill
        SURGE_INFLUX_BACKOFF_S="0.1", SURGE_INFLUX_BACKOFF_MAX_S="0.4",
        # a write that times out is retried: if the server had taken it after all, the point
        # lands twice (InfluxDB overwrites it, VictoriaMetrics keeps both). The outage is a
        # refused connection, not a timeout, so a generous timeout only keeps a slow
        # moment of a busy machine from reading as an outage.
        SURGE_INFLUX_TIMEOUT_S="10",
    )
    try:
        async def writing() -> bool:
            st = await status(nc, host)
            return bool(st and st.written_points > 0)

        await until(writing, 20, "the first write")
        victoria.stop()
        down_at = len(seen)
        at = float(int(time.time()))
        await nc.publish(subjects.live("run-it-3"), msgspec.json.encode(snapshot("run-it-3", at)))

        async def buffered() -> MonitorStatus | None:
            st = await status(nc, host)
            ok = st and st.spilled_points > 0 and len(seen) - down_at >= 15
            return st if ok else None

        during = await until(buffered, 30, "15 samples during the outage, some spilled")
        assert during.last_error and during.last_error_at > (during.last_write_at or 0)
        assert during.buffered_points >= during.spilled_points > 0
        assert during.snapshots_written == 1
        assert (data_dir / "influx" / "spill.lp").exists()

        victoria.start()
        restarted = time.time()

        async def drained() -> bool:
            st = await status(nc, host)
            return bool(st and st.buffered_points == 0 and st.spilled_points == 0
                        and (st.last_write_at or 0) > restarted)

        await until(drained, 20, "the buffer to drain after the restart")
        assert not (data_dir / "influx" / "spill.lp").exists()
    finally:
        assert monitor.stop() == 0  # the last samples are written on the way out
        await nc.flush()
        await nc.close()

    expected = collections.Counter(int(round(ts * 1000)) for ts in seen)
    assert len(expected) == len(seen) >= down_at + 15

    def cpu_stamps() -> collections.Counter | None:
        found = victoria.export(f'surge_host_cpu_pct{{host="{host}"}}')
        got = collections.Counter(found[0]["timestamps"]) if found else collections.Counter()
        return got if got.total() >= expected.total() else None

    got = await until(cpu_stamps, 10, "every sample searchable", every_s=0.2)
    assert got == expected  # every sample, none twice
    print(f"outage: {len(seen) - down_at}+ samples while down, {during.buffered_points} points "
          f"buffered ({during.spilled_points} spilled); {len(seen)} samples written once each")
    # and so for every series of this host: no timestamp twice in any of them
    for series in await read(victoria, f'{{host="{host}"}}'):
        stamps = collections.Counter(series["timestamps"])
        assert max(stamps.values()) == 1, series["metric"]
    [run] = await read(victoria, 'surge_run_rps{run_id="run-it-3"}')
    assert run["timestamps"] == [int(at * 1000)]
