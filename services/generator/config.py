"""Generator settings from SURGE_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from services.common import labels
from services.common.config import DEFAULT_NATS_URL, from_env


class Config(Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    generator_id: str | None = None  # default: <host>-<pid>
    generator_labels: str = ""  # pool labels, "zone=eu-1,room=a" (docs/pools.md)
    # the machine's name as its monitor says it (SURGE_HOST_NAME; the node's on Kubernetes),
    # so the report's hosts section puts this generator on its host; default: host name
    host_name: str = ""
    # sent with every request so a target can tell generators apart; "": none
    generator_header: str = "X-Surge-Generator"
    heartbeat_s: float = 1.0
    registry_ttl_s: float = 3.0  # the registry bucket forgets a silent generator
    capacity_rps: float = 0.0  # 0: measured (capacity.py): usable cores / CPU per request
    max_run_s: float = 24 * 3600.0  # safety: never run an assignment longer than this
    outbox_max: int = 3600  # unacknowledged intervals kept for the coordinator
    workers: int = 1  # engine processes under this one generator identity (SURGE_WORKERS)
    ready_file: str = ""  # written once registered, removed on stop (a readiness probe); "": off
    log_lines_per_s: int = 20  # info lines shipped to SURGE_LOGS per second; warnings always
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        config = from_env(cls, environ)
        config.labels()  # a malformed SURGE_GENERATOR_LABELS stops the start, named
        return config

    def labels(self) -> dict[str, str]:
        return labels.parse(self.generator_labels)
