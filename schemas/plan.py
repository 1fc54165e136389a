"""The test plan: what a user writes (YAML or JSON) and what travels in assignments.

Durations are seconds on the wire. Users may write ``"90s"``, ``"2m"``, ``"500ms"``;
the plan loader (``services/plan/loader.py``) turns them into numbers before
these Structs see them, so a plan that has been through it is plain JSON numbers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-/ ]+$")]
Seconds = Annotated[float, Meta(gt=0, le=7 * 24 * 3600)]
Rps = Annotated[float, Meta(ge=0, le=10_000_000)]
HttpMethod = Annotated[str, Meta(pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$")]
Path = Annotated[str, Meta(min_length=1, max_length=8192, pattern=r"^/[^\s]*$")]
StatusCode = Annotated[int, Meta(ge=100, le=599)]
VarName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
StepMethod = Annotated[str, Meta(pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$")]
# a step's path may start with a {{variable}} (a path extracted from a response)
StepPath = Annotated[str, Meta(min_length=1, max_length=8192, pattern=r"^(/|\{\{)[^\s]*$")]
Weight = Annotated[int, Meta(ge=0, le=1_000_000)]


class Stage(Struct, frozen=True, forbid_unknown_fields=True):
    """Ramp linearly from the previous stage's rate to ``target`` over ``duration``."""

    duration: Seconds
    target: Rps  # requests/s across all generators at the end of the stage


LabelKey = Annotated[str, Meta(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")]
LabelValue = Annotated[str, Meta(max_length=63, pattern=r"^[A-Za-z0-9_.\-]*$")]


class GeneratorSelector(Struct, frozen=True, forbid_unknown_fields=True):
    """Which generators a run takes (a pool): those whose labels include all of ``labels``.

    ``count``: how many of them (the biggest first); None: every matching idle one, and
    matching ones that turn up later join (hot add).
    """

    count: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    labels: Annotated[dict[LabelKey, LabelValue], Meta(max_length=32)] = {}


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


# --- scenarios: flows, extraction, checks, data (docs/scenarios.md) ----------------


class Think(Struct, frozen=True, forbid_unknown_fields=True):
    """A random pause, uniform in [min, max] seconds."""

    min: Annotated[float, Meta(ge=0, le=3600)]
    max: Annotated[float, Meta(ge=0, le=3600)]


ThinkTime = Annotated[float, Meta(ge=0, le=3600)] | Think  # fixed seconds or a range


class Extract(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Where a variable's value comes from in a response: exactly one source.

    ``jsonpath`` ($.a.b[0]), ``regex`` (``group`` 1 by default, 0 = whole match),
    ``header``, ``cookie`` (by name), ``xpath`` / ``css`` on HTML (``attr`` picks an
    attribute of the element found, else its text), or a fixed ``value`` (templated).
    Without ``default`` a value not found fails the step as a ``check`` error.
    """

    jsonpath: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    regex: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    header: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    cookie: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    xpath: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    css: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    value: Annotated[str, Meta(max_length=4096)] | None = None
    group: Annotated[int, Meta(ge=0, le=99)] = 1
    attr: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    default: str | None = None


class JsonPathCheck(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The first match of ``path`` equals ``equals``; without ``equals``, it exists."""

    path: Annotated[str, Meta(min_length=1, max_length=1000)]
    equals: Any | UnsetType = UNSET


class StepCheck(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Assertions on one response; any failing one is an error of kind ``check``.

    Without ``status`` a status of 400 or more is an error of kind ``status``.
    """

    status: StatusCode | list[StatusCode] | None = None
    contains: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    not_contains: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    regex: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    body_min: Annotated[int, Meta(ge=0)] | None = None  # bytes
    body_max: Annotated[int, Meta(ge=0)] | None = None
    jsonpath: list[JsonPathCheck] = []
    max_ms: Annotated[float, Meta(gt=0)] | None = None  # the step's response time


class Step(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One request of a flow. ``{{var}}`` works in path, header values, body and json."""

    name: Name | None = None  # the request name in reports; default "<flow>.<n>"
    method: StepMethod = "GET"
    path: StepPath = "/"
    headers: dict[str, str] = {}
    body: Annotated[str, Meta(max_length=1_048_576)] | None = None
    json: Any = None
    extract: dict[VarName, Extract] = {}
    check: StepCheck | None = None
    think: ThinkTime | None = None  # pause after this step (seconds)
    follow_redirects: Annotated[int, Meta(ge=0, le=50)] | None = None  # None: the plan's


Steps = Annotated[list[Step], Meta(min_length=1, max_length=1000)]


class Flow(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Ordered steps one virtual user runs; each arrival (or loop) picks a flow by weight."""

    name: Name
    steps: Steps
    weight: Weight = 1


class Setup(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Steps run before the flows: once per generator, or once per virtual user (login)."""

    steps: Steps
    scope: Literal["user", "generator"] = "user"


class DataFeed(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Rows of variables. The CLI reads ``file`` (CSV with a header, or JSON lines) and
    embeds the rows, so the plan carries its data over the bus.

    ``unique``: every row once across the whole cluster (rows are sharded among the
    generators); a virtual user with no row left stops. ``cycle``: in order, wrapping.
    ``random``: any row, each time. ``per``: a new row per flow iteration or per user.
    """

    file: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    mode: Literal["unique", "cycle", "random"] = "cycle"
    per: Literal["iteration", "user"] = "iteration"
    columns: list[VarName] = []  # a CSV without a header line: its columns' names
    skip_first_line: bool = False  # with ``columns``: the file's first line is a header, not data
    delimiter: Annotated[str, Meta(min_length=1, max_length=1)] = ","  # CSV: "\t", ";", ...
    quoted: bool = True  # CSV: "..." encloses a field ("" is a quote); false: quotes are text
    rows: Annotated[list[dict[str, Any]], Meta(max_length=1_000_000)] = []


class Limits(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Pass/fail limits on a run's requests (latency from the intended time)."""

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


RelativeMetric = Literal["p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms",
                         "error_rate", "rps"]


class Relative(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A limit against the test's baseline run (docs/archive.md): written in place of a
    number, ``p99_ms: {max_increase_pct: 10}``; ``rps: {max_decrease_pct: 5}``."""

    max_increase_pct: Annotated[float, Meta(ge=0)] | None = None
    max_decrease_pct: Annotated[float, Meta(ge=0)] | None = None


class Thresholds(Limits, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Limits on the whole run, and (``requests``) on single requests or flow steps by
    their reported name, as k6's ``http_req_duration{name:login}``. Every limit must
    hold for the verdict to pass."""

    requests: Annotated[dict[Name, Limits], Meta(max_length=1000)] = {}
    # stop the run once a limit fails on the run so far (k6's abortOnFail), judged each
    # second from abort_after on (k6's delayAbortEval): a broken build costs seconds, not
    # the whole duration. Limits with no data yet are not judged early.
    abort_on_fail: bool = False
    abort_after: Seconds = 10.0
    # limits against the baseline run of the plan's catalogue test; the loader moves a
    # `p99_ms: {max_increase_pct: 10}` written among the limits here
    relative: dict[RelativeMetric, Relative] = {}


class Plan(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A load test: where, how fast, for how long, which requests, what passes.

    Exactly one of ``rate`` (+ ``duration``) or ``stages`` gives the rate profile (open
    model), or ``users`` (+ ``duration``) or ``user_stages`` the virtual users (closed
    model). ``requests`` (static) or ``flows`` (scenarios) say what is sent.
    """

    name: Name
    target: Annotated[str, Meta(min_length=8, max_length=2048)]  # http://host:port
    requests: Annotated[list[RequestSpec], Meta(max_length=1000)] = []
    rate: Annotated[float, Meta(gt=0, le=10_000_000)] | None = None  # requests/s, total
    duration: Seconds | None = None
    stages: Annotated[list[Stage], Meta(min_length=1, max_length=1000)] | None = None
    start_rate: Rps = 0.0  # rate at t=0 when ``stages`` ramps from it
    connections: Annotated[int, Meta(ge=1, le=100_000)] = 64  # per generator
    timeout: Seconds = 5.0
    headers: dict[str, str] = {}  # sent with every request
    thresholds: Thresholds = Thresholds()
    # how many to use (N), or a pool: {count: N, labels: {room: a}} (GeneratorSelector)
    generators: Annotated[int, Meta(ge=1, le=10_000)] | GeneratorSelector | None = None
    description: Annotated[str, Meta(max_length=10_000)] = ""
    # --- scenarios (docs/scenarios.md); a plan using any of these runs virtual users
    flows: Annotated[list[Flow], Meta(max_length=1000)] = []
    setup: Setup | None = None
    users: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None  # closed model, total
    user_stages: Annotated[list[Stage], Meta(min_length=1, max_length=1000)] | None = None
    data: list[DataFeed] = []
    vars: dict[VarName, str] = {}  # fixed variables, templated like any value
    proxy: Annotated[str, Meta(min_length=8, max_length=2048)] | None = None  # http://host:port
    insecure: bool = False  # TLS: accept any certificate (test certificates)
    # auto: HTTP/2 when an https target picks h2 by ALPN, else HTTP/1.1; off: HTTP/1.1 always;
    # h2c: HTTP/2 without TLS to an http:// target, by prior knowledge (RFC 9113 3.3)
    http2: Literal["auto", "off", "h2c"] = "auto"
    # how arrivals are spread in time (open model): uniform (i/rate, wrk2's pacing) or
    # poisson (exponential gaps at the plan's rate, as Gatling/NBomber offer); ``seed``
    # makes the random parts of a run (Poisson gaps) the same run after run
    arrivals: Literal["uniform", "poisson"] = "uniform"
    # redirects followed per request (each hop is a request the target sees; the
    # latency covers all hops). 0: a 3xx is the response, as sent (docs/engine.md)
    follow_redirects: Annotated[int, Meta(ge=0, le=50)] = 0
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0

    @property
    def generator_count(self) -> int | None:
        """How many generators the plan fixes (None: every idle one that matches)."""
        g = self.generators
        return g.count if isinstance(g, GeneratorSelector) else g

    @property
    def generator_labels(self) -> dict[str, str]:
        """The labels a generator must carry to take part ({}: any generator)."""
        g = self.generators
        return dict(g.labels) if isinstance(g, GeneratorSelector) else {}

    @property
    def model(self) -> str:
        """``closed`` (virtual users loop) with users/user_stages, else ``open`` (arrivals/s)."""
        return "closed" if self.users is not None or self.user_stages else "open"


def encode(plan: Plan) -> bytes:
    return msgspec.json.encode(plan)
