"""Evaluating a plan's thresholds against a run's totals. Pure.

A name with no data (a step that never ran, a request no generator reached) is judged
on a row of zeros: counts and rates are 0, latencies have no value, and every limit on
it fails with a ``reason`` that says so — a request that never completed cannot show it
met its limit, and a report must not make a reader guess why.
"""

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


NO_DATA = RequestTotals(requests=0, errors=0, error_rate=0.0, error_kinds={}, achieved_rps=0.0,
                        late=0, dropped=0, latency_ms=None, service_time_ms=None)


def evaluate(thresholds: Thresholds, totals: RequestTotals,
             requests: Mapping[str, RequestTotals] | None = None) -> list[ThresholdResult]:
    """One result per threshold set: the whole run's first, then each request's (by
    name, in the plan's order). A threshold with no data to judge fails: a request
    that never completed cannot show it met its limit."""
    results = _judge(thresholds, totals, None)
    for name, limits in thresholds.requests.items():
        results += _judge(limits, (requests or {}).get(name) or NO_DATA, name)
    return results


def _judge(limits: Limits, totals: RequestTotals, request: str | None) -> list[ThresholdResult]:
    results: list[ThresholdResult] = []
    who = "the run" if request is None else repr(request)
    offered = totals.requests + totals.dropped
    no_response = None if totals.latency_ms else f"no data: {who} got no response ({totals.requests} requests)"
    no_request = None if totals.requests else f"no data: {who} sent no request (it never ran)"

    def add(name: str, limit: float, value: float | None, ok: bool, reason: str | None) -> None:
        results.append(ThresholdResult(name, limit, value, ok and reason is None, request=request,
                                       reason=reason))

    for name, attr in _LATENCY.items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        value = getattr(totals.latency_ms, attr) if totals.latency_ms else None
        add(name, limit, value, value is not None and value <= limit, no_request or no_response)
    if limits.error_rate is not None:
        add("error_rate", limits.error_rate, totals.error_rate, totals.error_rate <= limits.error_rate,
            no_request)
    if limits.dropped_rate is not None:
        value = totals.dropped / offered if offered else 0.0
        add("dropped_rate", limits.dropped_rate, value, value <= limits.dropped_rate,
            None if offered else no_request)
    if limits.min_rps is not None:
        add("min_rps", limits.min_rps, totals.achieved_rps, totals.achieved_rps >= limits.min_rps,
            no_request)
    return results


def verdict(results: list[ThresholdResult]) -> str:
    return "pass" if all(r.ok for r in results) else "fail"
