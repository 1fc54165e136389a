"""The test catalogue: named plans with versions, grouped in suites (KV ``surge_tests``).

A test is a plan plus what people need to find and trust it (description, owner,
tags, the target system it loads). Every save is a new, immutable version with its
author and time; any version can be shown, diffed and run. Times are unix seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

from schemas.plan import Name, Plan

Tag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/=+-]+$")]
Label = Annotated[str, Meta(min_length=1, max_length=200)]
Version = Annotated[int, Meta(ge=1, le=1_000_000)]
Rate = Annotated[float, Meta(gt=0, le=10_000_000)]
Duration = Annotated[float, Meta(gt=0, le=7 * 24 * 3600)]
DEFAULT_SUITE = "default"


class TestVersion(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One saved version of a test (KV surge_tests, key ``<slug>.<version>``)."""

    name: Name
    version: Version
    suite: Label = DEFAULT_SUITE
    description: str = ""
    owner: str = ""
    tags: list[Tag] = []
    target_system: str  # what quotas and the run archive group by; default: the target's host:port
    author: str  # who saved this version
    saved_at: float
    plan: Plan
    source: str | None = None  # the YAML as written (comments kept), when the client sent it


class VersionInfo(Struct, frozen=True):
    version: int
    author: str
    saved_at: float


class TestSummary(Struct, frozen=True, kw_only=True):
    """A test in listings: its latest version's labels."""

    name: str
    version: int  # the latest
    versions: int  # how many are kept
    suite: str
    description: str
    owner: str
    tags: list[str]
    target_system: str
    author: str
    saved_at: float


# --- API requests and replies (surge.api.test.*) ------------------------------------


class TestSave(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """test.save: a plan (as JSON) and its labels; the reply is the version it became."""

    plan: Any  # validated as a Plan by the coordinator (durations may be "30s")
    source: Annotated[str, Meta(max_length=4 * 1024 * 1024)] | None = None
    name: Name | None = None  # default: the plan's name
    suite: Label | None = None  # default: the previous version's suite, else "default"
    description: str | None = None  # default: the plan's description
    owner: str | None = None  # default: the previous version's owner, else the author
    tags: list[Tag] | None = None  # default: the previous version's tags
    target_system: Label | None = None  # default: the previous one's, else the target's host:port
    author: Annotated[str, Meta(max_length=200)] = "anonymous"


class TestRef(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """test.get, test.delete: a test by name; ``version`` None is the latest."""

    name: Name
    version: Version | None = None


class TestListRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    suite: str | None = None
    tag: str | None = None
    search: str | None = None  # a substring of the name, description or owner (any case)


class TestList(Struct, frozen=True):
    tests: list[TestSummary]


class TestDetail(Struct, frozen=True):
    """test.get's answer: the version asked for and the list of every version."""

    test: TestVersion
    versions: list[VersionInfo]


class TestRun(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """test.run: run a saved version (default the latest), with command-line style overrides."""

    name: Name
    version: Version | None = None
    rate: Rate | None = None
    duration: Duration | None = None
    generators: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    author: Annotated[str, Meta(max_length=200)] = "anonymous"


class TestDeleted(Struct, frozen=True):
    name: str
    versions: int  # how many were removed
