"""A run against its test's baseline: the change in each figure, and relative limits. Pure.

``compare`` puts a report beside the baseline's (throughput, error rate, p50/p95/p99,
overall and per request); ``judge`` turns ``thresholds.relative`` limits such as
``p99_ms: {max_increase_pct: 10}`` into threshold results against it; ``section`` gives
both for a run's report from what it is judged against (``Against``, gathered by the
archive before the report is built: ``RunAggregate.report`` builds it once with them).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.plan import Relative
from schemas.stats import BaselineComparison, Delta, Report, RequestTotals, ThresholdResult

SHOWN = ("rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")
_PERCENTILES = {"p50_ms": "p50", "p90_ms": "p90", "p95_ms": "p95", "p99_ms": "p99",
                "p999_ms": "p999", "max_ms": "max", "mean_ms": "mean"}


def figure(t: RequestTotals, metric: str) -> float | None:
    if metric == "rps":
        return t.achieved_rps
    if metric == "error_rate":
        return t.error_rate
    lat = t.latency_ms
    return None if lat is None else getattr(lat, _PERCENTILES[metric])


def delta(base: float | None, value: float | None) -> Delta:
    if base is None or value is None:
        return Delta(baseline=base, value=value)
    if base == 0:
        return Delta(baseline=base, value=value, change_pct=0.0 if value == 0 else None)
    return Delta(baseline=base, value=value, change_pct=round((value - base) / base * 100, 2))


def _deltas(now: RequestTotals, base: RequestTotals, metrics=SHOWN) -> dict[str, Delta]:
    return {m: delta(figure(base, m), figure(now, m)) for m in metrics}


def compare(test: str, base_run: str, now_totals: RequestTotals, base_totals: RequestTotals,
            now_requests: dict[str, RequestTotals], base_requests: dict[str, RequestTotals],
            extra: tuple[str, ...] = ()) -> BaselineComparison:
    metrics = SHOWN + tuple(m for m in extra if m not in SHOWN)
    return BaselineComparison(
        run_id=base_run, test=test, totals=_deltas(now_totals, base_totals, metrics),
        requests={name: _deltas(t, base_requests[name]) for name, t in now_requests.items()
                  if name in base_requests},
    )


def judge(relative: dict[str, Relative], cmp: BaselineComparison | None) -> list[ThresholdResult]:
    """One result per relative limit; without a baseline nothing can be judged (ok)."""
    out = []
    for metric, rel in sorted(relative.items()):
        for direction, pct in (("increase", rel.max_increase_pct), ("decrease", rel.max_decrease_pct)):
            if pct is None:
                continue
            name = f"{metric} max_{direction}_pct"
            if cmp is None:
                out.append(ThresholdResult(name=name, limit=pct, value=None, ok=True,
                                           reason="no baseline for this test yet: not judged"))
                continue
            d = cmp.totals.get(metric)
            if d is None or d.baseline is None or d.value is None:
                out.append(ThresholdResult(name=name, limit=pct, value=None, ok=False,
                                           reason=f"no {metric} in this run or its baseline"))
                continue
            change = d.change_pct if d.change_pct is not None else float("inf")
            value = change if direction == "increase" else -change
            out.append(ThresholdResult(
                name=name, limit=pct, value=round(value, 2), ok=value <= pct,
                reason=f"{metric} {d.value:.4g} against {d.baseline:.4g} in baseline run {cmp.run_id}",
            ))
    return out


@dataclass(frozen=True)
class Against:
    """What a run of a catalogue test is judged against, gathered before its report is
    built (``Archive.against``) and kept for its amendments: the test and its version, the
    baseline run and its report (``base`` None: no baseline yet, or its report unreadable)."""

    test: str
    test_version: int | None = None
    base_run: str | None = None
    base: Report | None = None


def section(against: Against, relative: dict[str, Relative], totals: RequestTotals,
            requests: dict[str, RequestTotals]) -> tuple[BaselineComparison | None, list[ThresholdResult]]:
    """A report's baseline comparison and the results of its relative limits."""
    cmp = None
    if against.base is not None and against.base_run is not None:
        cmp = compare(against.test, against.base_run, totals, against.base.totals,
                      requests, against.base.requests, tuple(relative))
    return cmp, judge(relative, cmp)
