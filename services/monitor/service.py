"""The monitor service: sample the host, publish it, write it and live runs to InfluxDB.

Owns the NATS connection, the sampling loop, the subscription to live run snapshots
and the InfluxDB ``Writer``. Registered as ``surge-monitor`` with ``nats.micro``; its
``status`` endpoint answers a ``MonitorStatus``, the same figures are every endpoint's
``data`` in ``nats micro stats`` and (as strings, refreshed each sample) the service
metadata that ``nats micro info`` shows.

Live snapshots are taken in a queue group: with one monitor per host, each snapshot is
written by exactly one of them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request

from schemas import subjects
from schemas.host import HostSample, MonitorStatus
from schemas.stats import IntervalStats, LiveSnapshot
from services.common import bus
from services.common.runner import cancel_tasks
from services.common.identity import VERSION
from services.monitor import points
from services.monitor.alerts import Alerts, parse_rules
from services.monitor.buffer import PointBuffer
from services.monitor.config import Config
from services.monitor.influx import Writer
from services.monitor.metrics import RunMetrics
from services.monitor.notify import from_config as notifier_from_config
from services.monitor.sampler import Counters, Reader, to_sample

log = structlog.get_logger(__name__)

_snapshot_decoder = msgspec.json.Decoder(LiveSnapshot)
_stats_decoder = msgspec.json.Decoder(IntervalStats)


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.host = config.host
        self.subject_host = subjects.token(self.host)
        self.alerts = Alerts(parse_rules(config.alerts))  # a bad rule stops the start here
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.reader = Reader(config.host_proc, str(self.data_dir), config.net_exclude,
                             config.disk_exclude, ports=config.monitor_ports,
                             processes=config.monitor_processes, jstat_s=config.jstat_s)
        self.notifier = notifier_from_config(config, self.data_dir)
        self.metrics: RunMetrics | None = None
        self.metrics_port = 0
        self._metrics_server = None
        self.writer: Writer | None = None
        if config.influx_url:
            buffer = PointBuffer(
                self.data_dir / "influx",
                max_memory=config.influx_buffer_points,
                max_spill_bytes=int(config.influx_spill_max_mb * 1024 * 1024),
            )
            self.writer = Writer(
                config.influx_url, config.influx_token, config.influx_org, config.influx_bucket,
                buffer, timeout_s=config.influx_timeout_s, batch=config.influx_batch,
                flush_s=config.influx_flush_s, backoff_s=config.influx_backoff_s,
                backoff_max_s=config.influx_backoff_max_s,
            )
        self.samples = 0
        self.snapshots_written = 0
        self.snapshots_skipped = 0
        self.metadata: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._closed = asyncio.Event()
        self.log = log.bind(host=self.host)

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        self.nc = await bus.connect(self.config.nats_url, f"surge-monitor {self.host}")
        self._refresh_metadata()
        self.micro = await add_service(
            self.nc,
            name=subjects.MONITOR_SERVICE,
            version=VERSION,
            description="Surge host monitor: psutil samples on the bus, InfluxDB writer",
            metadata=self.metadata,  # refreshed in place every sample, for `nats micro info`
            stats_handler=lambda _endpoint: msgspec.to_builtins(self.status()),
        )
        await self.micro.add_endpoint(
            name="status",
            subject=subjects.monitor_status(self.subject_host),
            handler=bus.endpoint(self.status_request, "status"),
            metadata={"host": self.host},
        )
        if self.writer is not None:
            self.live_sub = await self.nc.subscribe(
                subjects.LIVE_ALL, queue=self.config.live_queue, cb=self.on_live
            )
            self.writer.start()
        self._start_metrics()
        if self.metrics is not None:
            self.stats_sub = await self.nc.subscribe(subjects.STATS_ALL, cb=self.on_stats)
            self.metrics_live_sub = await self.nc.subscribe(subjects.LIVE_ALL,
                                                            cb=self.on_live_metrics)
        self.notifier.start()
        self._tasks.append(asyncio.create_task(self._sample_loop(), name="sample"))
        self.log.info("monitoring",
                      alert_channels=[c.name for c in self.notifier.channels] or None,
                      metrics_port=self.metrics_port or None, influx=self.config.influx_url or None,
                      rules=[r.describe() for r in self.alerts.rules],
                      subject=subjects.host(self.subject_host))

    async def wait(self) -> None:
        await self._closed.wait()

    async def stop(self) -> None:
        # the sampler ends between samples, never half-way through handling one, so a
        # sample seen on the bus is always in the writer's buffer too
        self._stopping.set()
        await asyncio.wait(self._tasks, timeout=2.0)
        await cancel_tasks(self._tasks)
        if self.writer is not None:
            await self.writer.close(limit_s=min(5.0, self.config.influx_timeout_s + 1))
        await self.notifier.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        # bounded: NATS may be going down at the same time
        await bus.disconnect(self.nc, self.micro.stop, logger=self.log)
        self._closed.set()

    # --- status -------------------------------------------------------------------
    def status(self) -> MonitorStatus:
        w = self.writer
        return MonitorStatus(
            host=self.host,
            ts=time.time(),
            samples=self.samples,
            influx=w is not None,
            buffered_points=len(w.buffer) if w else 0,
            spilled_points=w.buffer.spilled if w else 0,
            written_points=w.written if w else 0,
            dropped_points=w.dropped if w else 0,
            snapshots_written=self.snapshots_written,
            snapshots_skipped=self.snapshots_skipped,
            last_write_at=w.last_write_at if w else None,
            last_error=w.last_error if w else None,
            last_error_at=w.last_error_at if w else None,
            alerts_sent=self.notifier.counts.sent,
            alerts_failed=self.notifier.counts.failed,
            alerts_dropped=self.notifier.counts.dropped,
            alerts_suppressed=self.notifier.counts.suppressed,
            metrics_port=self.metrics_port,
        )

    async def status_request(self, req: Request) -> MonitorStatus:
        return self.status()

    def _refresh_metadata(self) -> None:
        fields = msgspec.to_builtins(self.status())
        self.metadata.update({k: "" if v is None else str(v) for k, v in fields.items()
                              if k not in ("type", "ts")})

    # --- host samples ---------------------------------------------------------------
    async def _read(self) -> Counters:
        return await asyncio.to_thread(self.reader.read)

    async def _sample_loop(self) -> None:
        interval = self.config.sample_s
        prev: Counters | None = None
        next_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                cur = await self._read()
                if prev is not None:
                    await self._handle(to_sample(prev, cur, self.host))
                prev = cur
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad reading must not end sampling
                self.log.exception("sampling failed")
            next_at += interval
            now = time.monotonic()
            if next_at <= now:  # fell behind (a slow read, a stalled VM): skip, don't burst
                next_at = now + interval
            try:
                await asyncio.wait_for(self._stopping.wait(), next_at - now)
            except TimeoutError:
                pass

    async def _handle(self, sample: HostSample) -> None:
        self.samples += 1
        if self.writer is not None:
            self.writer.add(points.host_lines(sample))
        if self.metrics is not None:
            self.metrics.set_host(sample)
        await self.nc.publish(subjects.host(self.subject_host), msgspec.json.encode(sample))
        for alert in self.alerts.observe(sample):
            self.log.warning("alert", name=alert.name, state=alert.state, value=alert.value,
                             message=alert.message)
            await self.nc.publish(subjects.alerts(self.subject_host), msgspec.json.encode(alert))
            self.notifier.submit(alert)  # queued: delivery never holds up sampling
        self._refresh_metadata()

    # --- Prometheus ------------------------------------------------------------------------
    def _start_metrics(self) -> None:
        """/metrics on SURGE_METRICS_PORT; a port in use is a warning, not a failed start
        (sampling and the bus matter more than one scrape target)."""
        if self.config.metrics_port == 0:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        metrics = RunMetrics(keep_s=self.config.metrics_run_keep_s)
        registry.register(metrics)
        try:
            server, _thread = start_http_server(self.config.metrics_port,
                                                self.config.metrics_addr or "", registry)
        except OSError as exc:
            self.log.warning("cannot serve /metrics; going on without it",
                             port=self.config.metrics_port, error=str(exc))
            return
        self._metrics_server = server
        self.metrics = metrics
        self.metrics_port = server.server_address[1]

    async def on_stats(self, msg: Msg) -> None:
        try:
            stats = _stats_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # the coordinator answers the sender with the error; not ours to log
        if self.metrics is not None:
            self.metrics.add_interval(stats)

    async def on_live_metrics(self, msg: Msg) -> None:
        try:
            snapshot = _snapshot_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # logged by on_live when InfluxDB is on
        if self.metrics is not None:
            self.metrics.add_snapshot(snapshot)

    # --- live run snapshots ------------------------------------------------------------
    async def on_live(self, msg: Msg) -> None:
        try:
            snapshot = _snapshot_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.snapshots_skipped += 1
            self.log.warning("malformed live snapshot skipped", subject=msg.subject,
                             error=str(exc), size=len(msg.data))
            return
        try:
            lines = points.run_lines(snapshot)
        except Exception:  # e.g. a value influxdb-client cannot encode
            self.snapshots_skipped += 1
            self.log.exception("live snapshot could not be turned into points",
                               subject=msg.subject, run_id=snapshot.run_id)
            return
        if self.writer is not None:
            self.writer.add(lines)
        self.snapshots_written += 1
