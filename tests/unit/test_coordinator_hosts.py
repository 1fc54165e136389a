"""services.coordinator.hosts: host samples and generator CPU on the run's timeline."""

from __future__ import annotations

from schemas.host import HostSample, NetIO
from schemas.stats import IntervalStats, RequestInterval
from services.coordinator.hosts import HostsRecorder, generator_cpu, seconds_of

START = 1_700_000_000.0


def sample(host: str, ts: float, cpu: float, interval_s: float = 1.0, **over) -> HostSample:
    fields = dict(
        host=host, ts=ts, interval_s=interval_s, cores=2, cpu_pct=cpu, cpu_per_core=[cpu, cpu],
        iowait_pct=1.0, steal_pct=0.5, load1=0.0, load5=0.0, load15=0.0, mem_total_bytes=100,
        mem_used_bytes=40, mem_pct=40.0, swap_pct=0.0,
        net={"lo": NetIO(rx_bps=1e6, tx_bps=1e6, rx_pps=1, tx_pps=1, errors_in=0, errors_out=0,
                         drops_in=0, drops_out=0),
             "eth0": NetIO(rx_bps=300.0, tx_bps=200.0, rx_pps=1, tx_pps=1, errors_in=0,
                           errors_out=0, drops_in=0, drops_out=0)},
        tcp={"ESTABLISHED": 5}, tcp_retrans_ps=0.0)
    fields.update(over)
    return HostSample(**fields)


def interval(gid: str, seq: int, cpu: float | None, cores: int = 1, late: int = 0,
             host: str = "gen-box") -> IntervalStats:
    return IntervalStats(run_id="r", generator_id=gid, epoch=1, seq=seq, target=10, sent=10,
                         in_flight=0, requests={"a": RequestInterval(count=10, late=late)},
                         cpu_pct=cpu, cpu_cores=cores, host=host)


def test_every_second_gets_the_sample_holding_its_middle_even_with_jitter():
    rec = HostsRecorder(START)
    # samples every ~1 s, off the run's seconds by 0.3 s, one a little late (1.4 s)
    stamps = [START - 0.7, START + 0.3, START + 1.3, START + 2.7, START + 3.3, START + 4.3]
    prev = START - 1.7
    for i, ts in enumerate(stamps):
        rec.add_sample(sample("target", ts, cpu=10.0 * i, interval_s=ts - prev))
        prev = ts
    rec.add_sample(sample("target", START - 60, cpu=99.0))  # long before: not kept
    assert rec.covered(4) and not rec.covered(5)
    [host] = rec.section(4).hosts
    assert host.monitored and host.cores == 2
    # second 0 (middle +0.5) is in (+0.3, +1.3]; 1 (+1.5) and 2 (+2.5) in (+1.3, +2.7]
    assert host.cpu_pct == [20.0, 30.0, 30.0, 50.0]  # 3 (+3.5) in (+3.3, +4.3]
    assert host.net_rx_bps == [300.0] * 4  # loopback left out
    assert host.tcp == {"ESTABLISHED": [5, 5, 5, 5]} and host.iowait_pct[0] == 1.0


def test_a_gap_in_the_samples_is_none_not_a_guess():
    rec = HostsRecorder(START)
    rec.add_sample(sample("h", START + 1.0, 5.0))
    rec.add_sample(sample("h", START + 4.0, 7.0))  # interval 1 s: seconds 1, 2 not covered
    [host] = rec.section(4).hosts
    assert host.cpu_pct == [5.0, None, None, 7.0]


def test_generator_hosts_without_monitor_are_listed_and_saturation_is_flagged():
    rec = HostsRecorder(START)
    for seq, cpu in enumerate([60.0, 97.0, 99.0, 98.0, 99.5]):
        rec.add_interval(interval("g1", seq, cpu))
    for seq in range(5):
        rec.add_interval(interval("g2", seq, 50.0, cores=2))  # 25 % of two cores
    rec.add_interval(interval("g1", 5, 40.0))  # the drain after the end: not a second
    report = rec.section(5)
    [host] = report.hosts
    assert (host.host, host.monitored, host.generators) == ("gen-box", False, ["g1", "g2"])
    g1, g2 = report.generators
    assert g1.cpu_pct == [60.0, 97.0, 99.0, 98.0, 99.5]
    assert (g1.saturated_s, g1.limited, g1.peak_pct) == (4, True, 99.5)
    assert (g2.saturated_s, g2.limited, g2.peak_pct) == (0, False, 25.0)
    assert report.limited_by == ["g1"]
    assert report.note == ("the generator, not the target, set this rate: g1 was saturated in "
                           "4 of 5 s (its 1 core or its host above 90 %; its own peak 99.5 %)")


def test_one_busy_second_does_not_make_the_limit():
    g = generator_cpu("g", "h", 1, {0: 95.0, 1: 20.0, 2: 20.0, 3: 20.0, 4: 20.0}, 5)
    assert g.saturated_s == 1 and not g.limited
    g = generator_cpu("g", "h", 1, {t: 95.0 if t < 2 else 10.0 for t in range(20)}, 20)
    assert g.saturated_s == 2 and not g.limited  # 2 of 20 s: a blip, not the limit
    assert generator_cpu("g", "h", 1, {}, 3).cpu_pct == [None, None, None]


def test_seconds_follow_the_duration_or_the_timeline():
    assert seconds_of(4.0, 4) == 4 and seconds_of(3.2, 3) == 4 and seconds_of(2.0, 5) == 5


def test_a_busy_host_under_a_generator_that_fell_behind_is_saturation_too():
    """Pinned to a core something else keeps busy: the generator gets 60 % of it, the
    host is at 100 %, arrivals go late. The generator still set the rate."""
    rec = HostsRecorder(START)
    for t in range(4):
        rec.add_sample(sample("box", START + t + 1.0, cpu=100.0 if t else 40.0))
        rec.add_interval(interval("g", t, 60.0, late=0 if t == 0 else 500, host="box"))
    rec.add_interval(interval("calm", 0, 10.0, host="box"))  # on time: not flagged
    report = rec.section(4)
    [calm, g] = report.generators
    assert (g.saturated_s, g.limited, g.peak_pct) == (3, True, 60.0)
    assert (calm.saturated_s, calm.limited) == (0, False)
    assert report.limited_by == ["g"]
