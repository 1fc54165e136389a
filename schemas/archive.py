"""The run archive: what people add to runs, how runs are found, baselines, export files.

Annotations live beside the run record (KV ``surge_archive``, key = run id) so that a
note never races the coordinator's writes of the record. docs/archive.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from schemas.catalogue import Tag
from schemas.control import RunId, RunRecord
from schemas.plan import Name
from schemas.stats import Report

Conclusion = Literal["pass", "fail", "inconclusive"]
Text = Annotated[str, Meta(max_length=65_536)]
Url = Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://\S+$")]
Author = Annotated[str, Meta(max_length=200)]


class Note(Struct, frozen=True):
    author: str
    at: float  # unix seconds
    text: str  # markdown


class RunConclusion(Struct, frozen=True):
    verdict: Conclusion
    text: str
    author: str
    at: float


class Annotations(Struct, frozen=True, kw_only=True, omit_defaults=True):
    run_id: str
    notes: list[Note] = []
    conclusion: RunConclusion | None = None
    tags: list[str] = []
    links: list[str] = []  # issue tracker URLs


class RunAnnotate(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """run.annotate: add a note, set the conclusion, add or remove tags, add links."""

    run_id: RunId
    note: Text | None = None
    conclusion: Conclusion | None = None
    conclusion_text: Text = ""
    tags: list[Tag] = []
    untag: list[Tag] = []
    links: list[Url] = []
    author: Author = "anonymous"


class RunSearch(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """run.search: every filter given must match. ``since``/``until``: ISO 8601, unix
    seconds, or a duration meaning that long ago (``7d``, ``12h``)."""

    test: Name | None = None
    tag: Tag | None = None
    target: str | None = None  # a piece of the target system (host:port) or target URL
    verdict: Literal["pass", "fail"] | None = None
    conclusion: Conclusion | None = None
    since: str | float | None = None
    until: str | float | None = None
    text: str | None = None  # a piece of a note or the conclusion (any case)
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class ArchivedRun(Struct, frozen=True, kw_only=True):
    record: RunRecord
    target_system: str
    annotations: Annotations | None = None
    baseline: bool = False  # this run is its test's baseline


class RunSearchResult(Struct, frozen=True):
    runs: list[ArchivedRun]


class BaselineSet(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """test.baseline: mark a run of a test as its baseline (``run_id`` null: none)."""

    test: Name
    run_id: RunId | None = None
    author: Author = "anonymous"


class Baseline(Struct, frozen=True, kw_only=True):
    test: str
    run_id: str | None
    author: str
    at: float


class RunBundle(Struct, frozen=True, kw_only=True):
    """One run as a file (``surge archive export``/``import``): record, report, annotations."""

    format: Literal["surge-run.v1"] = "surge-run.v1"
    record: RunRecord
    report: Report | None = None
    annotations: Annotations | None = None


class Imported(Struct, frozen=True):
    run_id: str
