"""Host messages: the monitor's once-a-second sample and its threshold alerts.

Published as JSON on ``surge.host.<host>`` and ``surge.alerts.<host>`` (see
schemas.subjects). Rates are per second over the interval since the previous sample;
byte counts are bytes, percentages 0..100.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class DiskIO(Struct, frozen=True, kw_only=True):
    read_bps: float
    write_bps: float
    read_iops: float
    write_iops: float


class NetIO(Struct, frozen=True, kw_only=True):
    rx_bps: float
    tx_bps: float
    rx_pps: float
    tx_pps: float
    errors_in: int  # cumulative, as the kernel counts them
    errors_out: int
    drops_in: int
    drops_out: int


class ProcessSample(Struct, frozen=True, kw_only=True):
    """One of Surge's own processes (so a saturated generator shows)."""

    pid: int
    name: str  # the service: generator, coordinator, monitor, ui, ...
    cpu_pct: float  # of one core (can exceed 100 with several threads)
    rss_bytes: int


class HostSample(Struct, frozen=True, kw_only=True, tag="host.v1"):
    """Everything the monitor reads of one host in one interval."""

    host: str
    ts: float  # unix seconds at the end of the interval
    interval_s: float
    cores: int
    cpu_pct: float
    cpu_per_core: list[float]
    iowait_pct: float
    load1: float
    load5: float
    load15: float
    mem_total_bytes: int
    mem_used_bytes: int
    mem_pct: float
    swap_pct: float
    disk: dict[str, DiskIO] = {}  # device -> rates
    disk_free_pct: float | None = None  # of the data dir's filesystem
    net: dict[str, NetIO] = {}  # interface -> rates
    tcp: dict[str, int] = {}  # state (ESTABLISHED, TIME_WAIT, ...) -> connections
    open_fds: int | None = None
    processes: list[ProcessSample] = []


class Alert(Struct, frozen=True, kw_only=True, tag="alert.v1"):
    """A threshold crossed (firing) or no longer crossed (resolved) on one host."""

    host: str
    ts: float
    name: str  # the rule's name, e.g. "cpu_high"
    metric: str  # the HostSample field it watches, e.g. "cpu_pct"
    value: float
    threshold: float
    state: Literal["firing", "resolved"]
    message: str


class MonitorStatus(Struct, frozen=True, kw_only=True, tag="monitor-status.v1"):
    """A monitor's own state: what it sampled, and how its InfluxDB writer is doing.

    The reply of the monitor's ``status`` endpoint (``subjects.monitor_status``) and the
    ``data`` of every endpoint in ``nats micro stats surge-monitor``; the same figures,
    as strings, are the service metadata that ``nats micro info`` shows.
    """

    host: str
    ts: float  # unix seconds when this status was made
    samples: int  # host samples published since start
    influx: bool  # False: no SURGE_INFLUX_URL, the monitor only publishes on the bus
    buffered_points: int  # waiting to be written: in memory plus spilled
    spilled_points: int  # of those, in the spill file under the data dir
    written_points: int  # acknowledged by the server since start
    dropped_points: int = 0  # lost because the spill file reached its size bound
    snapshots_written: int = 0  # live run snapshots turned into points
    snapshots_skipped: int = 0  # malformed live snapshots (logged and skipped)
    last_write_at: float | None = None  # unix seconds of the last successful write
    last_error: str | None = None  # the last write error, kept after recovery (see _at)
    last_error_at: float | None = None
