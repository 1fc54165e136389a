"""Prometheus ``/metrics``: live runs per run and request name, and this host.

``RunMetrics`` is fed from the bus by the monitor's event loop and read by
prometheus-client's HTTP thread (one lock between them):

* every generator's interval (``surge.stats.<run>.<gen>``, heard beside the
  coordinator, which answers them) adds to per-(run, request) counters — requests,
  errors by kind, late, dropped — and its latency histogram is merged into one
  HdrHistogram per (run, request). A resent interval (same generator and seq) counts
  once. The Prometheus histogram ``surge_run_latency_seconds`` is read from that merged
  HdrHistogram at scrape time: each ``le`` bucket is the cumulative count up to the
  HdrHistogram bucket holding the bound (exact to HdrHistogram's 3 digits);
* each merged live snapshot (``surge.live.<run>``) sets the gauges: achieved and target
  rate, in flight, per request achieved rate;
* this monitor's last ``HostSample`` gives the host gauges.

A run's series stay ``keep_s`` after its final snapshot (or after it was last heard of)
so the last scrape sees the totals, then go. prometheus-client speaks the text format
only, so native histograms are not offered; the classic buckets are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import structlog
from hdrh.histogram import HdrHistogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from schemas.host import HostSample
from schemas.stats import IntervalStats, LiveSnapshot
from services.common import histogram

log = structlog.get_logger(__name__)

#: seconds; the classic latency buckets (k6/Prometheus-like, up to a minute)
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0, 30.0, 60.0)


def _bucket_indexes() -> np.ndarray:
    """The counts-array index of each bound: values up to and including it."""
    h = histogram.new()
    us = np.array([round(b * 1_000_000) for b in BUCKETS_S], dtype=np.int64)
    return histogram.counts_indexes(h, us)


def _index_values_s() -> np.ndarray:
    """Each counts-array index's median equivalent value in seconds (for the sum)."""
    h = histogram.new()
    idx = np.arange(h.counts_len)
    lowest = np.array([h.get_value_from_index(int(i)) for i in idx], dtype=np.float64)
    nxt = np.append(lowest[1:], lowest[-1] * 2)
    return (lowest + np.maximum(nxt - lowest, 1) / 2) / 1_000_000


class _Request:
    __slots__ = ("requests", "errors", "late", "dropped", "hist", "rps")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.late = 0
        self.dropped = 0
        self.hist: HdrHistogram | None = None  # merged, created on the first latency
        self.rps = 0.0


class _Run:
    __slots__ = ("plan", "requests", "seen", "rps", "target_rps", "in_flight", "heard",
                 "final_at")

    def __init__(self) -> None:
        self.plan = ""
        self.requests: dict[str, _Request] = {}
        self.seen: set[tuple[str, int]] = set()  # (generator, seq) counted
        self.rps = 0.0
        self.target_rps = 0.0
        self.in_flight = 0
        self.heard = time.monotonic()
        self.final_at: float | None = None


class RunMetrics(Collector):
    def __init__(self, keep_s: float = 300.0, max_runs: int = 50) -> None:
        self.keep_s = keep_s
        self.max_runs = max_runs
        self.runs: dict[str, _Run] = {}
        self.host: HostSample | None = None
        self.bad_histograms = 0
        self._lock = threading.Lock()
        self._bucket_idx = _bucket_indexes()
        self._values_s: np.ndarray | None = None  # built on the first scrape (~30 ms)

    # --- in (event loop) ---------------------------------------------------------
    def _run(self, run_id: str) -> _Run:
        run = self.runs.get(run_id)
        if run is None:
            self._expire()
            run = self.runs[run_id] = _Run()
        run.heard = time.monotonic()
        return run

    def add_interval(self, stats: IntervalStats) -> bool:
        """Count one generator interval; False when it was counted already."""
        # decode outside the lock: the scrape thread waits only for the adds
        decoded = {}
        for name, r in stats.requests.items():
            if r.latency:
                try:
                    decoded[name] = histogram.decode(r.latency)
                except histogram.HistogramDecodeError:
                    self.bad_histograms += 1
        with self._lock:
            run = self._run(stats.run_id)
            key = (stats.generator_id, stats.seq)
            if key in run.seen:
                return False
            run.seen.add(key)
            for name, r in stats.requests.items():
                req = run.requests.get(name)
                if req is None:
                    req = run.requests[name] = _Request()
                req.requests += r.count
                req.late += r.late
                req.dropped += r.dropped
                for kind, n in r.errors.items():
                    req.errors[kind] = req.errors.get(kind, 0) + n
                hist = decoded.get(name)
                if hist is not None:
                    if req.hist is None:
                        req.hist = hist
                    else:
                        histogram.add(req.hist, hist)
            return True

    def add_snapshot(self, snap: LiveSnapshot) -> None:
        with self._lock:
            run = self._run(snap.run_id)
            run.plan = snap.plan_name
            run.rps = snap.rps
            run.target_rps = snap.target_rps
            run.in_flight = snap.in_flight
            for name, lr in snap.per_request.items():
                req = run.requests.get(name)
                if req is None:
                    req = run.requests[name] = _Request()
                req.rps = lr.rps
            if snap.final and run.final_at is None:
                run.final_at = time.monotonic()

    def set_host(self, sample: HostSample) -> None:
        self.host = sample  # one reference swap: no lock needed

    def _expire(self) -> None:
        now = time.monotonic()
        for run_id, run in list(self.runs.items()):
            since = run.final_at if run.final_at is not None else run.heard
            if now - since > self.keep_s:
                del self.runs[run_id]
        while len(self.runs) >= self.max_runs:  # the longest unheard goes first
            del self.runs[min(self.runs, key=lambda r: self.runs[r].heard)]

    # --- out (scrape thread) ----------------------------------------------------------
    def collect(self) -> Iterator:
        with self._lock:
            self._expire()
            yield from self._run_families()
        if self.host is not None:
            yield from host_families(self.host)

    def _run_families(self) -> Iterator:
        run_l, req_l = ["run_id", "plan"], ["run_id", "plan", "request"]
        info = GaugeMetricFamily("surge_run_info", "A run this monitor hears (1)", labels=run_l)
        rps = GaugeMetricFamily("surge_run_rps", "Completed requests in the last second",
                                labels=run_l)
        target = GaugeMetricFamily("surge_run_target_rps", "The plan's rate now", labels=run_l)
        in_flight = GaugeMetricFamily("surge_run_in_flight", "Requests sent, not yet answered",
                                      labels=run_l)
        req_rps = GaugeMetricFamily("surge_run_request_rps",
                                    "Completed requests of one name in the last second",
                                    labels=req_l)
        requests = CounterMetricFamily("surge_run_requests", "Completed requests (responses "
                                       "and errors)", labels=req_l)
        errors = CounterMetricFamily("surge_run_errors", "Failed requests by kind",
                                     labels=[*req_l, "kind"])
        late = CounterMetricFamily("surge_run_late", "Requests sent after their intended time",
                                   labels=req_l)
        dropped = CounterMetricFamily("surge_run_dropped", "Arrivals not sent at all",
                                      labels=req_l)
        latency = HistogramMetricFamily(
            "surge_run_latency_seconds",
            "Latency from the intended send time, from the merged HdrHistogram", labels=req_l)
        for run_id, run in self.runs.items():
            rl = [run_id, run.plan]
            info.add_metric(rl, 1)
            rps.add_metric(rl, run.rps)
            target.add_metric(rl, run.target_rps)
            in_flight.add_metric(rl, run.in_flight)
            for name, req in run.requests.items():
                ql = [*rl, name]
                req_rps.add_metric(ql, req.rps)
                requests.add_metric(ql, req.requests)
                late.add_metric(ql, req.late)
                dropped.add_metric(ql, req.dropped)
                for kind, n in sorted(req.errors.items()):
                    errors.add_metric([*ql, kind], n)
                buckets, total_s = self._buckets(req.hist)
                latency.add_metric(ql, buckets, total_s)
        yield from (info, rps, target, in_flight, req_rps, requests, errors, late, dropped,
                    latency)

    def _buckets(self, hist: HdrHistogram | None) -> tuple[list[tuple[str, float]], float]:
        if hist is None or hist.get_total_count() == 0:
            return [*((f"{b:g}", 0.0) for b in BUCKETS_S), ("+Inf", 0.0)], 0.0
        counts = np.ctypeslib.as_array(hist.counts).astype(np.int64)
        cum = np.cumsum(counts)
        if self._values_s is None:
            self._values_s = _index_values_s()
        total_s = float(np.dot(counts, self._values_s))
        out = [(f"{b:g}", float(cum[i])) for b, i in zip(BUCKETS_S, self._bucket_idx, strict=True)]
        out.append(("+Inf", float(cum[-1])))
        return out, total_s


def host_families(s: HostSample) -> Iterator:
    """Gauges of one host sample."""
    h = [s.host]

    def gauge(name: str, doc: str, value: float | int | None) -> GaugeMetricFamily | None:
        if value is None:
            return None
        g = GaugeMetricFamily(name, doc, labels=["host"])
        g.add_metric(h, value)
        return g

    singles = [
        gauge("surge_host_cpu_pct", "CPU busy %, all cores", s.cpu_pct),
        gauge("surge_host_iowait_pct", "CPU iowait %", s.iowait_pct),
        gauge("surge_host_steal_pct", "CPU taken by the hypervisor %", s.steal_pct),
        gauge("surge_host_cores", "Logical cores", s.cores),
        gauge("surge_host_load1", "Load average, 1 minute", s.load1),
        gauge("surge_host_mem_used_bytes", "Memory used (total - available)", s.mem_used_bytes),
        gauge("surge_host_mem_total_bytes", "Memory", s.mem_total_bytes),
        gauge("surge_host_mem_pct", "Memory used %", s.mem_pct),
        gauge("surge_host_swap_pct", "Swap used %", s.swap_pct),
        gauge("surge_host_open_fds", "Open file handles of the host", s.open_fds),
        gauge("surge_host_disk_free_pct", "Free % of the monitor's data filesystem",
              s.disk_free_pct),
        gauge("surge_host_tcp_retrans_ps", "TCP segments retransmitted per second",
              s.tcp_retrans_ps),
        gauge("surge_host_tcp_out_ps", "TCP segments sent per second", s.tcp_out_ps),
    ]
    yield from (g for g in singles if g is not None)
    net = {k: GaugeMetricFamily(f"surge_host_net_{k}", f"Network {k.replace('_', ' ')}",
                                labels=["host", "interface"])
           for k in ("rx_bps", "tx_bps", "rx_pps", "tx_pps")}
    for nic, io in s.net.items():
        for k, g in net.items():
            g.add_metric([s.host, nic], getattr(io, k))
    yield from net.values()
    tcp = GaugeMetricFamily("surge_host_tcp_connections", "TCP sockets per state",
                            labels=["host", "state"])
    for state, n in s.tcp.items():
        tcp.add_metric([s.host, state], n)
    yield tcp
    port = GaugeMetricFamily("surge_host_tcp_port_connections",
                             "TCP sockets per state with a watched local or remote port",
                             labels=["host", "port", "state"])
    for p, states in s.tcp_ports.items():
        for state, n in states.items():
            port.add_metric([s.host, p, state], n)
    yield port
    pl = ["host", "service", "pid"]
    pcpu = GaugeMetricFamily("surge_process_cpu_pct", "Surge process CPU, % of one core",
                             labels=pl)
    prss = GaugeMetricFamily("surge_process_rss_bytes", "Surge process RSS", labels=pl)
    for p in s.processes:
        pcpu.add_metric([s.host, p.name, str(p.pid)], p.cpu_pct)
        prss.add_metric([s.host, p.name, str(p.pid)], p.rss_bytes)
    yield from (pcpu, prss)
    wl = ["host", "name"]
    watched = {
        "count": GaugeMetricFamily("surge_watched_processes", "Processes of the name", labels=wl),
        "cpu_pct": GaugeMetricFamily("surge_watched_cpu_pct", "CPU, % of one core", labels=wl),
        "rss_bytes": GaugeMetricFamily("surge_watched_rss_bytes", "RSS", labels=wl),
        "threads": GaugeMetricFamily("surge_watched_threads", "Threads", labels=wl),
        "open_files": GaugeMetricFamily("surge_watched_open_files", "Open files", labels=wl),
    }
    jvm = {
        "heap_used_bytes": GaugeMetricFamily("surge_jvm_heap_used_bytes", "JVM heap in use",
                                             labels=wl),
        "heap_capacity_bytes": GaugeMetricFamily("surge_jvm_heap_capacity_bytes",
                                                 "JVM heap committed", labels=wl),
        "young_gc": CounterMetricFamily("surge_jvm_young_gc", "Young collections", labels=wl),
        "full_gc": CounterMetricFamily("surge_jvm_full_gc", "Full collections", labels=wl),
        "gc_time_s": CounterMetricFamily("surge_jvm_gc_seconds", "Time in GC", labels=wl),
    }
    for w in s.watched:
        for k, g in watched.items():
            value = getattr(w, k)
            if value is not None:
                g.add_metric([s.host, w.name], value)
        if w.jvm is not None:
            for k, g in jvm.items():
                g.add_metric([s.host, w.name], getattr(w.jvm, k))
    yield from watched.values()
    yield from jvm.values()
