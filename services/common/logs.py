"""Logging setup: structlog to stderr, JSON lines or console. Called only from __main__."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog


class _KnownNoise(logging.Filter):
    """asyncio warns on every TLS connection nats-py closes (its protocol returns True
    from eof_received, which TLS transports ignore): harmless, and it buries real
    output, so that one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


def quiet_known_noise() -> None:
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _KnownNoise) for f in asyncio_log.filters):
        asyncio_log.addFilter(_KnownNoise())


Tap = Callable[[str, dict[str, Any]], None]
_TAPS: list[Tap] = []


def add_tap(tap: Tap) -> None:
    """Also hand every line at or above the configured level to ``tap(level, event_dict)``
    (a generator ships its run's lines to SURGE_LOGS). A tap must not raise."""
    _TAPS.append(tap)


def remove_tap(tap: Tap) -> None:
    if tap in _TAPS:
        _TAPS.remove(tap)


def _tap(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for tap in list(_TAPS):
        try:
            tap(event_dict.get("level", method), event_dict)
        except Exception:  # a tap never costs the line itself
            pass
    return event_dict


def configure(service: str, level: str = "info", json: bool = False) -> None:
    quiet_known_noise()
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _tap,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
