"""A generator's log line for one run (stream SURGE_LOGS, subject surge.logs.<run>.<gen>)."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

LogLevel = Literal["info", "warning", "error"]


class LogLine(Struct, frozen=True, kw_only=True):
    """One line, as ``surge logs`` and the UI's log panel show it."""

    run_id: str
    generator_id: str
    at: float  # unix seconds, the generator's clock
    level: LogLevel
    message: str
