"""The UI service: one NATS connection, one subscription per stream, the web server.

It subscribes once to ``surge.live.>``, ``surge.host.>``, ``surge.alerts.>`` and
watches the generator registry bucket, decodes each message once at this edge, keeps
a bounded memory of it (``state.State``) and fans the original JSON out to every
browser through ``fanout.Hub``. Requests to the coordinator go through
``CoordinatorClient`` on the same connection. Registered with ``nats.micro`` as
``surge-ui`` so ``nats micro ls`` finds it. With SURGE_UI_APPROVER_USER set, a second
connection as that NATS user sends ``run.approve`` only (``self.approver``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import structlog
from aiohttp import web
from nats.js.kv import KV_DEL, KV_PURGE
from nats.micro import add_service

from schemas import subjects
from schemas.control import Heartbeat
from schemas.errors import BadRequest
from schemas.host import Alert, HostSample
from schemas.stats import LiveSnapshot
from services.common.client import CoordinatorClient
from services.common import bus
from services.common.config import NatsAuth, nats_auth
from services.common.runner import cancel_tasks
from services.common.identity import VERSION
from services.ui.app.routes import build_app
from services.ui.config import Config
from services.ui.fanout import Hub
from services.ui.state import State

log = structlog.get_logger(__name__)

_live = msgspec.json.Decoder(LiveSnapshot)
_host = msgspec.json.Decoder(HostSample)
_alert = msgspec.json.Decoder(Alert)
_beat = msgspec.json.Decoder(Heartbeat)


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = Hub(max_queue=config.ui_queue_max)
        self.state = State(history=config.ui_history, runs_kept=config.ui_runs_kept)
        self._tasks: list[asyncio.Task] = []
        self._subs: list = []
        self._closed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.bad_messages = 0
        self.approver: CoordinatorClient | None = None  # run.approve only (docs/quotas.md)

    @property
    def address(self) -> str:
        return f"http://{self.config.ui_host}:{self.config.ui_port}"

    async def start(self) -> None:
        approver = self._approver_auth()  # a bad file fails before any connection
        self.nc = await bus.connect(self.config.nats_url, subjects.UI_SERVICE)
        self.api = CoordinatorClient(self.nc, timeout_s=self.config.ui_api_timeout_s)
        if approver is not None:  # run.approve only, on its own connection (docs/quotas.md)
            nc = await bus.connect(self.config.nats_url, f"{subjects.UI_SERVICE}-approver", auth=approver)
            self.approver = CoordinatorClient(nc, timeout_s=self.config.ui_api_timeout_s)
            log.info("approvals enabled", nats_user=approver.user)
        for subject, handler in (
            (subjects.LIVE_ALL, self._on(_live, self.state.on_live)),
            (subjects.HOST_ALL, self._on(_host, self.state.on_host)),
            (subjects.ALERTS_ALL, self._on(_alert, self.state.on_alert)),
        ):
            self._subs.append(await self.nc.subscribe(subject, cb=handler))
        self._tasks.append(asyncio.create_task(self._watch_generators(), name="registry"))
        self.micro = await add_service(
            self.nc, name=subjects.UI_SERVICE, version=VERSION,
            description="Surge web UI: live view, run control, reports",
            metadata={"url": self.address},
        )
        app = build_app(self)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.ui_host, self.config.ui_port)
        await site.start()
        log.info("listening", url=self.address, auth=bool(self.config.ui_token))

    def _approver_auth(self) -> NatsAuth | None:
        """The approver's own NATS user (the ui user is denied run.approve), TLS as ours."""
        if not self.config.ui_approver_user:
            return None
        password = ""
        if self.config.ui_approver_password_file:
            try:
                with open(self.config.ui_approver_password_file, encoding="utf-8") as f:
                    password = f.read().strip()
            except OSError as exc:
                raise BadRequest(f"SURGE_UI_APPROVER_PASSWORD_FILE: {exc.strerror}: "
                                 f"{self.config.ui_approver_password_file}") from None
        return msgspec.structs.replace(nats_auth(), user=self.config.ui_approver_user,
                                       password=password, creds="")

    async def wait(self) -> None:
        await self._closed.wait()

    async def stop(self) -> None:
        for client in self.hub.clients:
            self.hub.disconnect(client)
        await cancel_tasks(self._tasks)
        if self.runner is not None:
            await self.runner.cleanup()
        # bounded, each connection: NATS may be going down at the same time
        await bus.disconnect(self.nc, self.micro.stop, logger=log)
        if self.approver is not None:
            await bus.disconnect(self.approver.nc, logger=log)
        self._closed.set()

    # --- bus -> browsers -------------------------------------------------------------
    def publish(self, frames: list[tuple[str, str]]) -> None:
        for topic, text in frames:
            dropped = self.hub.publish(topic, text)
            if dropped:
                log.info("dropped slow browsers", topic=topic, count=dropped)

    def _on(self, decoder: msgspec.json.Decoder, update: Callable) -> Callable:
        async def handler(msg) -> None:
            try:
                value = decoder.decode(msg.data)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                self.bad_messages += 1
                if self.bad_messages <= 10 or self.bad_messages % 1000 == 0:
                    log.warning("undecodable message", subject=msg.subject, error=str(exc)[:200])
                return
            try:
                self.publish(update(value, msg.data))
            except Exception:
                log.exception("fan-out failed", subject=msg.subject)

        return handler

    async def _watch_generators(self) -> None:
        while True:
            try:
                kv = await bus.key_value(
                    self.nc.jetstream(), subjects.GENERATORS_BUCKET, ttl_s=self.config.registry_ttl_s
                )
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None or entry.key == subjects.BUS_CLOCK_KEY:
                        continue  # the initial replay's end; the coordinator's clock stamp, not a generator
                    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                        self.publish(self.state.on_generator(entry.key, None, None))
                        continue
                    try:
                        beat = _beat.decode(entry.value)
                    except msgspec.DecodeError as exc:
                        log.warning("bad heartbeat", key=entry.key, error=str(exc)[:200])
                        continue
                    self.publish(self.state.on_generator(entry.key, beat, entry.value))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry watch failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
