"""UI settings from SURGE_* environment variables (SURGE_UI_HOST, SURGE_UI_PORT, ...)."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from services.common.config import DEFAULT_NATS_URL, from_env


class Config(Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    ui_host: str = "127.0.0.1"
    ui_port: int = 8089
    ui_token: str = ""  # set: every page, API call and WebSocket needs it
    ui_queue_max: int = 256  # frames waiting for one browser before it is dropped
    ui_history: int = 600  # live snapshots kept per run for browsers that open late
    ui_runs_kept: int = 10  # runs whose live history is kept
    ui_api_timeout_s: float = 5.0
    # approver credentials (docs/quotas.md): set, the UI may approve or refuse runs over a
    # quota on a second NATS connection used for run.approve only; unset, it cannot
    ui_approver_user: str = ""
    ui_approver_password_file: str = ""
    registry_ttl_s: float = 3.0  # only used if the UI is first to create the bucket
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return from_env(cls, environ)
