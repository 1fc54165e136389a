"""The report's ``hosts`` section: the machines under a run, second by second.

Pure. A ``HostsRecorder`` per run takes every monitor's ``HostSample`` heard while the
run is on (``surge.host.>``) and each generator's own CPU from its intervals, then
lays them on the run's timeline (``section``): second t of the run — the timeline's
``t``, [start + t, start + t + 1) — gets the sample whose interval holds the middle
of that second. Samples cover back-to-back intervals, so a host whose monitor ran
through the run has an entry for every second.

A generator is flagged as the limit when, for long enough, it was saturated: its own
processes above ``SATURATED_PCT`` of its cores, or — where a monitor watches its host —
the host's CPU above ``SATURATED_PCT`` in a second the generator fell behind its
schedule (late or dropped arrivals: the core it was pinned to was busy with something
else). The rate the run reached was then what the generator could do, not what the
target could take.
"""

from __future__ import annotations

import bisect
import math

from msgspec import Struct

from schemas.host import SATURATED_PCT, GeneratorCpu, HostSample, HostsReport, HostTimeline
from schemas.stats import IntervalStats

EARLY_S = 5.0  # samples ending this long before the start may still cover second 0
MAX_SAMPLES = 4 * 3600  # per host and run: a 4-hour run at one sample a second
LIMITED_MIN_S = 2  # a generator saturated in fewer seconds than this is not "the limit"
LIMITED_SHARE = 0.25  # ... nor one saturated in less than this share of its seconds


class _Point(Struct, frozen=True, array_like=True):
    ts: float
    interval_s: float
    cpu_pct: float
    iowait_pct: float
    steal_pct: float
    mem_pct: float
    mem_used_bytes: int
    net_rx_bps: float
    net_tx_bps: float
    tcp: dict[str, int]
    tcp_retrans_ps: float | None


def _point(s: HostSample) -> _Point:
    rx = sum(n.rx_bps for nic, n in s.net.items() if nic != "lo")
    tx = sum(n.tx_bps for nic, n in s.net.items() if nic != "lo")
    return _Point(s.ts, s.interval_s, s.cpu_pct, s.iowait_pct, s.steal_pct, s.mem_pct,
                  s.mem_used_bytes, round(rx, 1), round(tx, 1), dict(s.tcp), s.tcp_retrans_ps)


class _Gen:
    __slots__ = ("host", "cores", "cpu", "behind")

    def __init__(self) -> None:
        self.host = ""
        self.cores = 0
        self.cpu: dict[int, float] = {}  # seq -> % of one core
        self.behind: set[int] = set()  # seconds with late or dropped arrivals


class HostsRecorder:
    def __init__(self, start_at: float) -> None:
        self.start_at = start_at
        self.points: dict[str, list[_Point]] = {}  # host -> by ts
        self.cores: dict[str, int] = {}
        self.gens: dict[str, _Gen] = {}

    # --- in -----------------------------------------------------------------------
    def add_sample(self, s: HostSample) -> None:
        if s.ts < self.start_at - EARLY_S:
            return
        points = self.points.setdefault(s.host, [])
        if len(points) >= MAX_SAMPLES:
            return
        p = _point(s)
        if not points or points[-1].ts < p.ts:
            points.append(p)
        else:  # late or repeated: keep the order, drop exact repeats
            i = bisect.bisect_left([q.ts for q in points], p.ts)
            if i < len(points) and points[i].ts == p.ts:
                return
            points.insert(i, p)
        self.cores[s.host] = s.cores

    def add_interval(self, st: IntervalStats) -> None:
        g = self.gens.get(st.generator_id)
        if g is None:
            g = self.gens[st.generator_id] = _Gen()
        if st.host:
            g.host = st.host
        if st.cpu_cores:
            g.cores = st.cpu_cores
        if st.cpu_pct is not None:
            g.cpu[st.seq] = st.cpu_pct
        if any(r.late or r.dropped for r in st.requests.values()):
            g.behind.add(st.seq)

    # --- out ----------------------------------------------------------------------
    def covered(self, seconds: int) -> bool:
        """Every monitored host has a sample past the middle of the last second."""
        last_mid = self.start_at + seconds - 0.5
        return all(points[-1].ts >= last_mid for points in self.points.values() if points)

    def _at(self, points: list[_Point], stamps: list[float], t: int) -> _Point | None:
        mid = self.start_at + t + 0.5
        i = bisect.bisect_left(stamps, mid)
        if i < len(points) and points[i].ts - points[i].interval_s <= mid:
            return points[i]
        return None

    def section(self, seconds: int) -> HostsReport:
        seconds = max(seconds, 0)
        by_host: dict[str, list[str]] = {}
        for gid, g in sorted(self.gens.items()):
            by_host.setdefault(g.host or "?", []).append(gid)
        hosts = []
        host_cpu: dict[str, list[float | None]] = {}
        for host in sorted(set(self.points) | set(by_host)):
            points = self.points.get(host, [])
            stamps = [p.ts for p in points]
            at = [self._at(points, stamps, t) for t in range(seconds)]
            host_cpu[host] = [p.cpu_pct if p else None for p in at]
            if not any(p is not None for p in at):
                hosts.append(HostTimeline(host=host, monitored=False,
                                          generators=by_host.get(host, [])))
                continue
            states = sorted({state for p in at if p is not None for state in p.tcp})
            hosts.append(HostTimeline(
                host=host, monitored=True, generators=by_host.get(host, []),
                cores=self.cores.get(host),
                cpu_pct=[p.cpu_pct if p else None for p in at],
                iowait_pct=[p.iowait_pct if p else None for p in at],
                steal_pct=[p.steal_pct if p else None for p in at],
                mem_pct=[p.mem_pct if p else None for p in at],
                mem_used_bytes=[p.mem_used_bytes if p else None for p in at],
                net_rx_bps=[p.net_rx_bps if p else None for p in at],
                net_tx_bps=[p.net_tx_bps if p else None for p in at],
                tcp={st: [p.tcp.get(st, 0) if p else None for p in at] for st in states},
                tcp_retrans_ps=[p.tcp_retrans_ps if p else None for p in at],
            ))
        gens = [generator_cpu(gid, g.host, g.cores, g.cpu, seconds, g.behind,
                              host_cpu.get(g.host or "?"))
                for gid, g in sorted(self.gens.items())]
        limited = [g for g in gens if g.limited]
        return HostsReport(seconds=seconds, hosts=hosts, generators=gens,
                           limited_by=[g.generator_id for g in limited],
                           note=limit_note(limited))


def generator_cpu(gid: str, host: str, cores: int, cpu: dict[int, float], seconds: int,
                  behind: set[int] | None = None,
                  host_cpu: list[float | None] | None = None) -> GeneratorCpu:
    """One generator's CPU series and whether it was the run's limit."""
    series = [cpu.get(t) for t in range(seconds)]  # the drain after the end is left out
    cores = max(cores, 1)
    behind = behind or set()
    host_cpu = host_cpu or []
    known = [v / cores for v in series if v is not None]
    saturated = 0
    for t, v in enumerate(series):
        own = v is not None and v / cores >= SATURATED_PCT
        busy_host = (t in behind and t < len(host_cpu) and host_cpu[t] is not None
                     and host_cpu[t] >= SATURATED_PCT)
        saturated += own or busy_host
    seen = max(len(known), sum(1 for t in range(seconds) if t < len(host_cpu) and host_cpu[t] is not None))
    limited = saturated >= LIMITED_MIN_S and saturated >= LIMITED_SHARE * seen
    return GeneratorCpu(
        generator_id=gid, host=host, cores=cores, cpu_pct=series,
        peak_pct=round(max(known), 1) if known else None, saturated_s=saturated,
        limited=limited,
    )


def limit_note(limited: list[GeneratorCpu]) -> str | None:
    if not limited:
        return None
    parts = [
        f"{g.generator_id} was saturated in {g.saturated_s} of {len(g.cpu_pct)} s (its "
        f"{g.cores} core{'s' if g.cores != 1 else ''} or its host above {SATURATED_PCT:g} %; "
        f"its own peak {g.peak_pct if g.peak_pct is not None else '?'} %)"
        for g in limited
    ]
    return "the generator, not the target, set this rate: " + "; ".join(parts)


def seconds_of(duration_s: float, timeline_len: int) -> int:
    return max(math.ceil(duration_s - 1e-9), timeline_len)
