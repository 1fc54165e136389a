"""Measurement messages: per-generator intervals, merged live snapshots, the report.

Histograms are HdrHistogram's standard compressed base64 encoding (V2, the one Java
and Go HdrHistogram read) of microsecond values. Latency is measured from each
request's *intended* send time; service time from the actual send.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct, field

from schemas.control import Segment
from schemas.host import HostsReport

ErrorKind = Literal["connect", "timeout", "reset", "status", "check", "too_large", "other"]


class RequestInterval(Struct, frozen=True, kw_only=True):
    """One request name's outcomes within one interval of one generator."""

    count: int  # completed (responses and errors)
    errors: dict[str, int] = {}  # ErrorKind -> count
    late: int = 0
    dropped: int = 0
    latency: str = ""  # histogram, µs from intended time ("" when count == 0)
    service: str = ""  # histogram, µs from actual send


class EpochChange(Struct, frozen=True, kw_only=True):
    """When a generator began following a new assignment epoch (a rate change, rebalance).

    Wall-clock seconds. ``written_at`` is the NATS server's timestamp of the assignment
    entry, when the generator saw it through its watch (None when it found it by
    polling); ``applied_at`` is when its engine began sending on the new schedule.
    Across hosts the two clocks differ by the hosts' clock offset.
    """

    epoch: int
    written_at: float | None = None
    applied_at: float


class IntervalStats(Struct, frozen=True, kw_only=True):
    """A generator's second ``seq`` of a run (sent on surge.stats.<run>.<gen>, acked).

    ``seq`` k covers [start_at + k, start_at + k + 1). Resent until acknowledged;
    the coordinator counts each (generator_id, seq) once.
    """

    run_id: str
    generator_id: str
    epoch: int
    seq: int
    target: float  # arrivals the schedule asked of this generator in this interval
    sent: int  # arrivals sent in this interval
    in_flight: int
    requests: dict[str, RequestInterval]
    final: bool = False  # nothing more will come from this generator for this run
    changes: list[EpochChange] = []  # epochs taken up during this interval, oldest first
    cpu_pct: float | None = None  # the generator's processes' CPU this interval, % of one core
    cpu_cores: int = 0  # cores its engines can use (0: not measured)
    host: str = ""  # the machine it runs on (the monitor's host name there)
    error: str | None = None  # with final: why this generator's part of the run failed


class MergedHistograms(Struct, frozen=True, kw_only=True):
    """One request name's latency and service-time counts, summed over a merger's rows."""

    latency: str = ""  # histogram, standard encoding (as in RequestInterval)
    service: str = ""


class MergedSecond(Struct, frozen=True, kw_only=True):
    """Second ``seq`` of a run as one merger worker saw it: the intervals it took (their
    histograms stripped: ``rows``) and their histograms summed per name (``names``)."""

    seq: int
    rows: list[IntervalStats]
    names: dict[str, MergedHistograms]
    p99_ms: dict[str, float | None] = {}  # generator id -> its p99 in this second


class MergedPartial(Struct, frozen=True, kw_only=True, tag="merged.v1"):
    """A merger worker's partial aggregate, handed to the leader (surge.merged.<run>).

    Every row was written to the run log (and acknowledged to its generator) before it
    was sent; ``merger_id`` and ``n`` let the leader count each partial once.
    """

    run_id: str
    merger_id: str
    n: int
    seconds: list[MergedSecond]


class StatsAck(Struct, frozen=True):
    ok: bool
    seq: int


class LiveRequest(Struct, frozen=True, kw_only=True):
    rps: float
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class LiveGenerator(Struct, frozen=True, kw_only=True):
    target_rps: float
    rps: float
    sent: int
    late: int
    dropped: int
    p99_ms: float | None
    behind: bool  # could not keep up with its target this second
    lost: bool = False  # heartbeat stopped; its share went to the others


class LiveSnapshot(Struct, frozen=True, kw_only=True):
    """One merged second of a run (surge.live.<run>), from every generator's interval."""

    run_id: str
    plan_name: str
    state: str
    seq: int
    at: float  # unix time of the start of this second
    elapsed_s: float
    duration_s: float
    target_rps: float
    rps: float  # completed requests in this second
    requests: int
    errors: int
    error_rate: float
    late: int
    dropped: int
    in_flight: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    total_requests: int  # since the start
    total_errors: int
    per_request: dict[str, LiveRequest]
    generators: dict[str, LiveGenerator]
    events: list[str] = []
    final: bool = False  # the run has ended; the report is in the store


class Percentiles(Struct, frozen=True, kw_only=True):
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float


class RequestTotals(Struct, frozen=True, kw_only=True):
    requests: int
    errors: int
    error_rate: float
    error_kinds: dict[str, int]
    achieved_rps: float
    late: int
    dropped: int
    latency_ms: Percentiles | None
    service_time_ms: Percentiles | None


class GeneratorTotals(Struct, frozen=True, kw_only=True):
    requests: int
    errors: int
    target_rps: float  # mean over the seconds it took part
    achieved_rps: float
    late: int
    dropped: int
    seconds: int  # intervals it reported


class TimelineEntry(Struct, frozen=True, kw_only=True):
    t: int  # seconds since start
    at: float
    requests: int
    errors: int
    rps: float
    target_rps: float
    p50_ms: float | None
    p99_ms: float | None
    generators: int  # how many reported this second
    late: int = 0
    dropped: int = 0
    gap: bool = False  # a generator was lost around this second
    events: list[str] = []


class ThresholdResult(Struct, frozen=True, omit_defaults=True):
    name: str  # the limit: p99_ms, error_rate, ...
    limit: float
    value: float | None
    ok: bool
    request: str | None = None  # a per-request threshold: the request's (or step's) name
    reason: str | None = None  # why it failed when no data could be judged ("never ran")

    @property
    def label(self) -> str:
        """How reports name it: ``p99_ms``, or ``login: p99_ms`` for one request's."""
        return self.name if self.request is None else f"{self.request}: {self.name}"


class Delta(Struct, frozen=True, omit_defaults=True):
    """One figure of a run beside the same figure of its test's baseline run."""

    baseline: float | None
    value: float | None
    change_pct: float | None = None  # (value - baseline) / baseline x 100


class BaselineComparison(Struct, frozen=True):
    """A run of a catalogue test against the run marked as the test's baseline
    (docs/archive.md): rps, error_rate, p50_ms, p95_ms, p99_ms overall and per request."""

    run_id: str  # the baseline run
    test: str
    totals: dict[str, Delta]
    requests: dict[str, dict[str, Delta]]


class Report(Struct, frozen=True, kw_only=True):
    """The final word on a run (object store surge_reports, report.get, --report)."""

    run_id: str
    plan_name: str
    state: str
    started_at: float
    ended_at: float
    duration_s: float
    target_rps: float  # mean of the profile over the run
    profile: list[Segment]
    totals: RequestTotals
    requests: dict[str, RequestTotals]
    generators: dict[str, GeneratorTotals]
    timeline: list[TimelineEntry]
    thresholds: list[ThresholdResult]
    verdict: Literal["pass", "fail"]
    # whole run, all requests: latency from the intended send time, µs (compressed HdrHistogram);
    # the JSON key is still "histogram", as readers of stored reports and `nats` users know it
    latency_histogram: str = field(name="histogram")
    service_histogram: str
    events: list[str] = []
    model: Literal["open", "closed"] = "open"  # closed: virtual users (totals.achieved_rps is the rate reached)
    users: int = 0  # closed: the most users the plan runs at once (users, or user_stages' peak); open: 0
    test: str | None = None  # the catalogue test and version this run is of
    test_version: int | None = None
    baseline: BaselineComparison | None = None  # the change against the test's baseline
    hosts: HostsReport | None = None  # the machines during the run (None: not recorded)

    @property
    def histogram(self) -> str:
        """The old name of ``latency_histogram`` (which histogram was never said)."""
        return self.latency_histogram
