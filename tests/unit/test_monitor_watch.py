"""services.monitor.watch and the depth part of sampler.to_sample: ports, retransmits,
named processes, jstat."""

from __future__ import annotations

from services.monitor.sampler import Counters, CpuTimes, parse_tcp_table, to_sample
from services.monitor.watch import (
    WatchedCounters, matches, parse_jstat_gc, parse_snmp_tcp, port_of,
)
from schemas.host import JvmSample

# two sockets on 8080 (listener + accepted), a client to 5432, one unrelated
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000
   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000
   3: 0100007F:A000 0A000001:1538 06 00000000:00000000 00:00000000 00000000  1000
   4: 0100007F:0016 0A000002:270F 01 00000000:00000000 00:00000000 00000000  1000
"""

SNMP = """Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 10 20 0 0 3 1000 2000 17 0 5 0
Udp: InDatagrams
Udp: 5
"""

JSTAT = """ S0C         S1C         S0U         S1U          EC           EU           OC           OU          MC         MU       CCSC      CCSU     YGC     YGCT     FGC    FGCT     CGC    CGCT       GCT
        0.0      2048.0         0.0      2048.0      30720.0      10240.0      32768.0       4096.0     1024.0      900.0     128.0     100.0      7     0.021     1     0.050     2     0.001     0.072
"""


def test_port_of_reads_hex_port():
    assert port_of("0100007F:1F90") == 8080
    assert port_of("00000000000000000000000001000000:1538") == 5432


def test_tcp_states_per_watched_port_count_local_and_remote_sides():
    states: dict[str, int] = {}
    ports: dict[int, dict[str, int]] = {8080: {}, 5432: {}, 9999: {}}
    parse_tcp_table(TCP, states, ports)
    assert states == {"LISTEN": 1, "ESTABLISHED": 3, "TIME_WAIT": 1}
    assert ports[8080] == {"LISTEN": 1, "ESTABLISHED": 2}
    assert ports[5432] == {"TIME_WAIT": 1}
    assert ports[9999] == {"ESTABLISHED": 1}  # a remote port counts too


def test_snmp_gives_retransmitted_and_sent_segments():
    assert parse_snmp_tcp(SNMP) == (17, 2000)
    assert parse_snmp_tcp("Ip: a\nIp: 1\n") is None


def test_jstat_gc_heap_and_collections():
    j = parse_jstat_gc(JSTAT)
    assert j == JvmSample(heap_used_bytes=(2048 + 10240 + 4096) * 1024,
                          heap_capacity_bytes=(2048 + 30720 + 32768) * 1024,
                          young_gc=7, full_gc=1, gc_time_s=0.072)
    assert parse_jstat_gc("12345 not found") is None


def test_process_matches_by_name_or_executable():
    assert matches("java", "/usr/lib/jvm/bin/java", "java", ["postgres", "java"]) == "java"
    assert matches("postgres: writer", "/usr/lib/postgresql/bin/postgres", "postgres: writer",
                   ["postgres"]) == "postgres"
    assert matches("python3", "/usr/bin/python3", "python3", ["java"]) is None


def counters(t: float, **over) -> Counters:
    base = dict(
        ts=1_700_000_000.0 + t, mono=100.0 + t, cpu=CpuTimes(10.0, 1.0, 100.0, steal=2.0),
        per_core=[CpuTimes(10.0, 1.0, 100.0)], load=(0.0, 0.0, 0.0), mem_total_bytes=1,
        mem_used_bytes=1, mem_pct=1.0, swap_pct=0.0, disk={}, disk_free_pct=None, net={},
        tcp={}, open_fds=None, processes=[],
    )
    base.update(over)
    return Counters(**base)


def test_sample_has_steal_retransmit_rates_ports_and_processes_added_up_per_name():
    prev = counters(0.0, tcp_segs=(10, 1000), watched=[
        WatchedCounters(1, "java", 5.0, 100, 10, 20),
        WatchedCounters(2, "java", 1.0, 50, 5, None),
    ])
    jvm = JvmSample(heap_used_bytes=1, heap_capacity_bytes=2, young_gc=3, full_gc=0,
                    gc_time_s=0.1)
    cur = counters(2.0, cpu=CpuTimes(110.0, 1.0, 300.0, steal=22.0),
                   tcp_segs=(16, 3000), tcp_ports={8080: {"ESTABLISHED": 2}},
                   watched=[WatchedCounters(1, "java", 6.0, 200, 12, 30),
                            WatchedCounters(2, "java", 2.0, 60, 5, None),
                            WatchedCounters(3, "postgres", 9.0, 10, 1, 4)],
                   jvm={"java": jvm})
    s = to_sample(prev, cur, "h")
    assert s.steal_pct == 10.0
    assert s.tcp_retrans_ps == 3.0 and s.tcp_out_ps == 1000.0
    assert s.tcp_ports == {"8080": {"ESTABLISHED": 2}}
    java, pg = s.watched
    assert (java.name, java.count, java.cpu_pct, java.rss_bytes, java.threads) == \
        ("java", 2, 100.0, 260, 17)
    assert java.open_files is None  # one of them unreadable: the sum would be a lie
    assert java.jvm == jvm
    assert (pg.name, pg.cpu_pct, pg.open_files, pg.jvm) == ("postgres", 0.0, 4, None)


def test_no_retransmit_rate_without_kernel_counters():
    s = to_sample(counters(0.0), counters(1.0), "h")
    assert s.tcp_retrans_ps is None and s.watched == [] and s.tcp_ports == {}
