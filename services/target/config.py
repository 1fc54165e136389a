"""Demo/test target settings from SURGE_TARGET_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from services.common.config import from_env


class Config(Struct, frozen=True, kw_only=True):
    target_host: str = "127.0.0.1"
    target_port: int = 8080
    target_delay_ms: float = 0.0  # added to every response
    target_stall_every_s: float = 0.0  # 0: never; else hold every response for ...
    target_stall_ms: float = 0.0  # ... this long, once per period (a GC pause, say)
    target_tls_cert: str = ""  # PEM certificate (chain): serve https instead of http
    target_tls_key: str = ""  # PEM private key, when not in the certificate file
    # with TLS: offer HTTP/2 by ALPN too; without: h2c by prior knowledge beside HTTP/1.1
    # (services/target/http2.py)
    target_http2: bool = False
    log_level: str = "info"
    log_json: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return from_env(cls, environ)
