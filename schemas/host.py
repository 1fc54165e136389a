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


class JvmSample(Struct, frozen=True, kw_only=True):
    """A Java process's heap and GC as the JDK's ``jstat -gc`` prints them."""

    heap_used_bytes: int  # survivor + eden + old in use
    heap_capacity_bytes: int  # survivor + eden + old committed
    young_gc: int  # cumulative collections since the JVM started
    full_gc: int
    gc_time_s: float  # cumulative seconds spent in GC


class WatchedProcess(Struct, frozen=True, kw_only=True):
    """Every process of one name in SURGE_MONITOR_PROCESSES, added up."""

    name: str  # as configured, e.g. "java", "postgres"
    count: int  # processes of that name
    cpu_pct: float  # of one core, summed over the processes
    rss_bytes: int
    threads: int
    open_files: int | None  # file descriptors; None where the monitor may not read them
    jvm: JvmSample | None = None  # the largest Java process's, when jstat is present


class HostSample(Struct, frozen=True, kw_only=True, tag="host.v1"):
    """Everything the monitor reads of one host in one interval."""

    host: str
    ts: float  # unix seconds at the end of the interval
    interval_s: float
    cores: int
    cpu_pct: float
    cpu_per_core: list[float]
    iowait_pct: float
    steal_pct: float = 0.0  # taken by the hypervisor from this VM
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
    # SURGE_MONITOR_PORTS: port -> state -> sockets with that local or remote port
    tcp_ports: dict[str, dict[str, int]] = {}
    tcp_retrans_ps: float | None = None  # segments retransmitted per second (kernel's counter)
    tcp_out_ps: float | None = None  # segments sent per second, for the retransmit ratio
    open_fds: int | None = None
    processes: list[ProcessSample] = []
    watched: list[WatchedProcess] = []  # SURGE_MONITOR_PROCESSES, in configured order


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
    alerts_sent: int = 0  # deliveries by e-mail/webhook that succeeded
    alerts_failed: int = 0  # given up after every retry
    alerts_dropped: int = 0  # over the rate limit or the queue bound
    alerts_suppressed: int = 0  # duplicates not sent again
    metrics_port: int = 0  # where /metrics listens (0: off)


class HostTimeline(Struct, frozen=True, kw_only=True):
    """One host during a run, second by second, aligned with the report's timeline.

    Every list has one entry per second of the run: index t is the report timeline's
    ``t`` (the second [start + t, start + t + 1)). An entry is the monitor's sample whose
    interval holds the middle of that second; ``None`` where no sample does (no monitor
    on the host, or it was not heard).
    """

    host: str
    monitored: bool  # a monitor sampled this host during the run
    generators: list[str] = []  # the run's generators on this host
    cores: int | None = None
    cpu_pct: list[float | None] = []  # busy, all cores (iowait and steal shown apart)
    iowait_pct: list[float | None] = []
    steal_pct: list[float | None] = []
    mem_pct: list[float | None] = []
    mem_used_bytes: list[int | None] = []
    net_rx_bps: list[float | None] = []  # every interface but loopback, added up
    net_tx_bps: list[float | None] = []
    tcp: dict[str, list[int | None]] = {}  # state -> sockets each second
    tcp_retrans_ps: list[float | None] = []


class GeneratorCpu(Struct, frozen=True, kw_only=True):
    """A generator's own CPU each second of the run (its processes, engines included)."""

    generator_id: str
    host: str
    cores: int  # cores its engines can use (SURGE_WORKERS, at most the CPUs it may run on)
    cpu_pct: list[float | None]  # % of one core, index t as in the timeline
    peak_pct: float | None  # highest second, % of its cores
    # seconds it was saturated: its processes above SATURATED_PCT of its cores, or its
    # (monitored) host above SATURATED_PCT while it fell behind (late or dropped arrivals)
    saturated_s: int
    limited: bool  # saturated long enough to have set the rate (see docs/monitor.md)


SATURATED_PCT = 90.0  # a generator above this % of its cores is the limit


class HostsReport(Struct, frozen=True, kw_only=True):
    """The machines under a run: every generator host and every monitored host."""

    seconds: int  # entries in each series (the timeline's length)
    hosts: list[HostTimeline] = []
    generators: list[GeneratorCpu] = []
    limited_by: list[str] = []  # generators flagged as the limit
    note: str | None = None  # what the verdict says about it, e.g. "the generator, not the target, set this rate: ..."
