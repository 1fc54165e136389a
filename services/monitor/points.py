"""What the monitor writes to InfluxDB: line-protocol points from host samples and snapshots.

Pure functions. Every point carries an explicit millisecond timestamp taken from the
message (the sample's ``ts``, the snapshot's ``at``), so writing the same point twice
replaces it in InfluxDB instead of adding a second one. Field types never change
between points (floats stay floats), which InfluxDB requires of a field.

Measurements (docs/monitor.md lists every field):

=====================  ===========================  ==================================
measurement            tags                         fields
=====================  ===========================  ==================================
surge_host             host                         cpu_pct, iowait_pct, load1, ...
surge_host_cpu         host, core                   cpu_pct
surge_host_disk        host, device                 read_bps, write_bps, read_iops, ...
surge_host_net         host, interface              rx_bps, tx_bps, rx_pps, ...
surge_host_tcp         host, state                  connections
surge_host_tcp_port    host, port, state            connections
surge_watched          host, name                   count, cpu_pct, rss_bytes, threads, ...
surge_process          host, service, pid           cpu_pct, rss_bytes
surge_run              run_id, plan                 rps, target_rps, errors, p99_ms, ...
surge_run_request      run_id, plan, request        rps, errors, p50_ms, p90_ms, p99_ms
surge_run_generator    run_id, plan, generator      rps, target_rps, late, dropped, ...
=====================  ===========================  ==================================
"""

from __future__ import annotations

from collections.abc import Mapping

from influxdb_client import Point, WritePrecision

from schemas.host import HostSample
from schemas.stats import LiveSnapshot

PRECISION = WritePrecision.MS

FieldValue = float | int | str | None


def ts_ms(unix_s: float) -> int:
    return int(round(unix_s * 1000.0))


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue],
         at_ms: int) -> str | None:
    """One point in line protocol (escaped by influxdb-client); None without fields."""
    point = Point(measurement)
    for key, value in tags.items():
        if value != "":
            point.tag(key, value)
    present = False
    for key, value in fields.items():
        if value is not None:
            point.field(key, value)
            present = True
    if not present:
        return None
    point.time(at_ms, PRECISION)
    return point.to_line_protocol(PRECISION)


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


def host_lines(s: HostSample) -> list[str]:
    at = ts_ms(s.ts)
    host = {"host": s.host}
    out = [line("surge_host", host, {
        "cpu_pct": float(s.cpu_pct),
        "iowait_pct": float(s.iowait_pct),
        "steal_pct": float(s.steal_pct),
        "load1": float(s.load1),
        "load5": float(s.load5),
        "load15": float(s.load15),
        "mem_total_bytes": int(s.mem_total_bytes),
        "mem_used_bytes": int(s.mem_used_bytes),
        "mem_pct": float(s.mem_pct),
        "swap_pct": float(s.swap_pct),
        "disk_free_pct": _f(s.disk_free_pct),
        "open_fds": s.open_fds,
        "cores": int(s.cores),
        "interval_s": float(s.interval_s),
        "tcp_retrans_ps": _f(s.tcp_retrans_ps),
        "tcp_out_ps": _f(s.tcp_out_ps),
    }, at)]
    for core, pct in enumerate(s.cpu_per_core):
        out.append(line("surge_host_cpu", {**host, "core": str(core)}, {"cpu_pct": float(pct)}, at))
    for dev, d in s.disk.items():
        out.append(line("surge_host_disk", {**host, "device": dev}, {
            "read_bps": float(d.read_bps), "write_bps": float(d.write_bps),
            "read_iops": float(d.read_iops), "write_iops": float(d.write_iops),
        }, at))
    for nic, n in s.net.items():
        out.append(line("surge_host_net", {**host, "interface": nic}, {
            "rx_bps": float(n.rx_bps), "tx_bps": float(n.tx_bps),
            "rx_pps": float(n.rx_pps), "tx_pps": float(n.tx_pps),
            "errors_in": int(n.errors_in), "errors_out": int(n.errors_out),
            "drops_in": int(n.drops_in), "drops_out": int(n.drops_out),
        }, at))
    for state, count in s.tcp.items():
        out.append(line("surge_host_tcp", {**host, "state": state}, {"connections": int(count)}, at))
    for port, states in s.tcp_ports.items():
        for state, count in states.items():
            out.append(line("surge_host_tcp_port", {**host, "port": port, "state": state},
                            {"connections": int(count)}, at))
    for w in s.watched:
        j = w.jvm
        out.append(line("surge_watched", {**host, "name": w.name}, {
            "count": int(w.count), "cpu_pct": float(w.cpu_pct), "rss_bytes": int(w.rss_bytes),
            "threads": int(w.threads), "open_files": w.open_files,
            "heap_used_bytes": j.heap_used_bytes if j else None,
            "heap_capacity_bytes": j.heap_capacity_bytes if j else None,
            "young_gc": j.young_gc if j else None, "full_gc": j.full_gc if j else None,
            "gc_time_s": float(j.gc_time_s) if j else None,
        }, at))
    for p in s.processes:
        out.append(line("surge_process", {**host, "service": p.name, "pid": str(p.pid)}, {
            "cpu_pct": float(p.cpu_pct), "rss_bytes": int(p.rss_bytes),
        }, at))
    return [x for x in out if x is not None]


def run_lines(s: LiveSnapshot) -> list[str]:
    """A live snapshot's points, stamped with the start of its second (``at``)."""
    at = ts_ms(s.at)
    run = {"run_id": s.run_id, "plan": s.plan_name}
    out = [line("surge_run", run, {
        "target_rps": float(s.target_rps),
        "rps": float(s.rps),
        "requests": int(s.requests),
        "errors": int(s.errors),
        "error_rate": float(s.error_rate),
        "late": int(s.late),
        "dropped": int(s.dropped),
        "in_flight": int(s.in_flight),
        "p50_ms": _f(s.p50_ms),
        "p90_ms": _f(s.p90_ms),
        "p99_ms": _f(s.p99_ms),
        "max_ms": _f(s.max_ms),
        "total_requests": int(s.total_requests),
        "total_errors": int(s.total_errors),
        "elapsed_s": float(s.elapsed_s),
        "seq": int(s.seq),
    }, at)]
    for name, r in s.per_request.items():
        out.append(line("surge_run_request", {**run, "request": name}, {
            "rps": float(r.rps), "errors": int(r.errors),
            "p50_ms": _f(r.p50_ms), "p90_ms": _f(r.p90_ms), "p99_ms": _f(r.p99_ms),
        }, at))
    for gid, g in s.generators.items():
        out.append(line("surge_run_generator", {**run, "generator": gid}, {
            "target_rps": float(g.target_rps), "rps": float(g.rps), "sent": int(g.sent),
            "late": int(g.late), "dropped": int(g.dropped), "p99_ms": _f(g.p99_ms),
            "behind": int(g.behind), "lost": int(g.lost),
        }, at))
    return [x for x in out if x is not None]
