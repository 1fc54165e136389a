"""Reports as the browser reads them: the percentile curve of a histogram, comparisons.

Pure. The browser cannot decode HdrHistogram's compressed base64, so the UI turns a
report's whole-run histogram into the classic percentile distribution (latency at
50%, 90%, 99%, 99.9%, ... on a 1/(1-p) axis) and, to compare runs, lines up their
summaries.
"""

from __future__ import annotations

import msgspec

from schemas.stats import Report
from services.common import histogram

# percentiles spread evenly on the 1/(1-p) log axis, up to 99.999%
_STEPS = 51
PERCENTILES = tuple(
    round(100.0 * (1.0 - 10 ** (-5.0 * i / (_STEPS - 1))), 6) for i in range(_STEPS)
)


class Point(msgspec.Struct, frozen=True, array_like=True):
    percentile: float
    value_ms: float


def distribution(encoded: str) -> list[Point]:
    """Latency (ms) at each of ``PERCENTILES``, ending at the max; [] for no data."""
    hist = histogram.decode_for_display(encoded)
    if hist is None:
        return []
    total = hist.get_total_count()
    values = hist.get_percentile_to_value_dict(list(PERCENTILES))
    points = [Point(p, values[p] / 1000.0) for p in PERCENTILES if p < 100.0]
    # beyond 1/total the histogram has no more resolution: stop at the max
    cutoff = 100.0 * (1.0 - 1.0 / total)
    points = [p for p in points if p.percentile <= cutoff] or points[:1]
    last = Point(100.0 * (1.0 - 1.0 / max(total, 2)), hist.get_max_value() / 1000.0)
    if points[-1].percentile >= last.percentile:
        points.pop()
    points.append(last)
    return points


class ReportView(msgspec.Struct, frozen=True, kw_only=True):
    """A report plus what the browser cannot compute: its percentile curves."""

    report: Report
    distribution: list[Point]
    service_distribution: list[Point]


def view(report: Report) -> ReportView:
    return ReportView(
        report=report,
        distribution=distribution(report.histogram),
        service_distribution=distribution(report.service_histogram),
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
            distribution=distribution(r.histogram),
        )
        for r in reports
    ]
    names = sorted({r.plan_name for r in reports})
    return Comparison(runs=entries, same_plan=len(names) == 1, plan_names=names)
