"""Monitor settings from SURGE_* environment variables (names kept by deploy/k8s)."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from msgspec import Struct, field

from services.common.config import DEFAULT_NATS_URL, from_env

DEFAULT_ALERTS = "cpu_high=cpu_pct>90 for 30s, disk_low=disk_free_pct<10"


class Config(Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    host_name: str = ""  # default: this machine's host name (the node's name on Kubernetes)
    host_proc: str = ""  # the host's /proc mounted in a container, e.g. /host/proc
    sample_s: float = 1.0
    data_dir: str = "/tmp/surge-monitor"  # spill file; disk_free_pct is of this filesystem
    # InfluxDB (v2 write API); without a URL the monitor only publishes on the bus
    influx_url: str = ""
    influx_token: str = ""
    influx_org: str = "surge"
    influx_bucket: str = "surge"
    influx_timeout_s: float = 5.0
    influx_batch: int = 5000  # points per write request
    influx_flush_s: float = 1.0  # write at least this often while points wait
    influx_buffer_points: int = 100_000  # in memory; beyond it points spill to a file
    influx_spill_max_mb: float = 512.0  # bound of the spill file; beyond it new points drop
    influx_backoff_s: float = 0.5  # first retry delay after a failed write, doubling
    influx_backoff_max_s: float = 30.0
    # live run snapshots: one monitor of the queue group writes each snapshot
    live_queue: str = "surge-monitor"
    # alert rules: "[name=]metric>threshold [for 30s]", separated by commas ("" for none)
    alerts: str = DEFAULT_ALERTS
    # interfaces/devices not sampled (prefixes): container veths, loop devices, RAM disks
    net_exclude: list[str] = field(default_factory=lambda: ["veth"])
    disk_exclude: list[str] = field(default_factory=lambda: ["loop", "ram", "zram"])
    # depth (docs/monitor.md): TCP states of these ports, these processes by name
    monitor_ports: list[int] = field(default_factory=list)
    monitor_processes: list[str] = field(default_factory=list)
    jstat_s: float = 5.0  # a JVM's heap/GC via jstat at most this often (jstat is costly)
    # alerts delivered (services/monitor/notify.py); empty host / URL: not sent that way
    alert_smtp_host: str = ""
    alert_smtp_port: int = 587
    alert_smtp_user: str = ""
    alert_smtp_password: str = ""
    alert_smtp_from: str = "surge@localhost"
    alert_smtp_to: list[str] = field(default_factory=list)
    alert_smtp_starttls: bool = True
    alert_smtp_ssl: bool = False  # implicit TLS (port 465) instead of STARTTLS
    alert_smtp_cafile: str = ""  # a CA to trust for the SMTP server (default: the system's)
    alert_smtp_timeout_s: float = 10.0
    alert_webhook: str = ""  # POST JSON with a Slack-compatible "text"
    alert_webhook_timeout_s: float = 5.0
    alert_retries: int = 3  # attempts after the first, backoff doubling from alert_backoff_s
    alert_backoff_s: float = 1.0
    alert_dedup_s: float = 300.0  # a rule firing again within this is not sent again
    alert_rate_per_min: float = 20.0  # per channel; beyond it messages are dropped (counted)
    # Prometheus /metrics (services/monitor/metrics.py); 0 turns it off
    metrics_port: int = 9108
    metrics_addr: str = ""  # "" = every interface
    metrics_run_keep_s: float = 300.0  # a finished run's series are kept this long
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return from_env(cls, environ)

    @property
    def host(self) -> str:
        return self.host_name or socket.gethostname()
