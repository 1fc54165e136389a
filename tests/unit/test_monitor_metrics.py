"""services.monitor.metrics: run counters from intervals, buckets from merged HdrHistograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.host import HostSample, WatchedProcess
from schemas.stats import IntervalStats, LiveRequest, LiveSnapshot, RequestInterval
from services.common import histogram
from services.monitor.metrics import RunMetrics


def interval(gen: str, seq: int, latencies_ms: list[float], errors: dict | None = None,
             late: int = 0) -> IntervalStats:
    h = histogram.new()
    histogram.record_many(h, latencies_ms, scale=1000.0)
    req = RequestInterval(count=len(latencies_ms), errors=errors or {}, late=late,
                          latency=histogram.encode(h))
    return IntervalStats(run_id="r1", generator_id=gen, epoch=1, seq=seq, target=10, sent=10,
                         in_flight=0, requests={"home": req})


def scrape(m: RunMetrics) -> dict[str, list]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(samples: list, **labels) -> float:
    [s] = [s for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return s.value


def test_intervals_add_up_once_each_and_buckets_come_from_the_merged_histogram():
    m = RunMetrics()
    assert m.add_interval(interval("g1", 0, [0.5, 3.0, 40.0], errors={"timeout": 1}, late=2))
    assert m.add_interval(interval("g2", 0, [0.7, 200.0], errors={"status": 2, "timeout": 1}))
    assert not m.add_interval(interval("g1", 0, [0.5, 3.0, 40.0]))  # resent: counted once
    m.add_snapshot(LiveSnapshot(
        run_id="r1", plan_name="shop", state="running", seq=0, at=0.0, elapsed_s=1.0,
        duration_s=10.0, target_rps=10.0, rps=5.0, requests=5, errors=3, error_rate=0.6,
        late=2, dropped=0, in_flight=1, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0, max_ms=1.0,
        total_requests=5, total_errors=3,
        per_request={"home": LiveRequest(rps=5.0, errors=3, p50_ms=1, p90_ms=1, p99_ms=1)},
        generators={}))
    got = scrape(m)
    lab = {"run_id": "r1", "plan": "shop", "request": "home"}
    assert value(got["surge_run_requests_total"], **lab) == 5
    assert value(got["surge_run_errors_total"], **lab, kind="timeout") == 2
    assert value(got["surge_run_errors_total"], **lab, kind="status") == 2
    assert value(got["surge_run_late_total"], **lab) == 2
    assert value(got["surge_run_rps"], run_id="r1") == 5.0
    assert value(got["surge_run_target_rps"], run_id="r1") == 10.0
    buckets = got["surge_run_latency_seconds_bucket"]
    assert value(buckets, le="0.001") == 2  # 0.5 and 0.7 ms
    assert value(buckets, le="0.005") == 3
    assert value(buckets, le="0.05") == 4
    assert value(buckets, le="0.25") == 5 == value(buckets, le="+Inf")
    assert value(got["surge_run_latency_seconds_count"], **lab) == 5
    total_s = value(got["surge_run_latency_seconds_sum"], **lab)
    assert abs(total_s - 0.2442) < 0.0005


def test_finished_run_goes_after_keep():
    m = RunMetrics(keep_s=0.0)
    m.add_interval(interval("g1", 0, [1.0]))
    m.runs["r1"].final_at = 0.0
    assert "surge_run_requests_total" not in scrape(m)


def test_host_gauges_include_depth():
    m = RunMetrics()
    m.set_host(HostSample(
        host="h", ts=0.0, interval_s=1.0, cores=2, cpu_pct=50.0, cpu_per_core=[50, 50],
        iowait_pct=1.0, steal_pct=3.0, load1=0.1, load5=0.1, load15=0.1, mem_total_bytes=10,
        mem_used_bytes=5, mem_pct=50.0, swap_pct=0.0, tcp={"ESTABLISHED": 4},
        tcp_ports={"8080": {"TIME_WAIT": 7}}, tcp_retrans_ps=1.5,
        watched=[WatchedProcess(name="java", count=1, cpu_pct=12.0, rss_bytes=99, threads=30,
                                open_files=None)]))
    got = scrape(m)
    assert value(got["surge_host_steal_pct"], host="h") == 3.0
    assert value(got["surge_host_tcp_port_connections"], port="8080", state="TIME_WAIT") == 7
    assert value(got["surge_host_tcp_retrans_ps"], host="h") == 1.5
    assert value(got["surge_watched_threads"], name="java") == 30
    assert "surge_watched_open_files" not in got  # unknown is left out, not 0
