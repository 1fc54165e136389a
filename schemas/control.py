"""Control-plane messages: registry heartbeats, assignments, run records, API requests.

Times are unix seconds (float) unless a name says otherwise. Rates are requests/s.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from schemas.plan import Plan

RunId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
RunState = Literal["starting", "running", "stopping", "finished", "stopped", "failed"]
ENDED_STATES: frozenset[str] = frozenset({"finished", "stopped", "failed"})


class Segment(Struct, frozen=True, array_like=False):
    """A piece of a rate profile: the rate goes linearly from start_rps to end_rps."""

    start_s: float  # seconds since the run's start_at
    end_s: float
    start_rps: float
    end_rps: float


class Heartbeat(Struct, frozen=True, kw_only=True):
    """A generator's registry entry, rewritten every second (KV surge_generators)."""

    id: str
    host: str
    pid: int
    cores: int
    version: str
    started_at: float
    sent_at: float
    capacity_rps: float  # what this generator thinks it can sustain
    state: Literal["idle", "running"] = "idle"
    run_id: str | None = None
    epoch: int = 0
    target_rps: float = 0.0  # its share of the current run, now
    achieved_rps: float = 0.0  # last interval's completed requests/s
    in_flight: int = 0
    cpu_percent: float = 0.0  # this process, last second
    workers: int = 1
    labels: dict[str, str] = {}  # pool labels (SURGE_GENERATOR_LABELS, zone=eu-1,room=a)
    cpu_us_per_request: float = 0.0  # measured engine CPU per request (0: not measured yet)


class Assignment(Struct, frozen=True, kw_only=True):
    """What one generator must do (KV surge_assign). Declarative: it reconciles to it.

    The generator runs ``profile`` × ``share`` from ``start_at`` to ``end_at``; a rate
    change or rebalance is a new assignment with a higher epoch; ``stop`` ends the run.
    """

    run_id: RunId
    epoch: int
    share: Annotated[float, Meta(ge=0, le=1)]
    start_at: float
    end_at: float
    profile: list[Segment]
    plan: Plan
    index: int = 0  # this generator's position among the run's generators
    count: int = 1  # how many generators the run has at this epoch
    # the shares of the generators before this one (by index) when the run's shares
    # differ; None when they are equal. Arrivals: docs/engine.md, "Arrivals of a cluster"
    phase: float | None = None
    stop: bool = False


class Lease(Struct, frozen=True, kw_only=True):
    """The coordinator leader lease (KV surge_leader, key LEADER_KEY).

    Claimed with a create, kept with an update against the last revision every
    ``renew_s``; a standby that sees the revision unchanged for ``lease_s`` (or the
    key expired by the bucket TTL) claims it with an update against that revision.
    """

    holder: str  # coordinator instance id
    term: int  # +1 at every change of leader
    renewed_at: float  # unix seconds, the holder's clock
    lease_s: float


class RunEvent(Struct, frozen=True, kw_only=True):
    """A run event kept in the run log so a new leader's report still shows it."""

    t: int  # second of the run
    event: str
    gap: bool = False


class RunRecord(Struct, frozen=True, kw_only=True):
    """The coordinator's durable view of a run (KV surge_runs), enough to recover it."""

    run_id: RunId
    plan: Plan
    state: RunState
    created_at: float
    start_at: float
    end_at: float
    profile: list[Segment]
    epoch: int
    generators: dict[str, float]  # generator id -> share
    target_rps: float  # the profile's rate now (or at the end)
    ended_at: float | None = None
    verdict: Literal["pass", "fail"] | None = None
    error: str | None = None
    aborted: str | None = None  # the limit that stopped the run (thresholds.abort_on_fail)
    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None
    test: str | None = None  # the catalogue test this run is a version of (test.run)
    test_version: int | None = None
    # per-generator control (docs/fleet.md): generators holding a rate of their own, in
    # requests/s (0: stopped by request), and what each stopped one ran at before
    held: dict[str, float] = {}
    paused: dict[str, float] = {}


# --- API requests and replies (surge.api.*) ---------------------------------


class RunRef(Struct, frozen=True, forbid_unknown_fields=True):
    """run.stop, run.get, report.get."""

    run_id: RunId


GeneratorId = Annotated[str, Meta(min_length=1, max_length=128)]
Who = Annotated[str, Meta(max_length=200)]  # who asked, as the client says (events show it)


class RateChange(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """run.rate: hold the total rate at ``rate`` from now to the end of the run.

    With ``generator``: hold that generator at ``rate``; the others keep theirs and the
    run's total becomes the sum.
    """

    run_id: RunId
    rate: Annotated[float, Meta(ge=0, le=10_000_000)]
    generator: GeneratorId | None = None
    by: Who = ""


class StopRequest(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """run.stop: end the run, or with ``generator`` only stop that one (the total drops)."""

    run_id: RunId
    generator: GeneratorId | None = None
    by: Who = ""


class GeneratorStart(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """run.generator.start: restart a generator stopped in the run, or add an idle one."""

    run_id: RunId
    generator: GeneratorId
    by: Who = ""


class Empty(Struct, frozen=True, forbid_unknown_fields=True):
    """A request with nothing to say (generators.list): {} or no body at all."""


class RunListRequest(Struct, frozen=True, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    state: RunState | None = None


class RunStarted(Struct, frozen=True):
    run_id: str
    start_at: float
    end_at: float
    target_rps: float
    generators: dict[str, float]  # id -> share
    test: str | None = None  # test.run: which test and version started
    test_version: int | None = None
    queued: str | None = None  # not started yet: why it waits (approval, a busy target system)


class PlanValid(Struct, frozen=True):
    """plan.validate's answer: the plan as Surge reads it, with its derived numbers."""

    ok: bool
    plan: Plan
    duration_s: float
    peak_rps: float
    total_requests: float  # expected arrivals over the whole profile


class RunList(Struct, frozen=True):
    runs: list[RunRecord]


class GeneratorList(Struct, frozen=True):
    generators: list[Heartbeat]


class Ok(Struct, frozen=True):
    ok: bool = True
    run_id: str | None = None
    epoch: int | None = None
