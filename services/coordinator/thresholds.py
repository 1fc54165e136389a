"""Evaluating a plan's thresholds against a run's totals. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.plan import Limits, Thresholds
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


def evaluate(thresholds: Thresholds, totals: RequestTotals,
             requests: Mapping[str, RequestTotals] | None = None) -> list[ThresholdResult]:
    """One result per threshold set: the whole run's first, then each request's (by
    name, in the plan's order). A threshold with no data to judge fails: a request
    that never completed cannot show it met its limit."""
    results = _judge(thresholds, totals, None)
    for name, limits in thresholds.requests.items():
        results += _judge(limits, (requests or {}).get(name), name)
    return results


def _judge(limits: Limits, totals: RequestTotals | None, request: str | None) -> list[ThresholdResult]:
    results: list[ThresholdResult] = []

    def add(name: str, limit: float, value: float | None, ok: bool) -> None:
        results.append(ThresholdResult(name, limit, value, ok, request=request))

    for name, attr in _LATENCY.items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        value = getattr(totals.latency_ms, attr) if totals and totals.latency_ms else None
        add(name, limit, value, value is not None and value <= limit)
    if limits.error_rate is not None:
        value = totals.error_rate if totals and totals.requests else None
        add("error_rate", limits.error_rate, value, value is not None and value <= limits.error_rate)
    if limits.dropped_rate is not None:
        offered = totals.requests + totals.dropped if totals else 0
        value = totals.dropped / offered if totals and offered else None
        add("dropped_rate", limits.dropped_rate, value, value is not None and value <= limits.dropped_rate)
    if limits.min_rps is not None:
        value = totals.achieved_rps if totals else None
        add("min_rps", limits.min_rps, value, value is not None and value >= limits.min_rps)
    return results


def verdict(results: list[ThresholdResult]) -> str:
    return "pass" if all(r.ok for r in results) else "fail"
