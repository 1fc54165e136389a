"""Reading ``SURGE_*`` environment variables into frozen config Structs.

Only ``config.py`` modules read the environment; each service calls
``from_env(Config, environ)`` once at start and passes the Struct down.
"""

from __future__ import annotations

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
    if typ is bool or text == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value
