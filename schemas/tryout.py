"""Send once: one iteration of a plan through a generator, with everything it saw.

The request builder's "send once" (docs/ui.md): before loading a system, see each
step's request and response (status, headers, body), the variables extracted and
the checks' outcome. Bodies are cut at ``BODY_LIMIT`` bytes (``truncated``).
"""

from __future__ import annotations

from msgspec import Struct

BODY_LIMIT = 64 * 1024


class StepTry(Struct, frozen=True, kw_only=True, omit_defaults=True):
    flow: str
    name: str
    method: str
    url: str = ""
    request_headers: dict[str, str] = {}
    request_body: str | None = None
    status: int | None = None
    response_headers: dict[str, str] = {}
    body: str = ""
    truncated: bool = False
    time_ms: float | None = None
    extracted: dict[str, str] = {}
    check: str | None = None  # the failed check's kind (status, check), None: passed
    error: str | None = None  # connect, timeout, reset, other, a missing variable, ...


class SendOnceResult(Struct, frozen=True, kw_only=True):
    generator: str
    steps: list[StepTry]
    ok: bool  # every step answered and passed its checks
