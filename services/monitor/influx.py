"""The one writer to InfluxDB: batches from a ``PointBuffer``, retried with backoff.

influxdb-client's batching ``WriteApi`` retries on its own schedule and, when its
retries run out or the process stops, drops batches; a timed-out request it retries
may also have been stored already. So the monitor uses the *synchronous* write API
(with urllib3 retries off) from one worker thread, and its own buffer decides what
is written: a batch leaves the buffer only when the server said 204. Every point has
an explicit timestamp, so should a write that timed out on our side have reached
the server, writing it again replaces the same points rather than doubling them.

A server that refuses a batch as malformed (400, 413, 422) would refuse it forever:
that batch is logged and dropped (counted), so it cannot block everything behind it.
Any other failure (connection refused, timeout, 5xx, 401/403/404 while an operator
fixes the token or bucket, 429) keeps the batch and retries with doubling backoff.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import structlog
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from services.monitor.buffer import PointBuffer
from services.monitor.points import PRECISION

log = structlog.get_logger(__name__)

REJECTED = (400, 413, 422)  # the server will never take this batch


class Rejected(Exception):
    """The server refused the points themselves; retrying cannot help."""


class Writer:
    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        buffer: PointBuffer,
        *,
        timeout_s: float = 5.0,
        batch: int = 5000,
        flush_s: float = 1.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.url, self.org, self.bucket = url, org, bucket
        self.buffer = buffer
        self.batch = max(1, batch)
        self.flush_s = flush_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.client = InfluxDBClient(
            url=url, token=token or "surge", org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self.api = self.client.write_api(write_options=SYNCHRONOUS)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx")
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.written = 0
        self.rejected = 0
        self.last_write_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._failing = False

    @property
    def dropped(self) -> int:
        return self.buffer.dropped + self.rejected

    def add(self, lines: list[str]) -> None:
        self.buffer.add(lines)
        if len(self.buffer.memory) >= self.batch:
            self._wake.set()

    def _write(self, lines: list[str]) -> None:
        try:
            self.api.write(bucket=self.bucket, org=self.org, record=lines, write_precision=PRECISION)
        except ApiException as exc:
            if exc.status in REJECTED:
                raise Rejected(f"HTTP {exc.status}: {(exc.body or exc.reason or '')[:300]}") from exc
            raise

    async def write_pending(self) -> bool:
        """Write batches until the buffer is empty (True) or a write fails (False)."""
        loop = asyncio.get_running_loop()
        while (batch := self.buffer.take(self.batch)) is not None:
            try:
                await loop.run_in_executor(self._pool, self._write, batch.lines)
            except Rejected as exc:
                self.buffer.commit(batch)  # gone for good: counted and logged, never retried
                self.rejected += len(batch.lines)
                self._error(exc)
                log.error("InfluxDB refused a batch; dropped", points=len(batch.lines),
                          error=str(exc), first=batch.lines[0][:200])
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.buffer.release(batch)
                self._error(exc)
                if not self._failing:
                    log.warning("InfluxDB write failed; buffering and retrying",
                                error=self.last_error, buffered=len(self.buffer))
                self._failing = True
                return False
            self.buffer.commit(batch)
            self.written += len(batch.lines)
            self.last_write_at = time.time()
            if self._failing:
                log.info("InfluxDB writes resumed", buffered=len(self.buffer))
                self._failing = False
        return True

    def _error(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.last_error = f"{type(exc).__name__}: {text}"[:500]
        self.last_error_at = time.time()

    async def run(self) -> None:
        """Write every ``flush_s`` (or as soon as a batch is full); back off while failing."""
        backoff = self.backoff_s
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                ok = await self.write_pending()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end writing for good
                log.exception("writer loop error")
                ok = False
            if ok:
                backoff = self.backoff_s
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, self.backoff_max_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="influx-writer")

    async def close(self, limit_s: float = 5.0) -> None:
        """Stop the loop, try a last write within ``limit_s``, keep the rest on disk.

        A write still running at the deadline is abandoned: its batch is kept (spilled)
        and written again after a restart, harmless since its points carry timestamps.
        """
        deadline = time.monotonic() + limit_s
        self._stopping.set()
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=limit_s)
        if done:
            try:
                await asyncio.wait_for(self.write_pending(), max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                pass
        else:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if len(self.buffer):
            log.warning("InfluxDB not reachable at stop; points kept on disk",
                        points=len(self.buffer), spill=str(self.buffer.spill_path))
        self.buffer.close()
        self._pool.shutdown(wait=False)
        self.client.close()
