"""Schedules and phased suites (KV ``surge_schedules``, ``surge_suites``), docs/schedules.md.

A schedule starts a catalogue test or a suite at one time (``at``) or on a cron
expression in a time zone. Each fire is claimed in KV with a create (compare-and-set),
so across leader changes a fire starts its run once. A suite runs its steps one after
another (tests in order, or one test at increasing rates), each step a normal run.
Times are unix seconds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from schemas.catalogue import Duration, Rate
from schemas.plan import Name

MissedPolicy = Literal["run_late", "skip"]
FireState = Literal["claimed", "started", "skipped", "failed"]
StepState = Literal["pending", "running", "passed", "failed", "skipped", "error"]
SuiteState = Literal["running", "passed", "failed", "error"]
Generators = Annotated[int, Meta(ge=1, le=10_000)]
Pause = Annotated[float, Meta(ge=0, le=24 * 3600)]


class Overrides(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``surge test run`` may change in a test's plan."""

    rate: Rate | None = None
    duration: Duration | None = None
    generators: Generators | None = None


class Schedule(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A stored schedule (KV surge_schedules, key ``s.<slug>``)."""

    name: Name
    test: Name | None = None  # exactly one of test and suite
    suite: Name | None = None
    at: float | None = None  # exactly one of at and cron
    cron: str | None = None  # 5 fields, or 6 with seconds first
    tz: str = "UTC"  # IANA zone the cron expression is read in
    missed: MissedPolicy = "run_late"
    overrides: Overrides = Overrides()
    author: str = "anonymous"
    created_at: float


class ScheduleAdd(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """schedule.add. ``at`` is ISO 8601 (a time without offset is in ``tz``), unix seconds,
    or ``+DURATION`` from now (``+30s``, ``+2h``). ``dry_run`` answers without saving
    (the UI's preview of the next fire times)."""

    name: Name
    test: Name | None = None
    suite: Name | None = None
    at: str | float | None = None
    cron: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    tz: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    missed: MissedPolicy = "run_late"
    overrides: Overrides = Overrides()
    replace: bool = False
    dry_run: bool = False
    author: Annotated[str, Meta(max_length=200)] = "anonymous"


class Fire(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One fire of a schedule (key ``f.<slug>.<unix second>``): created once, then updated."""

    schedule: str
    fire_at: float
    state: FireState
    run_id: str  # the run (or suite run) it starts: derived from the fire, the same on every leader
    by: str  # coordinator id
    at: float  # when this state was written
    late_s: float = 0.0
    error: str | None = None


class ScheduleInfo(Struct, frozen=True, kw_only=True):
    schedule: Schedule
    next_fires: list[float]  # the next five (fewer for a one-off), unix seconds
    last: Fire | None = None


class ScheduleList(Struct, frozen=True):
    schedules: list[ScheduleInfo]


class ScheduleRef(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name


class ScheduleListRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None


class Removed(Struct, frozen=True):
    name: str
    removed: bool = True


# --- suites -----------------------------------------------------------------------


class Suite(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a suite runs (KV surge_suites, key ``def.<slug>``).

    ``sequence``: each test once, in ``tests`` order (empty: every catalogue test whose
    suite label is this name, by name). ``stages``: the first test at each of ``rates``
    in turn (increasing load), ``pause_s`` between steps either way.
    """

    name: Name
    mode: Literal["sequence", "stages"] = "sequence"
    tests: list[Name] = []
    rates: list[Rate] = []
    pause_s: Pause = 0.0
    stop_on_fail: bool = True
    overrides: Overrides = Overrides()
    author: str = "anonymous"
    saved_at: float = 0.0


class SuiteSave(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    mode: Literal["sequence", "stages"] = "sequence"
    tests: Annotated[list[Name], Meta(max_length=1000)] = []
    rates: Annotated[list[Rate], Meta(max_length=1000)] = []
    pause_s: Pause = 0.0
    stop_on_fail: bool = True
    overrides: Overrides = Overrides()
    author: Annotated[str, Meta(max_length=200)] = "anonymous"


class SuiteStep(Struct, frozen=True, kw_only=True, omit_defaults=True):
    test: str
    version: int
    run_id: str
    rate: float | None = None
    state: StepState = "pending"
    verdict: str | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


class SuiteRun(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One run of a suite (key ``run.<id>``): its steps and where it is."""

    id: str
    suite: str
    state: SuiteState
    steps: list[SuiteStep]
    pause_s: float
    stop_on_fail: bool
    started_at: float
    ended_at: float | None = None
    schedule: str | None = None  # the schedule that fired it
    author: str = "anonymous"


class SuiteRunRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """suite.run: run a suite now; suite.get_run: one suite run by id (``run_id``)."""

    name: Name
    author: Annotated[str, Meta(max_length=200)] = "anonymous"


class SuiteRunRef(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class SuiteList(Struct, frozen=True):
    suites: list[Suite]
    runs: list[SuiteRun]  # newest first
