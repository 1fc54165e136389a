"""services.monitor.points: measurements, tags, field types, explicit timestamps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from schemas.host import DiskIO, HostSample, NetIO, ProcessSample
from schemas.stats import LiveGenerator, LiveRequest, LiveSnapshot
from services.monitor.points import host_lines, run_lines


def host() -> HostSample:
    return HostSample(
        host="node 1", ts=1_700_000_000.1234, interval_s=1.0, cores=2, cpu_pct=12.5,
        cpu_per_core=[10.0, 15.0], iowait_pct=0.5, load1=0.2, load5=0.1, load15=0.0,
        mem_total_bytes=1000, mem_used_bytes=250, mem_pct=25.0, swap_pct=0.0,
        disk={"vda": DiskIO(read_bps=1.0, write_bps=2.0, read_iops=3.0, write_iops=4.0)},
        disk_free_pct=None,
        net={"lo": NetIO(rx_bps=5.0, tx_bps=6.0, rx_pps=7.0, tx_pps=8.0, errors_in=1,
                         errors_out=0, drops_in=0, drops_out=2)},
        tcp={"ESTABLISHED": 4, "LISTEN": 1}, open_fds=77,
        processes=[ProcessSample(pid=42, name="generator", cpu_pct=99.0, rss_bytes=1 << 20)],
    )


def test_host_sample_points():
    lines = host_lines(host())
    assert lines[0].startswith("surge_host,host=node\\ 1 ")
    assert lines[0].endswith(" 1700000000123")  # milliseconds, from the sample
    assert "cpu_pct=12.5," in lines[0] and "mem_total_bytes=1000i" in lines[0]
    assert "open_fds=77i" in lines[0] and "disk_free_pct" not in lines[0]  # None: left out
    assert "load15=0," in lines[0]  # a float, whole or not, has no "i": never an integer field
    assert {re.split(r"(?<!\\) ", ln)[0] for ln in lines[1:]} == {
        "surge_host_cpu,core=0,host=node\\ 1", "surge_host_cpu,core=1,host=node\\ 1",
        "surge_host_disk,device=vda,host=node\\ 1", "surge_host_net,host=node\\ 1,interface=lo",
        "surge_host_tcp,host=node\\ 1,state=ESTABLISHED", "surge_host_tcp,host=node\\ 1,state=LISTEN",
        "surge_process,host=node\\ 1,pid=42,service=generator",
    }
    assert all(ln.endswith(" 1700000000123") for ln in lines)
    assert len(lines) == 8


def test_snapshot_points_per_run_request_and_generator():
    snap = LiveSnapshot(
        run_id="r1", plan_name="check out", state="running", seq=2, at=1_700_000_002.0,
        elapsed_s=2.0, duration_s=10.0, target_rps=100.0, rps=100.0, requests=100, errors=1,
        error_rate=0.01, late=0, dropped=0, in_flight=3, p50_ms=1.0, p90_ms=2.0, p99_ms=None,
        max_ms=None, total_requests=300, total_errors=1,
        per_request={"home": LiveRequest(rps=100.0, errors=1, p50_ms=1.0, p90_ms=2.0,
                                         p99_ms=3.0)},
        generators={"g1": LiveGenerator(target_rps=100.0, rps=100.0, sent=100, late=0,
                                        dropped=0, p99_ms=None, behind=True)},
    )
    run, req, gen = run_lines(snap)
    assert run.startswith("surge_run,plan=check\\ out,run_id=r1 ")
    assert "p99_ms" not in run and "max_ms" not in run and "rps=100," in run
    assert req.startswith("surge_run_request,plan=check\\ out,request=home,run_id=r1 ")
    assert "p99_ms=3," in req
    assert gen.startswith("surge_run_generator,generator=g1,plan=check\\ out,run_id=r1 ")
    assert "behind=1i" in gen and "lost=0i" in gen and "p99_ms" not in gen
    assert all(ln.endswith(" 1700000002000") for ln in (run, req, gen))


def test_dashboard_queries_only_measurements_and_fields_the_monitor_writes():
    snap = LiveSnapshot(
        run_id="r", plan_name="p", state="running", seq=0, at=1.0, elapsed_s=1.0, duration_s=2.0,
        target_rps=1.0, rps=1.0, requests=1, errors=0, error_rate=0.0, late=0, dropped=0,
        in_flight=0, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0, max_ms=1.0, total_requests=1,
        total_errors=0,
        per_request={"a": LiveRequest(rps=1.0, errors=0, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0)},
        generators={"g": LiveGenerator(target_rps=1.0, rps=1.0, sent=1, late=0, dropped=0,
                                       p99_ms=1.0, behind=False)},
    )
    h = msgspec.structs.replace(host(), disk_free_pct=50.0)
    written: dict[str, set[str]] = {}
    for ln in host_lines(h) + run_lines(snap):
        key, fields, _ = re.split(r"(?<!\\) ", ln)
        written.setdefault(key.split(",")[0], set()).update(
            f.split("=")[0] for f in fields.split(","))
    path = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "surge-dashboard.json"
    dash = json.loads(path.read_text())
    queries = [t["query"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 12
    for query in queries:
        [measurement] = re.findall(r'r\._measurement == "([a-z_]+)"', query)
        fields = re.findall(r'r\._field == "([a-z0-9_]+)"', query)
        assert fields and set(fields) <= written[measurement], (measurement, fields)


def test_depth_points_ports_and_watched_processes():
    from schemas.host import JvmSample, WatchedProcess

    s = msgspec.structs.replace(
        host(), steal_pct=2.0, tcp_retrans_ps=0.5, tcp_ports={"8080": {"TIME_WAIT": 3}},
        watched=[WatchedProcess(name="java", count=1, cpu_pct=5.0, rss_bytes=10, threads=20,
                                open_files=None,
                                jvm=JvmSample(heap_used_bytes=1, heap_capacity_bytes=2,
                                              young_gc=3, full_gc=0, gc_time_s=0.5)),
                 WatchedProcess(name="pg", count=2, cpu_pct=1.0, rss_bytes=5, threads=2,
                                open_files=9)])
    lines = host_lines(s)
    assert "steal_pct=2," in lines[0] and "tcp_retrans_ps=0.5" in lines[0]
    assert "tcp_out_ps" not in lines[0]  # unknown: left out
    by_key = {re.split(r"(?<!\\) ", ln)[0]: ln for ln in lines}
    assert "connections=3i" in by_key["surge_host_tcp_port,host=node\\ 1,port=8080,state=TIME_WAIT"]
    java = by_key["surge_watched,host=node\\ 1,name=java"]
    assert "threads=20i" in java and "young_gc=3i" in java and "open_files" not in java
    pg = by_key["surge_watched,host=node\\ 1,name=pg"]
    assert "open_files=9i" in pg and "heap_used_bytes" not in pg
