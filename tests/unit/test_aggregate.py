"""Exact merging of interval stats (services/coordinator/aggregate.py).

Intervals are built by hand with the generator's own ``Interval.to_stats`` so the
histograms travel in exactly the encoding generators send.
"""

from __future__ import annotations

import numpy as np
import pytest

from schemas.control import Segment
from schemas.stats import IntervalStats, RequestInterval
from services.common import histogram
from services.common.histogram import HistogramDecodeError
from services.coordinator.aggregate import RunAggregate, is_behind
from services.generator.recorder import Interval
from tests import plans

NAMES = ["home", "order"]
PROFILE = [Segment(0.0, 10.0, 100.0, 100.0)]
START = 1_700_000_000.0


def stats(
    gen: str,
    seq: int,
    latencies_ms: dict[str, list[float]],
    *,
    errors: dict[str, dict[str, int]] | None = None,
    late: dict[str, int] | None = None,
    dropped: dict[str, int] | None = None,
    target: float = 50.0,
    sent: int | None = None,
    in_flight: int = 0,
    final: bool = False,
) -> IntervalStats:
    iv = Interval(len(NAMES))
    errors = errors or {}
    for spec, name in enumerate(NAMES):
        errs = errors.get(name, {})
        kinds = [k for k, n in errs.items() for _ in range(n)]
        for j, ms in enumerate(latencies_ms.get(name, [])):
            err = kinds[j] if j < len(kinds) else None
            iv.record(spec, ms / 1000.0, ms / 2000.0, err)
        iv.late[spec] = (late or {}).get(name, 0)
        iv.dropped[spec] = (dropped or {}).get(name, 0)
    iv.sent = sent if sent is not None else iv.completed()
    return iv.to_stats(
        NAMES, run_id="r1", generator_id=gen, epoch=1, seq=seq, target=target,
        in_flight=in_flight, final=final,
    )


def hist_of_ms(values_ms) -> histogram.HdrHistogram:  # type: ignore[name-defined]
    h = histogram.new()
    histogram.record_many(h, np.asarray(values_ms, dtype=np.float64) / 1000.0, scale=1e6)
    return h


def close(agg: RunAggregate, seq: int, lost=None, final=False):
    return agg.close_second(
        seq, state="running", profile_=PROFILE,
        lost=lost or set(), final=final,
    )


def report(agg: RunAggregate, state="finished", duration_s=10.0):
    return agg.report(state=state, ended_at=START + duration_s, profile_=PROFILE, duration_s=duration_s)


# --- exact merging -------------------------------------------------------------------


def test_merged_percentiles_equal_percentiles_of_all_values():
    rng = np.random.default_rng(5)
    fast = rng.uniform(1.0, 20.0, 900).round(3).tolist()  # g1: quick
    slow = rng.uniform(200.0, 2000.0, 100).round(3).tolist()  # g2: a slow tail
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    assert agg.add(stats("g1", 0, {"home": fast}))
    assert agg.add(stats("g2", 0, {"home": slow}))
    rep = report(agg)
    expected = histogram.summarize(hist_of_ms(fast + slow))
    lat = rep.totals.latency_ms
    assert lat is not None and expected is not None
    assert (lat.p50, lat.p90, lat.p95, lat.p99, lat.p999, lat.max) == (
        expected.p50, expected.p90, expected.p95, expected.p99, expected.p999, expected.max
    )
    assert lat.mean == expected.mean
    # exact, not the average of the two generators' p99s
    p99_g1 = histogram.summarize(hist_of_ms(fast)).p99
    p99_g2 = histogram.summarize(hist_of_ms(slow)).p99
    assert lat.p99 != pytest.approx((p99_g1 + p99_g2) / 2, rel=0.01)
    assert lat.p90 < 25.0 < lat.p99  # 10 % slow: p90 is quick, p99 is in the tail
    # the report's histogram is the merged one, count for count
    merged = histogram.decode(rep.histogram)
    assert merged.get_total_count() == 1000
    assert np.array_equal(
        np.ctypeslib.as_array(merged.counts), np.ctypeslib.as_array(hist_of_ms(fast + slow).counts)
    )


def test_live_snapshot_percentiles_are_exact_merge():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    a = [1.0] * 98 + [500.0, 600.0]
    b = [2.0] * 50 + [900.0] * 50
    agg.add(stats("g1", 0, {"home": a}))
    agg.add(stats("g2", 0, {"order": b}))
    snap = close(agg, 0)
    one = hist_of_ms(a + b)
    assert snap.p50_ms == one.get_value_at_percentile(50.0) / 1000.0
    assert snap.p90_ms == one.get_value_at_percentile(90.0) / 1000.0
    assert snap.p99_ms == one.get_value_at_percentile(99.0) / 1000.0
    assert snap.max_ms == pytest.approx(900.0, rel=1e-3)
    assert snap.requests == 200
    assert snap.per_request["home"].rps == 100.0
    only_b = hist_of_ms(b)
    assert snap.per_request["order"].p50_ms == only_b.get_value_at_percentile(50.0) / 1000.0
    assert snap.per_request["order"].p90_ms == pytest.approx(900.0, rel=1e-3)
    assert snap.per_request["order"].errors == 0


# --- once per (generator, seq) ---------------------------------------------------------


def test_duplicate_interval_is_counted_once():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    s = stats("g1", 0, {"home": [5.0] * 10}, errors={"home": {"status": 2}})
    assert agg.add(s) is True
    assert agg.add(s) is False
    assert agg.add(stats("g1", 0, {"home": [5.0] * 99})) is False  # same key, other content
    assert agg.add(stats("g2", 0, {"home": [5.0] * 10})) is True  # other generator
    assert agg.add(stats("g1", 1, {"home": [5.0] * 10})) is True  # next second
    rep = report(agg)
    assert rep.totals.requests == 30
    assert rep.totals.errors == 2
    assert rep.generators["g1"].seconds == 2
    assert rep.generators["g1"].requests == 20
    assert histogram.decode(rep.histogram).get_total_count() == 30
    snap = close(agg, 0)
    assert snap.requests == 20


def test_duplicate_after_close_does_not_amend_again():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [5.0] * 10}))
    close(agg, 0)
    late = stats("g2", 0, {"home": [5.0] * 7})
    assert agg.add(late) is True
    assert agg.add(late) is False
    assert agg.timeline[0].requests == 17


# --- late intervals ----------------------------------------------------------------------


def test_late_interval_for_closed_second_amends_timeline():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [3.0] * 40}, errors={"home": {"timeout": 1}}))
    snap = close(agg, 0)
    assert snap.requests == 40
    assert agg.is_closed(0)
    assert agg.reported(0) == set()
    assert agg.add(
        stats("g2", 0, {"home": [3.0] * 45, "order": [4.0] * 5}, errors={"order": {"status": 2}},
              late={"home": 3}, dropped={"order": 1})
    )
    entry = agg.timeline[0]
    assert entry.requests == 90
    assert entry.rps == 90.0
    assert entry.errors == 3
    assert entry.late == 3
    assert entry.dropped == 1
    assert 0 not in agg.open  # no second is reopened
    rep = report(agg)
    assert rep.timeline[0].requests == 90
    assert rep.totals.requests == 90
    assert rep.totals.error_kinds == {"status": 2, "timeout": 1}
    assert rep.generators["g2"].requests == 50


def test_open_seconds_collect_until_closed():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [1.0]}))
    agg.add(stats("g1", 1, {"home": [1.0, 1.0]}))
    agg.add(stats("g2", 1, {"home": [1.0]}))
    assert agg.reported(0) == {"g1"}
    assert agg.reported(1) == {"g1", "g2"}
    assert agg.reported(2) == set()
    assert not agg.is_closed(0)
    assert close(agg, 1).requests == 3
    assert close(agg, 0).requests == 1
    assert [e.t for e in report(agg).timeline] == [0, 1]


# --- snapshot ---------------------------------------------------------------------------------


def test_close_second_snapshot_counts_and_generators():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 2, {"home": [2.0] * 50}, target=50.0, sent=50, in_flight=3))
    agg.add(stats("g2", 2, {"home": [2.0] * 30}, target=50.0, sent=30, in_flight=4,
                  dropped={"home": 20}))
    agg.note(2, "generator g3 lost", gap=True)
    snap = close(agg, 2, lost={"g3"})
    assert snap.seq == 2
    assert snap.at == START + 2
    assert snap.elapsed_s == 3.0
    assert snap.duration_s == 10.0
    assert snap.target_rps == 100.0
    assert snap.rps == 80.0
    assert snap.dropped == 20
    assert snap.in_flight == 7
    assert snap.total_requests == 80
    assert set(snap.generators) == {"g1", "g2", "g3"}
    assert snap.generators["g1"].behind is False
    assert snap.generators["g2"].behind is True
    assert snap.generators["g2"].sent == 30
    assert snap.generators["g3"].lost is True and snap.generators["g3"].rps == 0.0
    assert snap.events == ["generator g3 lost"]
    entry = agg.timeline[2]
    assert entry.gap is True
    assert entry.generators == 2
    assert entry.target_rps == 100.0
    assert report(agg).events == ["t=2s generator g3 lost"]


def test_empty_second_closes_with_zeros():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    snap = close(agg, 4)
    assert snap.requests == 0
    assert snap.p99_ms is None
    assert snap.max_ms is None
    assert snap.error_rate == 0.0
    assert agg.timeline[4].generators == 0


def test_snapshot_error_rate_and_totals():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [1.0] * 100}, errors={"home": {"status": 10}}))
    close(agg, 0)
    agg.add(stats("g1", 1, {"home": [1.0] * 50}, errors={"home": {"reset": 1}}))
    snap = close(agg, 1)
    assert snap.errors == 1
    assert snap.error_rate == pytest.approx(0.02)
    assert snap.total_requests == 150
    assert snap.total_errors == 11


@pytest.mark.parametrize(
    "target, sent, late, dropped, behind",
    [
        (100.0, 100, 0, 0, False),
        (100.0, 100, 2, 0, False),
        (100.0, 100, 3, 0, True),
        (100.0, 95, 0, 0, False),
        (100.0, 94, 0, 0, True),
        (100.0, 100, 0, 1, True),
        (10_000.0, 9_600, 90, 0, False),
        (10_000.0, 9_400, 0, 0, True),
    ],
)
def test_is_behind(target, sent, late, dropped, behind):
    assert is_behind(target, sent, late, dropped) is behind


# --- report -------------------------------------------------------------------------------------


def test_report_totals_per_request_and_per_generator():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    for seq in range(2):
        agg.add(stats("g1", seq, {"home": [10.0] * 40, "order": [20.0] * 10},
                      errors={"order": {"status": 1}}, target=50.0, sent=50))
        agg.add(stats("g2", seq, {"home": [30.0] * 30}, late={"home": 4}, dropped={"order": 5},
                      target=50.0, sent=30))
        close(agg, seq)
    rep = report(agg, duration_s=2.0)
    assert rep.run_id == "r1"
    assert rep.plan_name == "shop"
    assert rep.state == "finished"
    assert rep.started_at == START
    assert rep.duration_s == 2.0
    assert rep.target_rps == 100.0
    assert rep.totals.requests == 160
    assert rep.totals.errors == 2
    assert rep.totals.error_rate == pytest.approx(2 / 160)
    assert rep.totals.achieved_rps == 80.0
    assert rep.totals.late == 8
    assert rep.totals.dropped == 10
    assert rep.requests["home"].requests == 140
    assert rep.requests["home"].errors == 0
    assert rep.requests["home"].late == 8
    assert rep.requests["order"].requests == 20
    assert rep.requests["order"].error_kinds == {"status": 2}
    assert rep.requests["order"].dropped == 10
    assert rep.requests["order"].latency_ms.p50 == pytest.approx(20.0, rel=1e-3)
    assert rep.requests["home"].latency_ms.max == pytest.approx(30.0, rel=1e-3)
    assert rep.requests["home"].service_time_ms.max == pytest.approx(15.0, rel=1e-3)
    g1, g2 = rep.generators["g1"], rep.generators["g2"]
    assert (g1.requests, g1.errors, g1.seconds, g1.target_rps, g1.achieved_rps) == (100, 2, 2, 50.0, 50.0)
    assert (g2.requests, g2.late, g2.dropped, g2.achieved_rps) == (60, 8, 10, 30.0)
    assert [e.requests for e in rep.timeline] == [80, 80]
    assert histogram.decode(rep.histogram).get_total_count() == 160
    assert histogram.decode(rep.service_histogram).get_total_count() == 160
    assert rep.thresholds == [] and rep.verdict == "pass"


def test_report_thresholds_pass():
    agg = RunAggregate("r1", plans.plan(plans.TWO, thresholds={"p99_ms": 50, "error_rate": 0.05}), START)
    agg.add(stats("g1", 0, {"home": [10.0] * 100}, errors={"home": {"status": 1}}))
    rep = report(agg, duration_s=1.0)
    assert [(t.name, t.ok) for t in rep.thresholds] == [("p99_ms", True), ("error_rate", True)]
    assert rep.thresholds[1].value == pytest.approx(0.01)
    assert rep.verdict == "pass"


def test_report_thresholds_fail_on_merged_p99():
    # each generator alone would pass p99 < 100 ms; together the tail is 5 % slow
    agg = RunAggregate("r1", plans.plan(plans.TWO, thresholds={"p99_ms": 100}), START)
    agg.add(stats("g1", 0, {"home": [10.0] * 100}))
    agg.add(stats("g2", 0, {"home": [10.0] * 90 + [300.0] * 10}))
    rep = report(agg, duration_s=1.0)
    [t] = rep.thresholds
    assert t.name == "p99_ms"
    assert t.value == pytest.approx(300.0, rel=1e-3)
    assert t.ok is False
    assert rep.verdict == "fail"


def test_failed_run_fails_whatever_the_thresholds():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [1.0]}))
    assert report(agg).verdict == "pass"
    assert report(agg, state="failed").verdict == "fail"


def test_report_of_nothing():
    agg = RunAggregate("r1", plans.plan(plans.TWO, thresholds={"min_rps": 1}), START)
    rep = report(agg, duration_s=0.0)
    assert rep.totals.requests == 0
    assert rep.totals.latency_ms is None
    assert rep.histogram == ""
    assert rep.verdict == "fail"  # min_rps 1 not met


# --- bad input ------------------------------------------------------------------------------------


def test_bad_histogram_raises_and_leaves_no_partial_counts():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    good = stats("g1", 0, {"home": [5.0] * 10, "order": [5.0] * 3})
    bad = IntervalStats(
        run_id="r1", generator_id="g1", epoch=1, seq=0, target=50.0, sent=13, in_flight=0,
        requests={"home": good.requests["home"],  # valid, and first
                  "order": RequestInterval(count=3, latency="not-a-histogram")},
    )
    with pytest.raises(HistogramDecodeError):
        agg.add(bad)
    assert agg.seen == set()
    assert agg.names == {}
    assert agg.gens == {}
    assert agg.open == {}
    assert agg.finals == set()
    # the good resend of the same (generator, seq) is still accepted
    assert agg.add(good) is True
    assert report(agg).totals.requests == 13


def test_bad_service_histogram_also_raises():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    good = stats("g1", 0, {"home": [5.0] * 10})
    bad = IntervalStats(
        run_id="r1", generator_id="g1", epoch=1, seq=0, target=50.0, sent=10, in_flight=0,
        requests={"home": RequestInterval(count=10, latency=good.requests["home"].latency, service="!!")},
    )
    with pytest.raises(HistogramDecodeError):
        agg.add(bad)
    assert agg.names == {} and agg.seen == set()


def test_final_interval_marks_generator_done():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [1.0]}))
    assert agg.finals == set()
    agg.add(stats("g1", 1, {"home": [1.0]}, final=True))
    assert agg.finals == {"g1"}


def test_dropped_only_interval_does_not_zero_the_min_latency():
    agg = RunAggregate("r1", plans.plan(plans.TWO), START)
    agg.add(stats("g1", 0, {"home": [5.0] * 10}))
    agg.add(stats("g2", 0, {}, dropped={"home": 4}))  # count 0: empty histograms
    rep = report(agg)
    assert rep.totals.dropped == 4
    assert rep.requests["home"].latency_ms.min == pytest.approx(5.0, rel=1e-3)
    assert rep.totals.latency_ms.min == pytest.approx(5.0, rel=1e-3)


def test_a_name_that_never_ran_has_its_row_of_zeros_and_its_threshold_says_why():
    plan = plans.plan(plans.TWO, thresholds={"requests": {"order": {"error_rate": 0.01, "p99_ms": 100}}})
    agg = RunAggregate("r1", plan, START)
    agg.add(stats("g1", 0, {"home": [10.0] * 10}))
    close(agg, 0)
    rep = report(agg, duration_s=1.0)
    order = rep.requests["order"]
    assert (order.requests, order.errors, order.error_rate, order.achieved_rps) == (0, 0, 0.0, 0.0)
    assert [(t.name, t.value, t.ok) for t in rep.thresholds] == [("p99_ms", None, False),
                                                                ("error_rate", 0.0, False)]
    assert all(t.reason == "no data: 'order' sent no request (it never ran)" for t in rep.thresholds)
    assert rep.verdict == "fail"
    # while the run goes on, a name not reached yet does not abort it
    assert agg.failing_so_far(1) == []
