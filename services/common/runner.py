"""Running a service until SIGTERM/SIGINT: the shared body of every ``__main__``.

First signal: ``service.stop()`` (finish in-flight work, flush, drain NATS), exit 0.
Second signal: exit at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from schemas.errors import SurgeError
from services.common import logs


class Runnable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def wait(self) -> None: ...


STOP_LIMIT_S = 30.0  # the longest a clean stop may take before the process exits anyway
RECANCEL_S = 0.1  # how often a task that swallowed its cancellation is cancelled again


async def cancel_tasks(tasks: list[asyncio.Task], limit_s: float = 5.0) -> list[asyncio.Task]:
    """Cancel ``tasks`` and wait until they are done, cancelling again every
    ``RECANCEL_S`` those that are not; returns the ones still running after ``limit_s``.

    Again, because a library may swallow a cancellation: nats-py's ``_flush_pending``
    has ``except asyncio.CancelledError: pass``, so a task cancelled while subscribing
    (a KV watch starting as the service stops) goes on to its next ``await`` and a plain
    ``gather`` waits on it for ever (seen: 7 of 12 generators stopped right after their
    readiness file hung until killed). A second ``cancel()`` reaches it there.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    pending = [t for t in tasks if not t.done()]
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, still = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
        pending = list(still)
    for task in tasks:  # retrieve outcomes: no "exception was never retrieved" noise
        if task.done() and not task.cancelled():
            task.exception()
    return pending


def run_service(name: str, config: Any, make: Callable[[], Runnable]) -> None:
    """Configure logging, then build the service (so its loggers see the config) and run it."""
    logs.configure(name, getattr(config, "log_level", "info"), getattr(config, "log_json", False))
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        pass
    try:
        asyncio.run(_main(name, make()))
    except SurgeError as err:
        print(f"{name}: {err.code}: {err.message}", file=sys.stderr)
        sys.exit(2)


async def _main(name: str, service: Runnable) -> None:
    log = structlog.get_logger(name)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(1)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    # A signal during start (NATS not reachable yet, say) ends the process at once:
    # start() may retry connecting for ever, and there is nothing to stop yet.
    starter = asyncio.create_task(service.start())
    stopper = asyncio.create_task(stopping.wait())
    await asyncio.wait({starter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not starter.done():
        starter.cancel()
        await asyncio.gather(starter, return_exceptions=True)
        stopper.cancel()
        log.info("stopped before it had started")
        return
    starter.result()  # a failed start raises here
    log.info("started", pid=os.getpid())
    waiter = asyncio.create_task(service.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping")
    try:
        # bounded: a stop that waits on a NATS server that is gone must not hang
        await asyncio.wait_for(service.stop(), STOP_LIMIT_S)
    except asyncio.TimeoutError:
        log.warning("stop took too long; exiting anyway", limit_s=STOP_LIMIT_S)
    waiter.cancel()
    stopper.cancel()
    log.info("stopped")
