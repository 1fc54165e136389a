"""Generator settings from SURGE_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from services.common.config import DEFAULT_NATS_URL, from_env


class Config(Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    generator_id: str | None = None  # default: <host>-<pid>
    heartbeat_s: float = 1.0
    registry_ttl_s: float = 3.0  # the registry bucket forgets a silent generator
    capacity_rps: float = 0.0  # 0: 20,000 req/s per engine process (SURGE_WORKERS)
    max_run_s: float = 24 * 3600.0  # safety: never run an assignment longer than this
    outbox_max: int = 3600  # unacknowledged intervals kept for the coordinator
    workers: int = 1  # engine processes under this one generator identity (SURGE_WORKERS)
    ready_file: str = ""  # written once registered, removed on stop (a readiness probe); "": off
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return from_env(cls, environ)
