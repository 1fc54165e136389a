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
    await service.start()
    log.info("started", pid=os.getpid())
    waiter = asyncio.create_task(service.wait())
    stopper = asyncio.create_task(stopping.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping")
    await service.stop()
    waiter.cancel()
    stopper.cancel()
    log.info("stopped")
