"""Thresholds against a run's totals (services/coordinator/thresholds.py)."""

from __future__ import annotations

import pytest

from schemas.plan import Limits, Thresholds
from schemas.stats import Percentiles, RequestTotals, ThresholdResult
from services.coordinator import thresholds

LAT = Percentiles(min=1.0, mean=20.0, p50=15.0, p90=40.0, p95=60.0, p99=120.0, p999=300.0, max=900.0)


def totals(requests=1000, errors=5, dropped=0, achieved_rps=100.0, latency=LAT) -> RequestTotals:
    return RequestTotals(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        error_kinds={"status": errors} if errors else {},
        achieved_rps=achieved_rps,
        late=0,
        dropped=dropped,
        latency_ms=latency,
        service_time_ms=latency,
    )


def by_name(results: list[ThresholdResult]) -> dict[str, ThresholdResult]:
    return {r.name: r for r in results}


def test_no_thresholds_no_results_and_pass():
    results = thresholds.evaluate(Thresholds(), totals())
    assert results == []
    assert thresholds.verdict(results) == "pass"


def test_latency_thresholds_compare_each_percentile():
    t = Thresholds(p50_ms=15.0, p90_ms=30.0, p95_ms=100.0, p99_ms=119.9, p999_ms=300.0, max_ms=1000.0, mean_ms=10.0)
    r = by_name(thresholds.evaluate(t, totals()))
    assert r["p50_ms"] == ThresholdResult("p50_ms", 15.0, 15.0, True)  # equal to the limit passes
    assert r["p90_ms"] == ThresholdResult("p90_ms", 30.0, 40.0, False)
    assert r["p95_ms"] == ThresholdResult("p95_ms", 100.0, 60.0, True)
    assert r["p99_ms"] == ThresholdResult("p99_ms", 119.9, 120.0, False)
    assert r["p999_ms"] == ThresholdResult("p999_ms", 300.0, 300.0, True)
    assert r["max_ms"] == ThresholdResult("max_ms", 1000.0, 900.0, True)
    assert r["mean_ms"] == ThresholdResult("mean_ms", 10.0, 20.0, False)


def test_results_come_in_a_stable_order():
    t = Thresholds(min_rps=1, error_rate=0.5, p99_ms=1000, p50_ms=1000, dropped_rate=1)
    names = [r.name for r in thresholds.evaluate(t, totals())]
    assert names == ["p50_ms", "p99_ms", "error_rate", "dropped_rate", "min_rps"]


def test_error_rate_threshold():
    assert thresholds.evaluate(Thresholds(error_rate=0.01), totals(errors=10)) == [
        ThresholdResult("error_rate", 0.01, 0.01, True)
    ]
    assert thresholds.evaluate(Thresholds(error_rate=0.01), totals(errors=11)) == [
        ThresholdResult("error_rate", 0.01, 0.011, False)
    ]


def test_dropped_rate_is_share_of_offered():
    [r] = thresholds.evaluate(Thresholds(dropped_rate=0.1), totals(requests=900, dropped=100))
    assert r.value == pytest.approx(0.1)
    assert r.ok is True
    [r] = thresholds.evaluate(Thresholds(dropped_rate=0.05), totals(requests=900, dropped=100))
    assert r.ok is False


def test_min_rps_threshold():
    [r] = thresholds.evaluate(Thresholds(min_rps=100.0), totals(achieved_rps=100.0))
    assert r == ThresholdResult("min_rps", 100.0, 100.0, True)
    [r] = thresholds.evaluate(Thresholds(min_rps=100.0), totals(achieved_rps=99.9))
    assert r.ok is False


def test_thresholds_with_no_data_fail():
    empty = totals(requests=0, errors=0, achieved_rps=0.0, latency=None)
    r = by_name(thresholds.evaluate(Thresholds(p99_ms=100.0, error_rate=0.5, dropped_rate=0.5), empty))
    why = "no data: the run sent no request (it never ran)"
    # counts and rates are 0, a latency has no value; each fails and says why
    assert r["p99_ms"] == ThresholdResult("p99_ms", 100.0, None, False, reason=why)
    assert r["error_rate"] == ThresholdResult("error_rate", 0.5, 0.0, False, reason=why)
    assert r["dropped_rate"] == ThresholdResult("dropped_rate", 0.5, 0.0, False, reason=why)


def test_all_dropped_fails_dropped_rate_with_value_one():
    [r] = thresholds.evaluate(Thresholds(dropped_rate=0.5), totals(requests=0, errors=0, dropped=10, latency=None))
    assert r.value == 1.0
    assert r.ok is False


def test_verdict_fails_when_any_fails():
    ok = ThresholdResult("a", 1.0, 0.5, True)
    bad = ThresholdResult("b", 1.0, 2.0, False)
    assert thresholds.verdict([ok, ok]) == "pass"
    assert thresholds.verdict([ok, bad]) == "fail"
    assert thresholds.verdict([bad]) == "fail"


# --- per-request thresholds ----------------------------------------------------------
def test_per_request_limits_are_judged_on_that_request_after_the_run_limits():
    t = Thresholds(p99_ms=500.0, requests={"login": Limits(p99_ms=100.0, error_rate=0.01),
                                           "home": Limits(p99_ms=200.0)})
    slow = Percentiles(min=1.0, mean=50.0, p50=40.0, p90=90.0, p95=110.0, p99=150.0, p999=200.0, max=400.0)
    per = {"login": totals(errors=20, latency=slow), "home": totals(errors=0)}
    results = thresholds.evaluate(t, totals(), per)
    assert [(r.request, r.name, r.value, r.ok) for r in results] == [
        (None, "p99_ms", 120.0, True),
        ("login", "p99_ms", 150.0, False),
        ("login", "error_rate", 0.02, False),
        ("home", "p99_ms", 120.0, True),
    ]
    assert [r.label for r in results] == ["p99_ms", "login: p99_ms", "login: error_rate", "home: p99_ms"]
    assert thresholds.verdict(results) == "fail"
    assert thresholds.verdict(thresholds.evaluate(Thresholds(requests={"home": Limits(p99_ms=200.0)}),
                                                  totals(), per)) == "pass"


def test_a_request_with_no_data_fails_its_limits():
    t = Thresholds(requests={"never": Limits(p99_ms=100.0, min_rps=1.0, error_rate=0.5)})
    results = thresholds.evaluate(t, totals(), {})
    assert [(r.name, r.value, r.ok) for r in results] == [
        ("p99_ms", None, False), ("error_rate", 0.0, False), ("min_rps", 0.0, False)]
    assert {r.reason for r in results} == {"no data: 'never' sent no request (it never ran)"}


def test_a_limit_met_on_data_has_no_reason_and_a_failed_one_only_its_value():
    t = Thresholds(error_rate=0.5, requests={"a": Limits(error_rate=0.0)})
    results = thresholds.evaluate(t, totals(), {"a": totals(errors=1)})
    assert [(r.ok, r.reason) for r in results] == [(True, None), (False, None)]


def test_a_whole_run_result_keeps_its_old_wire_shape():
    import msgspec

    [r] = thresholds.evaluate(Thresholds(p99_ms=500.0), totals())
    assert msgspec.json.decode(msgspec.json.encode(r)) == {
        "name": "p99_ms", "limit": 500.0, "value": 120.0, "ok": True}
