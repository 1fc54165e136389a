"""What the UI's report and compare pages draw: a report with its percentile curves, and
runs side by side.

Pure. The browser cannot decode HdrHistogram's compressed base64, so a report's
whole-run histograms go to the browser as the classic percentile distribution (latency
at 50%, 90%, 99%, 99.9%, ... on a 1/(1-p) axis: ``distribution.CURVE``).
"""

from __future__ import annotations

import msgspec

from schemas.stats import Report
from services.reports.distribution import Point, distribution
from services.reports.hosts import HostsSummary, summarize


class ReportView(msgspec.Struct, frozen=True, kw_only=True):
    """A report plus what the browser cannot compute: its percentile curves."""

    report: Report
    distribution: list[Point]
    service_distribution: list[Point]
    hosts: HostsSummary | None = None  # the report's hosts section, one line each


def view(report: Report) -> ReportView:
    return ReportView(
        report=report,
        distribution=distribution(report.latency_histogram),
        service_distribution=distribution(report.service_histogram),
        hosts=summarize(report.hosts) if report.hosts is not None else None,
    )


class CompareEntry(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    plan_name: str
    state: str
    verdict: str
    started_at: float
    duration_s: float
    target_rps: float
    totals: object
    requests: dict[str, object]
    thresholds: list[object]
    distribution: list[Point]
    hosts: HostsSummary | None = None  # the machines, one line each (reports.hosts)


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    runs: list[CompareEntry]
    same_plan: bool
    plan_names: list[str]


def compare(reports: list[Report]) -> Comparison:
    """Runs side by side, in the order given (the first is the baseline)."""
    entries = [
        CompareEntry(
            run_id=r.run_id, plan_name=r.plan_name, state=r.state, verdict=r.verdict,
            started_at=r.started_at, duration_s=r.duration_s, target_rps=r.target_rps,
            totals=r.totals, requests=dict(r.requests), thresholds=list(r.thresholds),
            distribution=distribution(r.latency_histogram),
            hosts=summarize(r.hosts) if r.hosts is not None else None,
        )
        for r in reports
    ]
    names = sorted({r.plan_name for r in reports})
    return Comparison(runs=entries, same_plan=len(names) == 1, plan_names=names)
