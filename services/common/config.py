"""Reading ``SURGE_*`` environment variables into frozen config Structs.

Only ``config.py`` modules read the environment; each service calls
``from_env(Config, environ)`` once at start and passes the Struct down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from schemas.errors import BadRequest

T = TypeVar("T", bound=msgspec.Struct)

PREFIX = "SURGE_"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def from_env(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Fill ``cls`` from SURGE_<FIELD> variables; a bad value raises BadRequest naming it."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = PREFIX + field.name.upper()
        if key in env:
            raw[field.name] = _parse(env[key], field.type)
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"bad environment: {exc}".replace("$.", PREFIX)) from None


def _parse(value: str, typ: Any) -> Any:
    text = str(typ)
    if "list" in text:
        return [v.strip() for v in value.split(",") if v.strip()]
    if text.startswith("dict"):  # a mapping: JSON, e.g. SURGE_QUOTAS='{"shop:443": {...}}'
        try:
            return json.loads(value)
        except ValueError as exc:
            raise BadRequest(f"bad environment: not JSON: {exc}") from None
    if typ is bool or text == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True):
    """How a service proves who it is to NATS, and how it checks the server (TLS).

    From SURGE_NATS_USER / SURGE_NATS_PASSWORD, or SURGE_NATS_CREDS (a creds file),
    plus SURGE_NATS_TLS_CA / SURGE_NATS_TLS_CERT / SURGE_NATS_TLS_KEY. A *_FILE
    variant of the password (SURGE_NATS_PASSWORD_FILE) reads it from a file
    (a mounted secret). Every field empty: no auth, plain TCP.
    """

    user: str = ""
    password: str = ""
    creds: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_hostname: str = ""


def nats_auth(environ: Mapping[str, str] | None = None) -> NatsAuth:
    env = os.environ if environ is None else environ
    password = env.get("SURGE_NATS_PASSWORD", "")
    password_file = env.get("SURGE_NATS_PASSWORD_FILE", "")
    if password_file and not password:
        with open(password_file, encoding="utf-8") as f:
            password = f.read().strip()
    return NatsAuth(
        user=env.get("SURGE_NATS_USER", ""),
        password=password,
        creds=env.get("SURGE_NATS_CREDS", ""),
        tls_ca=env.get("SURGE_NATS_TLS_CA", ""),
        tls_cert=env.get("SURGE_NATS_TLS_CERT", ""),
        tls_key=env.get("SURGE_NATS_TLS_KEY", ""),
        tls_hostname=env.get("SURGE_NATS_TLS_HOSTNAME", ""),
    )
