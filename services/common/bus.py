"""NATS glue: connecting, JetStream buckets, and API endpoints that decode once.

``endpoint()`` wraps a typed handler for ``nats.micro``: it decodes the request
body into the handler's Struct at the edge, encodes the reply, and turns any
``SurgeError`` into ``{"error": {...}}`` with the NATS service-error headers.
An unexpected exception is logged with its traceback and answered as
``internal``; the service goes on serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from nats.micro.request import Request

from schemas.errors import BadRequest, ErrorReply, SurgeError
from services.common.fields import field_of

log = structlog.get_logger(__name__)

T = TypeVar("T")
MAX_REQUEST_BYTES = 4 * 1024 * 1024


async def connect(url: str, name: str, **kwargs: Any) -> Client:
    """Connect with reconnects forever; services outlive NATS restarts."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        servers=[u.strip() for u in url.split(",")],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **kwargs,
    )


async def key_value(
    js: JetStreamContext, bucket: str, ttl_s: float | None = None, history: int = 1
) -> KeyValue:
    """Open a KV bucket, creating it on first use (every service may be first)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    config = KeyValueConfig(bucket=bucket, history=history, ttl=ttl_s, storage=StorageType.FILE)
    try:
        return await js.create_key_value(config)
    except Exception:  # lost a creation race to another service: open what it made
        return await js.key_value(bucket)


async def object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except Exception:
        pass
    try:
        return await js.create_object_store(bucket, ObjectStoreConfig(bucket=bucket))
    except Exception:
        return await js.object_store(bucket)


def error_reply(err: SurgeError) -> bytes:
    return msgspec.json.encode(ErrorReply(err.body()))


async def respond_error(req: Request, err: SurgeError) -> None:
    await req.respond_error(str(err.status), f"{err.code}: {err.message}", data=error_reply(err))


def decode(data: bytes, typ: type[T], empty_ok: bool = False) -> T:
    """Bytes to a typed request or BadRequest naming the field."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request larger than {MAX_REQUEST_BYTES} bytes")
    if not data.strip() and empty_ok:
        data = b"{}"
    try:
        return msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc), field_of(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"not valid JSON: {exc}") from None


Handler = Callable[[Request], Awaitable[msgspec.Struct | bytes]]


def endpoint(handler: Handler, name: str) -> Callable[[Request], Awaitable[None]]:
    """Wrap a handler so that every request gets exactly one reply, errors included."""

    async def wrapped(req: Request) -> None:
        try:
            result = await handler(req)
            body = result if isinstance(result, bytes) else msgspec.json.encode(result)
            await req.respond(body)
        except SurgeError as err:
            await respond_error(req, err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler failed", endpoint=name)
            await respond_error(req, SurgeError(f"internal error: {type(exc).__name__}"))

    return wrapped
