"""The monitor's /metrics scraped by a real Prometheus during a real run.

A coordinator, one generator and the demo target run a short plan; a monitor serves
/metrics; Prometheus (Debian's package, started here on a free port) scrapes it every
second. PromQL must then give the report's own counts.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.stats import LiveSnapshot
from services.common import histogram
from services.monitor.metrics import BUCKETS_S
from tests import plans
from tests.conftest import Cluster, api_with, free_port, until
from tests.prometheus import Prometheus

pytestmark = pytest.mark.timeout(90)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/surge-dashboard-prometheus.json"


async def test_prometheus_scrapes_run_counts_latency_buckets_and_host(cluster: Cluster, make_monitor,
                                                                      tmp_path):
    host = "it-prom"
    mport = free_port()
    prom = Prometheus(tmp_path, [f"127.0.0.1:{mport}"])
    prom.start()
    try:
        monitor = make_monitor(
            host, SURGE_METRICS_PORT=str(mport), SURGE_METRICS_ADDR="127.0.0.1",
            SURGE_MONITOR_PORTS=str(cluster.port), SURGE_MONITOR_PROCESSES="nats-server",
        )
        _, target = cluster.target()
        cluster.coordinator()
        cluster.generator()
        api = await api_with(cluster, 1)
        await until(lambda: prom.scalar(f'surge_host_cpu_pct{{host="{host}"}}') is not None,
                    20, "Prometheus scraping the monitor's host gauges")

        plan = plans.plan(plans.BASIC, target, name="prom", rate=60, duration="3s", timeout="2s", requests=[
            {"name": "home", "path": "/", "weight": 2, "checks": {"status": 200}},
            {"name": "missing", "path": "/nope", "checks": {"status": 200}},
        ])
        ended = asyncio.Event()

        async def on_live(msg) -> None:
            if msgspec.json.decode(msg.data, type=LiveSnapshot).final:
                ended.set()

        nc = await nats.connect(cluster.url)
        started = await api.start(plan)
        await nc.subscribe(subjects.live(started.run_id), cb=on_live)
        await asyncio.wait_for(ended.wait(), 30)
        report = await api.report(started.run_id)
        run = f'run_id="{started.run_id}"'
        total = report.totals.requests
        status_errors = report.requests["missing"].error_kinds.get("status", 0)
        assert total >= 30 and status_errors > 0  # a loaded machine may drop some arrivals

        def settled() -> bool:
            return prom.scalar(f"sum(surge_run_requests_total{{{run}}})") == total

        await until(settled, 20, f"Prometheus to count the report's {total} requests")
        assert prom.scalar(f'surge_run_requests_total{{{run},request="home"}}') == \
            report.requests["home"].requests
        assert prom.scalar(
            f'surge_run_errors_total{{{run},request="missing",kind="status"}}') == status_errors
        assert prom.scalar(f'surge_run_info{{{run},plan="prom"}}') == 1
        # every latency recorded lands in +Inf; the quantile is the report's p99 to the bucket
        counted = prom.scalar(f"sum(surge_run_latency_seconds_count{{{run}}})")
        assert counted == prom.scalar(f'sum(surge_run_latency_seconds_bucket{{{run},le="+Inf"}})')
        assert counted == total
        p99_s = prom.scalar(f"histogram_quantile(0.99, sum by (le) "
                            f"(surge_run_latency_seconds_bucket{{{run}}}))")
        # Prometheus interpolates inside the bucket that holds the report's exact p99.
        # HdrHistogram's p99 is the value of rank round(0.99 N), Prometheus's rank is
        # 0.99 N itself (the next value up), and HdrHistogram is exact to 0.1 %.
        p99 = report.totals.latency_ms.p99 / 1000
        merged = histogram.decode(report.histogram)
        next_up = merged.get_value_at_percentile(min(100.0, 99.0 + 100.0 / total)) / 1e6
        lo = max([0.0, *(b for b in BUCKETS_S if b < min(p99, next_up) * 0.999)])
        hi = min(b for b in BUCKETS_S if b >= max(p99, next_up) * 1.001)
        assert p99_s is not None and lo <= p99_s <= hi

        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert f'surge_host_tcp_connections{{host="{host}",state="ESTABLISHED"}}' in text
        # the NATS port is watched: its listener and the services' links to it
        assert prom.scalar(f'surge_host_tcp_port_connections{{host="{host}",'
                           f'port="{cluster.port}",state="LISTEN"}}') == 1
        assert prom.scalar(f'surge_host_tcp_port_connections{{host="{host}",'
                           f'port="{cluster.port}",state="ESTABLISHED"}}') >= 4
        assert prom.scalar(f'surge_watched_processes{{host="{host}",name="nats-server"}}') >= 1
        assert prom.scalar(f'surge_watched_threads{{host="{host}",name="nats-server"}}') >= 2

        # every query of the Grafana dashboard is valid PromQL with data behind it
        dash = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 20
        for expr in exprs:
            q = (expr.replace("$run_id", started.run_id).replace("$host", host)
                 .replace("$__rate_interval", "10s"))
            result = prom.query(q)
            assert result or "jvm" in expr, f"no data for the dashboard's {expr}"
        await nc.close()
        await api.close()
        assert monitor.alive()
    finally:
        prom.stop()
