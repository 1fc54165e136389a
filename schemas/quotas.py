"""Quotas per target system and the run queue (KV ``surge_queue``), docs/quotas.md.

A quota bounds what may be fired at one target system (its ``host:port``): rate,
duration, generators, the hours of the day, and how many runs at once. A run over a
limit waits for a person with the approver role, or is refused; a run that finds its
system busy waits in the queue. Every decision is kept with who made it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from schemas.control import RunId
from schemas.plan import Plan

QueueState = Literal["waiting_approval", "queued", "started", "denied", "failed"]


class Quota(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The limits of one target system (coordinator config SURGE_QUOTAS, JSON by system)."""

    max_rate: Annotated[float, Meta(gt=0)] | None = None  # peak total requests/s
    max_duration_s: Annotated[float, Meta(gt=0)] | None = None
    max_generators: Annotated[int, Meta(ge=1)] | None = None
    # when load is allowed, e.g. "22:00-06:00" (may wrap midnight), in ``tz``
    allowed_hours: Annotated[str, Meta(pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$")] | None = None
    tz: str = "UTC"
    max_running: Annotated[int, Meta(ge=1)] = 1  # runs at once on this system; others queue
    over_limit: Literal["approve", "refuse"] = "approve"


class Decision(Struct, frozen=True):
    what: str  # queued, waiting for approval, approved, denied, started, ...
    who: str
    at: float


class QueuedRun(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A run that could not start at once (KV surge_queue, key = its run id)."""

    run_id: str
    target_system: str
    plan: Plan
    state: QueueState
    reasons: list[str] = []  # the limits it is over (approval needed)
    requested_by: str = "anonymous"
    requested_at: float
    test: str | None = None
    test_version: int | None = None
    decisions: list[Decision] = []


class QueueList(Struct, frozen=True):
    runs: list[QueuedRun]


class Approval(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """run.approve: let a run over a quota start (or ``approve: false``: deny it).
    Only the approver role's NATS user may publish it (docs/security.md)."""

    run_id: RunId
    approve: bool = True
    reason: Annotated[str, Meta(max_length=4096)] = ""
    author: Annotated[str, Meta(max_length=200)] = "anonymous"
