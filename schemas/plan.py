"""The test plan: what a user writes (YAML or JSON) and what travels in assignments.

Durations are seconds on the wire. Users may write ``"90s"``, ``"2m"``, ``"500ms"``;
the plan loader (``services/coordinator/plans.py``) turns them into numbers before
these Structs see them, so a plan that has been through it is plain JSON numbers.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-/ ]+$")]
Seconds = Annotated[float, Meta(gt=0, le=7 * 24 * 3600)]
Rps = Annotated[float, Meta(ge=0, le=10_000_000)]
HttpMethod = Annotated[str, Meta(pattern=r"^(GET|POST|PUT|PATCH|DELETE|OPTIONS)$")]
Path = Annotated[str, Meta(min_length=1, max_length=8192, pattern=r"^/[^\s]*$")]
StatusCode = Annotated[int, Meta(ge=100, le=599)]


class Stage(Struct, frozen=True, forbid_unknown_fields=True):
    """Ramp linearly from the previous stage's rate to ``target`` over ``duration``."""

    duration: Seconds
    target: Rps  # requests/s across all generators at the end of the stage


class Checks(Struct, frozen=True, forbid_unknown_fields=True):
    """What makes a response a success. Without checks: any status below 400."""

    status: StatusCode | list[StatusCode] | None = None
    body_contains: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None


class RequestSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One kind of request; each scheduled arrival picks one by weight."""

    name: Name
    method: HttpMethod = "GET"
    path: Path = "/"
    weight: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    headers: dict[str, str] = {}
    body: Annotated[str, Meta(max_length=1_048_576)] | None = None
    json: Any = None  # encoded as the body with Content-Type: application/json
    checks: Checks | None = None


class Thresholds(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Pass/fail limits evaluated on the whole run (latency from intended time)."""

    p50_ms: Annotated[float, Meta(gt=0)] | None = None
    p90_ms: Annotated[float, Meta(gt=0)] | None = None
    p95_ms: Annotated[float, Meta(gt=0)] | None = None
    p99_ms: Annotated[float, Meta(gt=0)] | None = None
    p999_ms: Annotated[float, Meta(gt=0)] | None = None
    max_ms: Annotated[float, Meta(gt=0)] | None = None
    mean_ms: Annotated[float, Meta(gt=0)] | None = None
    error_rate: Annotated[float, Meta(ge=0, le=1)] | None = None
    dropped_rate: Annotated[float, Meta(ge=0, le=1)] | None = None
    min_rps: Annotated[float, Meta(ge=0)] | None = None


class Plan(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A load test: where, how fast, for how long, which requests, what passes.

    Exactly one of ``rate`` (+ ``duration``) or ``stages`` gives the rate profile.
    """

    name: Name
    target: Annotated[str, Meta(min_length=8, max_length=2048)]  # http://host:port
    requests: Annotated[list[RequestSpec], Meta(min_length=1, max_length=1000)]
    rate: Annotated[float, Meta(gt=0, le=10_000_000)] | None = None  # requests/s, total
    duration: Seconds | None = None
    stages: Annotated[list[Stage], Meta(min_length=1, max_length=1000)] | None = None
    start_rate: Rps = 0.0  # rate at t=0 when ``stages`` ramps from it
    connections: Annotated[int, Meta(ge=1, le=100_000)] = 64  # per generator
    timeout: Seconds = 5.0
    headers: dict[str, str] = {}  # sent with every request
    thresholds: Thresholds = Thresholds()
    generators: Annotated[int, Meta(ge=1, le=10_000)] | None = None  # how many to use
    description: Annotated[str, Meta(max_length=10_000)] = ""


def encode(plan: Plan) -> bytes:
    return msgspec.json.encode(plan)
