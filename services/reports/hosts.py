"""The report's ``hosts`` section in short: what every rendering and the compare page show.

Pure. A report's ``hosts`` holds second-by-second series (docs/monitor.md); tables and
comparisons want one line per host — mean and peak CPU, the worst iowait, steal,
memory and retransmits, the mean network — and one per generator: its peak CPU as a
share of its cores, the seconds it was saturated, whether it was the run's limit.
"""

from __future__ import annotations

import msgspec

from schemas.host import HostsReport


class HostLine(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    monitored: bool
    generators: list[str]
    cores: int | None
    cpu_mean: float | None
    cpu_max: float | None
    iowait_max: float | None
    steal_max: float | None
    mem_max: float | None
    rx_mean_bps: float | None
    tx_mean_bps: float | None
    retrans_max_ps: float | None
    tcp_max: dict[str, int]  # state -> most sockets in one second
    seconds: int  # seconds with a sample


class GeneratorLine(msgspec.Struct, frozen=True, kw_only=True):
    generator_id: str
    host: str
    cores: int
    cpu_mean_pct: float | None  # % of its cores
    peak_pct: float | None
    saturated_s: int
    limited: bool


class HostsSummary(msgspec.Struct, frozen=True, kw_only=True):
    hosts: list[HostLine]
    generators: list[GeneratorLine]
    limited_by: list[str]
    note: str | None


def _known(xs: list) -> list:
    return [x for x in xs if x is not None]


def _mean(xs: list) -> float | None:
    k = _known(xs)
    return round(sum(k) / len(k), 1) if k else None


def _max(xs: list) -> float | None:
    k = _known(xs)
    return round(max(k), 1) if k else None


def summarize(h: HostsReport) -> HostsSummary:
    hosts = [
        HostLine(
            host=x.host, monitored=x.monitored, generators=list(x.generators), cores=x.cores,
            cpu_mean=_mean(x.cpu_pct), cpu_max=_max(x.cpu_pct),
            iowait_max=_max(x.iowait_pct), steal_max=_max(x.steal_pct), mem_max=_max(x.mem_pct),
            rx_mean_bps=_mean(x.net_rx_bps), tx_mean_bps=_mean(x.net_tx_bps),
            retrans_max_ps=_max(x.tcp_retrans_ps),
            tcp_max={state: max(_known(v), default=0) for state, v in x.tcp.items()},
            seconds=len(_known(x.cpu_pct)),
        )
        for x in h.hosts
    ]
    gens = [
        GeneratorLine(
            generator_id=g.generator_id, host=g.host, cores=g.cores,
            cpu_mean_pct=_mean([v / g.cores if v is not None else None for v in g.cpu_pct]),
            peak_pct=g.peak_pct, saturated_s=g.saturated_s, limited=g.limited,
        )
        for g in h.generators
    ]
    return HostsSummary(hosts=hosts, generators=gens, limited_by=list(h.limited_by), note=h.note)


def bytes_rate(bps: float | None) -> str:
    """1.2 MB/s, 340 kB/s, 12 B/s; – for unknown."""
    if bps is None:
        return "–"
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f} {unit}"
    return f"{bps:.0f} B/s"
