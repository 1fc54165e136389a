"""Rate profiles (services/plan/profile.py)."""

from __future__ import annotations

import pytest

from schemas.control import Segment
from services.plan import profile
from tests import plans


def test_rate_plan_gives_one_flat_segment():
    segs = profile.from_plan(plans.plan(rate=250, duration="1m"))
    assert segs == [Segment(0.0, 60.0, 250.0, 250.0)]


def test_stages_plan_ramps_from_start_rate_through_each_target():
    plan = plans.plan(
        rate=None, duration=None,
        start_rate=10,
        stages=[{"duration": "5s", "target": 200}, {"duration": 15, "target": 200}, {"duration": "5s", "target": 0}],
    )
    assert profile.from_plan(plan) == [
        Segment(0.0, 5.0, 10.0, 200.0),
        Segment(5.0, 20.0, 200.0, 200.0),
        Segment(20.0, 25.0, 200.0, 0.0),
    ]


def test_stages_default_start_rate_is_zero():
    segs = profile.from_plan(plans.plan(rate=None, duration=None, stages=[{"duration": 10, "target": 100}]))
    assert segs == [Segment(0.0, 10.0, 0.0, 100.0)]


RAMP = [Segment(0.0, 10.0, 0.0, 100.0), Segment(10.0, 20.0, 100.0, 100.0), Segment(20.0, 30.0, 100.0, 0.0)]


def test_duration_is_end_of_last_segment():
    assert profile.duration(RAMP) == 30.0
    assert profile.duration([]) == 0.0


def test_rate_at_interpolates_linearly_and_is_zero_outside():
    assert profile.rate_at(RAMP, 0.0) == 0.0
    assert profile.rate_at(RAMP, 2.5) == pytest.approx(25.0)
    assert profile.rate_at(RAMP, 10.0) == 100.0
    assert profile.rate_at(RAMP, 25.0) == pytest.approx(50.0)
    assert profile.rate_at(RAMP, 30.0) == 0.0
    assert profile.rate_at(RAMP, -1.0) == 0.0


def test_arrivals_is_integral_of_rate():
    assert profile.arrivals(RAMP, 0.0, 10.0) == pytest.approx(500.0)
    assert profile.arrivals(RAMP, 0.0, 30.0) == pytest.approx(2000.0)
    assert profile.arrivals(RAMP, 5.0, 15.0) == pytest.approx(375.0 + 500.0)
    assert profile.arrivals(RAMP, 29.0, 31.0) == pytest.approx(5.0)
    assert profile.arrivals(RAMP, 40.0, 50.0) == 0.0
    assert profile.arrivals(RAMP, 3.0, 3.0) == 0.0


def test_mean_rate_and_peak():
    assert profile.mean_rate(RAMP) == pytest.approx(2000.0 / 30.0)
    assert profile.peak(RAMP) == 100.0
    assert profile.mean_rate([]) == 0.0
    assert profile.peak([]) == 0.0
    assert profile.peak([Segment(0.0, 1.0, 7.0, 3.0), Segment(1.0, 2.0, 3.0, 9.0)]) == 9.0


def test_hold_rate_keeps_past_and_holds_new_rate_to_end():
    held = profile.hold_rate(RAMP, 5.0, 40.0)
    assert held == [Segment(0.0, 5.0, 0.0, 50.0), Segment(5.0, 30.0, 40.0, 40.0)]
    assert profile.duration(held) == 30.0
    # what was asked before the change is unchanged
    assert profile.arrivals(held, 0.0, 5.0) == pytest.approx(profile.arrivals(RAMP, 0.0, 5.0))
    assert profile.arrivals(held, 5.0, 30.0) == pytest.approx(1000.0)


def test_hold_rate_on_segment_boundary_keeps_whole_segments():
    held = profile.hold_rate(RAMP, 10.0, 7.0)
    assert held == [Segment(0.0, 10.0, 0.0, 100.0), Segment(10.0, 30.0, 7.0, 7.0)]


def test_hold_rate_clamps_time_into_run():
    assert profile.hold_rate(RAMP, -3.0, 9.0) == [Segment(0.0, 30.0, 9.0, 9.0)]
    assert profile.hold_rate(RAMP, 99.0, 9.0) == RAMP


def test_cut_truncates_profile_at_stop():
    cut = profile.cut(RAMP, 25.0)
    assert cut == [RAMP[0], RAMP[1], Segment(20.0, 25.0, 100.0, 50.0)]
    assert profile.duration(cut) == 25.0
    assert profile.cut(RAMP, 0.0) == []
    assert profile.cut(RAMP, 10.0) == [RAMP[0]]
    assert profile.cut(RAMP, 100.0) == RAMP
