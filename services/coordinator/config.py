"""Coordinator settings from SURGE_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct, field

from schemas.quotas import Quota
from services.common.config import DEFAULT_NATS_URL, from_env


class Config(Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    # targets a plan may point at: CIDRs or host patterns ("*" allows everything)
    target_allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128", "localhost"])
    start_delay_s: float = 1.0  # lead time so every generator starts at the same instant
    dead_after_s: float = 2.2  # no heartbeat for this long: the generator is gone
    merge_wait_s: float = 1.5  # how long a second waits for late generators
    # merger workers (python -m services.coordinator.merger) take the stats instead of
    # the leader and hand it partial aggregates; 0: the leader takes them itself
    mergers: int = 0
    merger_id: str | None = None  # a merger worker's name (default <host>-<pid>)
    merger_flush_s: float = 0.25  # how often a merger worker hands the leader its sums
    registry_ttl_s: float = 3.0
    coordinator_id: str | None = None  # default: <host>-<pid>; names the lease holder
    lease_s: float = 3.0  # a leader silent this long is replaced by a standby
    lease_renew_s: float = 1.0
    kv_replicas: int = 1  # JetStream replicas of buckets/streams (3 on a 3-node cluster)
    runlog_max_age_s: float = 7 * 24 * 3600.0  # accepted intervals kept at most this long
    # limits per target system ("host:port", or "*" for any other), docs/quotas.md
    quotas: dict[str, Quota] = {}
    retain_runs: int = 0  # keep at most this many ended runs (0: all); baselines always kept
    retain_days: float = 0.0  # drop ended runs older than this (0: never)
    retention_every_s: float = 30.0  # how often the leader applies it
    schedule_grace_s: float = 60.0  # a fire later than this was missed: its policy decides
    logs_max_age_s: float = 7 * 24 * 3600.0  # generators' log lines (SURGE_LOGS) kept this long
    logs_max_bytes: int = 1 << 30  # ... and at most this much of them, oldest dropped first
    max_rate: float = 1_000_000.0
    max_duration_s: float = 24 * 3600.0
    max_connections: int = 50_000
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return from_env(cls, environ)
