"""Evaluating a plan's thresholds against a run's totals. Pure."""

from __future__ import annotations

from schemas.plan import Thresholds
from schemas.stats import RequestTotals, ThresholdResult

_LATENCY = {
    "p50_ms": "p50",
    "p90_ms": "p90",
    "p95_ms": "p95",
    "p99_ms": "p99",
    "p999_ms": "p999",
    "max_ms": "max",
    "mean_ms": "mean",
}


def evaluate(thresholds: Thresholds, totals: RequestTotals) -> list[ThresholdResult]:
    """One result per threshold set; a threshold with no data to judge fails."""
    results: list[ThresholdResult] = []
    for name, attr in _LATENCY.items():
        limit = getattr(thresholds, name)
        if limit is None:
            continue
        value = getattr(totals.latency_ms, attr) if totals.latency_ms else None
        results.append(ThresholdResult(name, limit, value, value is not None and value <= limit))
    if thresholds.error_rate is not None:
        value = totals.error_rate if totals.requests else None
        ok = value is not None and value <= thresholds.error_rate
        results.append(ThresholdResult("error_rate", thresholds.error_rate, value, ok))
    if thresholds.dropped_rate is not None:
        offered = totals.requests + totals.dropped
        value = totals.dropped / offered if offered else None
        ok = value is not None and value <= thresholds.dropped_rate
        results.append(ThresholdResult("dropped_rate", thresholds.dropped_rate, value, ok))
    if thresholds.min_rps is not None:
        value = totals.achieved_rps
        results.append(ThresholdResult("min_rps", thresholds.min_rps, value, value >= thresholds.min_rps))
    return results


def verdict(results: list[ThresholdResult]) -> str:
    return "pass" if all(r.ok for r in results) else "fail"
