"""A run against its baseline (services/coordinator/baseline.py) and relative limits in plans."""

from __future__ import annotations

import pytest

from schemas.control import Segment
from schemas.plan import Relative
from schemas.stats import Percentiles, Report, RequestTotals
from services.coordinator import baseline
from services.coordinator.aggregate import RunAggregate
from services.generator.recorder import Interval
from services.plan import loader
from tests import plans


def totals(p99: float, rps: float = 100.0, error_rate: float = 0.0) -> RequestTotals:
    lat = Percentiles(min=1, mean=p99 / 2, p50=p99 / 4, p90=p99 / 2, p95=p99 * 0.8, p99=p99,
                      p999=p99, max=p99)
    return RequestTotals(requests=100, errors=0, error_rate=error_rate, error_kinds={},
                         achieved_rps=rps, late=0, dropped=0, latency_ms=lat, service_time_ms=lat)


def test_the_change_against_the_baseline_overall_and_per_request():
    cmp = baseline.compare("shop", "r-1", totals(22.0, rps=90), totals(20.0), {"home": totals(30.0)},
                           {"home": totals(20.0), "gone": totals(1.0)})
    assert cmp.totals["p99_ms"].change_pct == 10.0
    assert cmp.totals["rps"].change_pct == -10.0
    assert cmp.totals["error_rate"].change_pct == 0.0
    assert list(cmp.requests) == ["home"] and cmp.requests["home"]["p99_ms"].change_pct == 50.0


def test_relative_limits_judge_increase_and_decrease():
    cmp = baseline.compare("shop", "r-1", totals(22.0, rps=90), totals(20.0), {}, {})
    results = baseline.judge({"p99_ms": Relative(max_increase_pct=5), "rps": Relative(max_decrease_pct=15)}, cmp)
    by = {r.name: r for r in results}
    assert not by["p99_ms max_increase_pct"].ok and by["p99_ms max_increase_pct"].value == 10.0
    assert by["rps max_decrease_pct"].ok and by["rps max_decrease_pct"].value == 10.0
    assert "r-1" in by["p99_ms max_increase_pct"].reason


def test_without_a_baseline_a_relative_limit_is_not_judged():
    [r] = baseline.judge({"p99_ms": Relative(max_increase_pct=5)}, None)
    assert r.ok and r.value is None and "no baseline" in r.reason


def test_a_plan_writes_a_relative_limit_in_place_of_a_number():
    plan = loader.from_obj({"name": "x", "target": "http://127.0.0.1:1", "rate": 1, "duration": 1,
                            "requests": [{"name": "a"}],
                            "thresholds": {"p99_ms": {"max_increase_pct": 10}, "error_rate": 0.01}})
    assert plan.thresholds.p99_ms is None and plan.thresholds.error_rate == 0.01
    assert plan.thresholds.relative == {"p99_ms": Relative(max_increase_pct=10)}
    again = loader.from_obj(msgspec_roundtrip(plan))
    assert again.thresholds == plan.thresholds


def msgspec_roundtrip(plan):
    import msgspec

    return msgspec.json.decode(msgspec.json.encode(plan))


def a_report(run_id: str, p99_ms: float, against: baseline.Against | None = None) -> Report:
    """The report ``RunAggregate.report`` builds of one second of 100 "home" requests."""
    agg = RunAggregate(run_id, plans.plan(plans.TWO, thresholds={
        "p99_ms": {"max_increase_pct": 10}, "error_rate": 0.05}), 0.0)
    iv = Interval(2)
    for _ in range(100):
        iv.record(0, p99_ms / 1000.0, p99_ms / 2000.0, None)
    iv.sent = iv.completed()
    agg.add(iv.to_stats(["home", "order"], run_id=run_id, generator_id="g1", epoch=1, seq=0,
                        target=100.0, in_flight=0, final=True))
    return agg.report(state="finished", ended_at=1.0, profile_=[Segment(0.0, 1.0, 100.0, 100.0)],
                      duration_s=1.0, against=against)


def test_the_report_is_built_with_its_baseline_and_fails_on_a_relative_limit():
    base = a_report("r0", 10.0)
    against = baseline.Against(test="shop", test_version=3, base_run="r0", base=base)
    rep = a_report("r1", 20.0, against)  # p99 doubled: the absolute limits still pass
    assert (rep.test, rep.test_version, rep.baseline.run_id, rep.baseline.test) == ("shop", 3, "r0", "shop")
    assert rep.baseline.totals["p99_ms"].change_pct == pytest.approx(100.0, rel=1e-2)
    assert list(rep.baseline.requests) == ["home", "order"]
    assert [(t.name, t.ok) for t in rep.thresholds] == [
        ("error_rate", True), ("p99_ms max_increase_pct", False)]
    assert rep.verdict == "fail"
    # no baseline yet: the test is named, the relative limit is not judged
    alone = a_report("r1", 20.0, baseline.Against(test="shop", test_version=3))
    assert alone.test == "shop" and alone.baseline is None and alone.verdict == "pass"
    assert alone.thresholds[-1].value is None and alone.thresholds[-1].ok
    # a run of no test: no baseline section, no relative result
    plain = a_report("r1", 20.0)
    assert plain.test is None and plain.baseline is None and plain.verdict == "pass"
    assert [t.name for t in plain.thresholds] == ["error_rate"]
