"""NATS glue: connecting, JetStream buckets, and API endpoints that decode once.

``typed()`` decodes a request body into its ``schemas.api`` row's request type at the
edge, so a handler takes a typed request and returns a typed reply; ``endpoint()``
wraps a handler for ``nats.micro``: it encodes the reply and turns any ``SurgeError``
into ``{"error": {...}}`` with the NATS service-error headers.
An unexpected exception is logged with its traceback and answered as
``internal``; the service goes on serving.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NoStreamResponseError, ServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from nats.micro.request import Request

from schemas.api import Endpoint
from schemas.errors import BadRequest, ErrorReply, SurgeError
from services.common.config import NatsAuth, nats_auth
from services.common.fields import field_of

log = structlog.get_logger(__name__)

T = TypeVar("T")
MAX_REQUEST_BYTES = 4 * 1024 * 1024


async def connect(
    url: str,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    auth: NatsAuth | None = None,
    **kwargs: Any,
) -> Client:
    """Connect with reconnects forever; services outlive NATS restarts.

    Credentials and TLS come from ``auth`` or, by default, from the SURGE_NATS_*
    variables (``services.common.config.nats_auth``), so every service gets them.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc) or type(exc).__name__)

    async def disconnected() -> None:
        log.warning("nats disconnected")
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("nats reconnected")
        if on_reconnect is not None:
            await on_reconnect()

    options = connect_options(auth if auth is not None else nats_auth())
    return await nats.connect(
        servers=[u.strip() for u in url.split(",")],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        **options,
        **kwargs,
    )


def connect_options(auth: NatsAuth) -> dict[str, Any]:
    """nats.connect keyword arguments for a user/password or creds file, and TLS."""
    options: dict[str, Any] = {}
    if auth.creds:
        options["user_credentials"] = auth.creds
    elif auth.user:
        options["user"] = auth.user
        options["password"] = auth.password or ""
    if auth.tls_ca or auth.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=auth.tls_ca or None)
        if auth.tls_cert:
            ctx.load_cert_chain(auth.tls_cert, auth.tls_key or None)
        options["tls"] = ctx
        options["tls_hostname"] = auth.tls_hostname or None
    return options


DISCONNECT_S = 2.0  # a stopping service's goodbye and drain, at most; then the connection is closed
CLOSE_S = 1.0  # closing the connection itself (its socket may be stuck), at most
DISCONNECT_POLL_S = 0.05


async def disconnect(
    nc: Client,
    *farewells: Callable[[], Awaitable[Any]],
    limit_s: float = DISCONNECT_S,
    logger: Any = None,
) -> bool:
    """End a stopping service's connection in bounded time, whatever the bus does.

    Connected: say the ``farewells`` (a registry delete, ``micro.stop()``) in order, then
    drain, all within ``limit_s``. Not connected (NATS gone, reconnecting), the connection
    lost meanwhile, or a farewell or the drain fails or hangs: no more waiting, the
    connection is closed, its reconnect loop with it, so the process can exit.
    True when the goodbye was clean.

    nats-py's ``drain()`` swallows a cancellation and then flushes (seconds, against a
    dead server), so it runs as a task that is given up on, never ``wait_for``-ed.
    """
    logger = logger or log
    if nc.is_closed:
        return True
    reason = "not connected"
    polite: asyncio.Task | None = None
    if nc.is_connected:

        async def goodbye() -> None:
            for farewell in farewells:
                await farewell()
            await nc.drain()

        polite = asyncio.ensure_future(goodbye())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        # nats-py has no "connection lost" to wait on: look every 50 ms (a draining
        # connection counts as connected until the socket drops, then it is reconnecting;
        # a drain that is done closes it)
        while not polite.done() and (nc.is_connected or nc.is_closed) and loop.time() < deadline:
            await asyncio.wait({polite}, timeout=min(DISCONNECT_POLL_S, max(deadline - loop.time(), 0)))
        if polite.done() and not polite.cancelled() and polite.exception() is None:
            return True
        if polite.done() and not polite.cancelled():
            exc = polite.exception()
            reason = str(exc) or type(exc).__name__
        elif not nc.is_connected and not nc.is_closed:
            reason = "connection lost during the goodbye"
        else:
            reason = f"no goodbye in {limit_s:g}s"
    logger.warning("unclean disconnect", error=reason)
    closing = asyncio.ensure_future(nc.close())  # status CLOSED at once: no more reconnects
    left = [t for t in (closing, polite) if t is not None and not t.done()]
    if polite is not None and not polite.done():
        polite.cancel()
    if left:
        await asyncio.wait(left, timeout=CLOSE_S)
    for task in (closing, polite):
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            # a transport uvloop has already closed raises on the last flush: nothing lost
            logger.debug("close failed", error=str(task.exception()) or type(task.exception()).__name__)
    return False


async def watch_kv(
    kv: KeyValue,
    keys: str,
    on_entry: Callable[[Any, bool], None],
    restart: asyncio.Event,
    what: str,
) -> None:
    """Watch ``keys`` forever: ``on_entry(entry, replay)`` for every value and delete.

    The watch starts over (current values first, ``replay=True``) whenever ``restart``
    is set (a reconnect: the server may have lost the ephemeral consumer) or fails.
    """
    while True:
        watcher = None
        restart.clear()
        try:
            watcher = await kv.watch(keys)

            async def consume() -> None:
                replay = True
                async for entry in watcher:
                    if entry is None:
                        replay = False
                        continue
                    on_entry(entry, replay)

            consumer = asyncio.create_task(consume())
            waiter = asyncio.create_task(restart.wait())
            try:
                await asyncio.wait({consumer, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                consumer.cancel()
                waiter.cancel()
            if consumer.done() and not consumer.cancelled() and consumer.exception():
                raise consumer.exception()  # type: ignore[misc]
            if not restart.is_set():
                raise RuntimeError("watch ended")
            log.info("restarting watch", what=what)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("watch failed; retrying", what=what, error=str(exc) or type(exc).__name__)
            try:
                await asyncio.wait_for(restart.wait(), 0.5)
            except TimeoutError:
                pass
        finally:
            if watcher is not None:
                try:
                    await watcher.stop()
                except Exception:
                    pass


JETSTREAM_WAIT_S = 30.0  # a service starting beside a cluster that is still electing


async def kv_keys(kv: KeyValue, timeout_s: float = 5.0) -> list[str]:
    """Every live key of a KV bucket, in stream order; ``[]`` for an empty bucket.

    nats-py's ``KeyValue.keys()`` stops at its watcher's "nothing pending" marker, which
    it can queue before entries already delivered but not yet handed over (the consumer
    info answers ``num_pending == 0`` once the server has pushed everything): on a busy
    machine it returned an empty or partial list, and the catalogue listed no tests.
    Here the listing ends on the last entry itself (``delta == 0``: nothing after it),
    and only a bucket with no messages at all ends without one.
    Raises ``nats.errors.TimeoutError`` when the listing does not end in ``timeout_s``.
    """
    watcher = await kv.watchall(meta_only=True)  # deletes too: the last entry may be one
    live: dict[str, None] = {}
    wait_s = timeout_s
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=wait_s)
            except nats.errors.TimeoutError:
                if wait_s < timeout_s:  # after a marker: what was on its way has come
                    return list(live)
                raise
            if entry is None:  # the marker: believe it only for a bucket with no messages
                if (await kv.status()).values == 0:
                    return []
                wait_s = 1.0  # a message the watcher skips (an unknown marker) ends it too
                continue
            if entry.operation in (None, "PUT"):
                live[entry.key] = None
            else:
                live.pop(entry.key, None)
            if entry.delta == 0:
                return list(live)
    finally:
        await watcher.stop()


async def patient(make: Callable[[], Awaitable[T]], what: str) -> T:
    """Retry while JetStream is not answering yet (timeouts, no responders, 503s, and
    "no response from stream" while a stream is being re-placed, e.g. scaled to R3)."""
    deadline = asyncio.get_running_loop().time() + JETSTREAM_WAIT_S
    while True:
        try:
            return await make()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                ServiceUnavailableError, NoStreamResponseError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("JetStream not ready; retrying", what=what, error=type(exc).__name__)
            await asyncio.sleep(0.5)


async def key_value(
    js: JetStreamContext,
    bucket: str,
    ttl_s: float | None = None,
    history: int = 1,
    replicas: int = 1,
) -> KeyValue:
    """Open a KV bucket, creating it on first use; patient while JetStream is not ready."""
    return await patient(lambda: _key_value(js, bucket, ttl_s, history, replicas), bucket)


async def _key_value(
    js: JetStreamContext, bucket: str, ttl_s: float | None, history: int, replicas: int
) -> KeyValue:
    """Open a KV bucket, creating it on first use (every service may be first).

    Asked for more replicas than an existing bucket has (a generator created it
    first with one), the bucket's stream is scaled up: JetStream does that in place.
    """
    try:
        kv = await js.key_value(bucket)
        if replicas > 1:
            await _scale_up(js, f"KV_{bucket}", replicas)
        return kv
    except BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=bucket, history=history, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas
    )
    try:
        return await js.create_key_value(config)
    except Exception:  # lost a creation race to another service: open what it made
        return await js.key_value(bucket)


async def _scale_up(js: JetStreamContext, stream_name: str, replicas: int) -> None:
    try:
        info = await js.stream_info(stream_name)
        if (info.config.num_replicas or 1) < replicas:
            info.config.num_replicas = replicas
            await js.update_stream(info.config)
            log.info("stream scaled up", stream=stream_name, replicas=replicas)
    except Exception as exc:
        log.warning("could not scale up stream", stream=stream_name, error=str(exc))


async def object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    return await patient(lambda: _object_store(js, bucket, replicas), bucket)


async def _object_store(js: JetStreamContext, bucket: str, replicas: int) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except Exception:
        pass
    try:
        return await js.create_object_store(
            bucket, ObjectStoreConfig(bucket=bucket, replicas=replicas)
        )
    except Exception:
        return await js.object_store(bucket)


async def stream(
    js: JetStreamContext, name: str, subjects_: list[str], max_age_s: float, replicas: int = 1,
    max_bytes: int = -1,
) -> None:
    """Make sure a file-backed stream exists (created on first use, kept if it exists)."""
    await patient(lambda: _stream(js, name, subjects_, max_age_s, replicas, max_bytes), name)


async def _stream(
    js: JetStreamContext, name: str, subjects_: list[str], max_age_s: float, replicas: int,
    max_bytes: int = -1,
) -> None:
    try:
        await js.stream_info(name)
        return
    except Exception:
        pass
    config = StreamConfig(
        name=name, subjects=subjects_, storage=StorageType.FILE, max_age=max_age_s,
        num_replicas=replicas, duplicate_window=120.0, max_bytes=max_bytes,
    )
    try:
        await js.add_stream(config)
    except Exception:
        await js.stream_info(name)  # lost a creation race: it exists now, or raise


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
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises both
        raise BadRequest(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None


Handler = Callable[[Request], Awaitable[msgspec.Struct | bytes]]


def typed(
    ep: Endpoint,
    handler: Callable[[Any], Awaitable[msgspec.Struct | bytes]],
    decoder: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler of ``ep``'s request type as a handler of raw requests: decoded here.

    ``decoder`` replaces the generic decode where a type has its own rules (a plan's
    errors are ``invalid_plan`` with the field). A handler may return bytes it already
    holds in the reply's encoding (a stored report). An error code the table does not
    list for ``ep`` is still answered, and logged so the table gets fixed.
    """
    decode_body = decoder or (lambda data: decode(data, ep.request, empty_ok=ep.empty_ok))

    async def wrapped(req: Request) -> msgspec.Struct | bytes:
        try:
            return await handler(decode_body(req.data))
        except SurgeError as err:
            if not ep.may_answer(err.code):
                log.warning("error code not in the API table", endpoint=ep.name, code=err.code)
            raise

    return wrapped


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
