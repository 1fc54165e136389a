"""services.monitor.sampler: counters -> HostSample, command lines -> Surge services."""

from __future__ import annotations

from collections import namedtuple

import pytest

from services.monitor.sampler import (
    Counters, CpuTimes, ProcCounters, cpu_split, parse_file_nr, parse_tcp_table, service_of,
    to_sample,
)

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def counters(t: float, **over) -> Counters:
    base = dict(
        ts=1_700_000_000.0 + t, mono=100.0 + t,
        cpu=CpuTimes(busy=10.0, iowait=1.0, total=100.0),
        per_core=[CpuTimes(5.0, 0.5, 50.0), CpuTimes(5.0, 0.5, 50.0)],
        load=(0.5, 0.4, 0.3), mem_total_bytes=8_000, mem_used_bytes=2_000, mem_pct=25.0,
        swap_pct=0.0, disk={"vda": (1000, 2000, 10, 20)}, disk_free_pct=50.0,
        net={"lo": (100, 200, 1, 2, 0, 0, 0, 0)}, tcp={"ESTABLISHED": 3}, open_fds=99,
        processes=[ProcCounters(7, "generator", 10.0, 1 << 20)],
    )
    base.update(over)
    return Counters(**base)


def test_cpu_split_leaves_guest_out_of_total_and_iowait_out_of_busy():
    t = cpu_split(Times(10, 1, 4, 80, 5, 0, 0, 0, 3, 0))
    assert t.total == 100 and t.iowait == 5 and t.busy == 15


def test_rates_and_shares_over_the_interval():
    prev = counters(0.0)
    cur = counters(
        2.0,
        cpu=CpuTimes(busy=10.0 + 60.0, iowait=1.0 + 20.0, total=100.0 + 200.0),
        per_core=[CpuTimes(5.0 + 100, 0.5, 150.0), CpuTimes(5.0, 0.5, 150.0)],
        disk={"vda": (1000 + 4096, 2000 + 8192, 10 + 2, 20 + 4), "new": (5, 5, 5, 5)},
        net={"lo": (100 + 1000, 200 + 3000, 1 + 10, 2 + 30, 1, 2, 3, 4)},
        processes=[ProcCounters(7, "generator", 11.5, 2 << 20), ProcCounters(8, "ui", 3.0, 1)],
    )
    s = to_sample(prev, cur, "h1")
    assert s.host == "h1" and s.interval_s == 2.0 and s.ts == cur.ts
    assert s.cpu_pct == 30.0 and s.iowait_pct == 10.0
    assert s.cpu_per_core == [100.0, 0.0] and s.cores == 2
    assert s.disk == {"vda": s.disk["vda"]}  # a device new in this reading has no rate yet
    d = s.disk["vda"]
    assert (d.read_bps, d.write_bps, d.read_iops, d.write_iops) == (2048, 4096, 1, 2)
    n = s.net["lo"]
    assert (n.tx_bps, n.rx_bps, n.tx_pps, n.rx_pps) == (500, 1500, 5, 15)
    assert (n.errors_in, n.errors_out, n.drops_in, n.drops_out) == (1, 2, 3, 4)
    gen, ui = s.processes
    assert (gen.name, gen.cpu_pct, gen.rss_bytes) == ("generator", 75.0, 2 << 20)
    assert (ui.name, ui.cpu_pct) == ("ui", 0.0)  # first seen: no interval to measure over


def test_counter_going_backwards_reads_as_zero_not_negative():
    prev = counters(0.0, net={"eth0": (10_000, 10_000, 10, 10, 0, 0, 0, 0)})
    cur = counters(1.0, net={"eth0": (5, 5, 1, 1, 0, 0, 0, 0)})
    assert to_sample(prev, cur, "h").net["eth0"].rx_bps == 0.0


@pytest.mark.parametrize("cmdline,service", [
    (["/venv/bin/python", "-m", "services.generator"], "generator"),
    (["python3", "-X", "dev", "-m", "services.coordinator.__main__"], "coordinator"),
    (["python", "-mservices.ui"], "ui"),
    (["/venv/bin/python", "/venv/bin/surge-service", "monitor"], "monitor"),
    (["/venv/bin/python", "/venv/bin/surge", "run", "plan.yaml"], "cli"),
    (["python", "-m", "pytest"], None),
    (["python", "app.py", "-m", "services.generator"], None),
    (["nginx: worker process"], None),
    ([], None),
])
def test_service_of_command_line(cmdline, service):
    assert service_of(cmdline) == service


def test_tcp_table_counts_states():
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:1092 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0\n"
        "   1: 0100007F:1092 0100007F:D4F2 01 00000000:00000000 00:00000000 00000000  0\n"
        "   2: 0100007F:D4F2 0100007F:1092 01 00000000:00000000 00:00000000 00000000  0\n"
        "   3: 0100007F:D4F4 0100007F:1092 06 00000000:00000000 00:00000000 00000000  0\n"
    )
    states: dict[str, int] = {"ESTABLISHED": 1}
    parse_tcp_table(text, states)
    assert states == {"LISTEN": 1, "ESTABLISHED": 3, "TIME_WAIT": 1}


def test_file_nr_is_allocated_minus_free():
    assert parse_file_nr("1269\t0\t2466174\n") == 1269
    assert parse_file_nr("1300 31 100\n") == 1269
    assert parse_file_nr("") is None
