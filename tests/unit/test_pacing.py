"""Schedule: intended send times from a rate profile (services/generator/pacing.py)."""

from __future__ import annotations

import math

import pytest

from schemas.control import Segment
from services.plan import profile
from services.generator.pacing import INF, Schedule


def all_times(sched: Schedule, start: int = 0, limit: int = 2_000_000) -> list[float]:
    """Intended times of arrivals start, start+1, ... until the schedule ends."""
    times: list[float] = []
    i = start
    while i < limit:
        t = sched.time_of(i)
        if t == INF:
            return times
        times.append(t)
        i += 1
    raise AssertionError("schedule never ended")


def per_second(times: list[float], seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in times:
        counts[int(math.floor(t))] += 1
    return counts


@pytest.mark.parametrize("rate", [1, 3, 7, 100, 997, 5000])
def test_constant_rate_gives_exact_count_per_second(rate):
    sched = Schedule([Segment(0.0, 20.0, rate, rate)], 1.0)
    times = all_times(sched)
    assert len(times) == 20 * rate
    assert per_second(times, 20) == [rate] * 20
    # arrivals_between agrees with time_of on every whole second
    assert [sched.arrivals_between(k, k + 1) for k in range(20)] == [rate] * 20


def test_constant_rate_times_are_i_over_r():
    sched = Schedule([Segment(0.0, 10.0, 50, 50)], 1.0)
    assert sched.time_of(0) == 0.0
    assert sched.time_of(1) == pytest.approx(0.02)
    assert sched.time_of(50) == pytest.approx(1.0)
    assert sched.time_of(499) == pytest.approx(9.98)
    assert sched.time_of(500) == INF


@pytest.mark.parametrize(
    "segments",
    [
        [Segment(0.0, 10.0, 0.0, 1000.0)],  # ramp up from zero
        [Segment(0.0, 10.0, 1000.0, 0.0)],  # ramp down to zero
        [Segment(0.0, 7.0, 13.0, 401.0), Segment(7.0, 12.0, 401.0, 401.0), Segment(12.0, 20.0, 401.0, 5.0)],
        [Segment(0.0, 5.0, 0.0, 200.0), Segment(5.0, 20.0, 200.0, 200.0), Segment(20.0, 25.0, 200.0, 400.0), Segment(25.0, 30.0, 400.0, 0.0)],
    ],
)
def test_linear_ramp_follows_integral_of_rate_per_second(segments):
    sched = Schedule(segments, 1.0)
    end = int(profile.duration(segments))
    times = all_times(sched)
    counts = per_second(times, end)
    for k in range(end):
        expected = profile.arrivals(segments, k, k + 1)
        assert abs(counts[k] - expected) <= 1, (k, counts[k], expected)
    # and cumulatively never drifts: after k seconds, arrivals == ceil(integral)
    running = 0
    for k in range(end):
        running += counts[k]
        assert running == math.ceil(profile.arrivals(segments, 0, k + 1) - 1e-9)
    assert len(times) == math.ceil(profile.arrivals(segments, 0, end) - 1e-9)


def test_count_at_is_the_integral_of_the_rate():
    segs = [Segment(0.0, 4.0, 0.0, 100.0), Segment(4.0, 8.0, 100.0, 100.0)]
    sched = Schedule(segs, 1.0)
    assert sched.count_at(0.0) == 0.0
    assert sched.count_at(2.0) == pytest.approx(50.0)  # 0..50 rps over 2 s: 50
    assert sched.count_at(4.0) == pytest.approx(200.0)
    assert sched.count_at(6.0) == pytest.approx(400.0)
    assert sched.count_at(100.0) == pytest.approx(600.0)
    assert sched.total == pytest.approx(600.0)


def test_time_of_is_increasing_and_inverts_count_at():
    segs = [Segment(0.0, 3.0, 10.0, 300.0), Segment(3.0, 6.0, 300.0, 300.0), Segment(6.0, 9.0, 300.0, 20.0)]
    sched = Schedule(segs, 1.0)
    times = all_times(sched)
    assert len(times) > 1000
    assert all(b > a for a, b in zip(times, times[1:]))
    for i in (0, 1, 17, 500, 1000, len(times) - 1):
        assert sched.count_at(times[i]) == pytest.approx(i, abs=1e-6)


def test_time_of_going_backwards_finds_the_earlier_piece():
    segs = [Segment(0.0, 5.0, 10.0, 10.0), Segment(5.0, 10.0, 100.0, 100.0)]
    sched = Schedule(segs, 1.0)
    assert sched.time_of(400) == pytest.approx(8.5)  # cursor now on the second piece
    assert sched.time_of(10) == pytest.approx(1.0)  # back into the first
    assert sched.time_of(60) == pytest.approx(5.1)


def test_share_scales_the_rate():
    segs = [Segment(0.0, 10.0, 300.0, 300.0)]
    sched = Schedule(segs, 1 / 3)
    times = all_times(sched)
    assert per_second(times, 10) == [100] * 10
    quarter = Schedule(segs, 0.25)
    assert quarter.count_at(10.0) == pytest.approx(750.0)
    assert len(all_times(quarter)) == 750


def test_shares_of_all_generators_add_up_to_the_whole_rate():
    segs = [Segment(0.0, 10.0, 0.0, 600.0)]
    whole = len(all_times(Schedule(segs, 1.0)))
    parts = sum(len(all_times(Schedule(segs, s))) for s in (0.5, 0.3, 0.2))
    assert whole == 3000
    assert abs(parts - whole) <= 3  # each part rounds up at most one arrival


def test_zero_rate_segment_sends_nothing_then_resumes():
    segs = [Segment(0.0, 2.0, 10.0, 10.0), Segment(2.0, 5.0, 0.0, 0.0), Segment(5.0, 7.0, 10.0, 10.0)]
    sched = Schedule(segs, 1.0)
    times = all_times(sched)
    assert per_second(times, 7) == [10, 10, 0, 0, 0, 10, 10]
    assert sched.time_of(20) == pytest.approx(5.0)  # first after the pause is at its end
    assert sched.arrivals_between(2.0, 5.0) == 0


def test_all_zero_profile_has_no_arrivals():
    sched = Schedule([Segment(0.0, 10.0, 0.0, 0.0)], 1.0)
    assert sched.time_of(0) == INF
    assert sched.total == 0.0
    assert sched.end_s == 10.0


def test_zero_share_has_no_arrivals():
    sched = Schedule([Segment(0.0, 10.0, 100.0, 100.0)], 0.0)
    assert sched.time_of(0) == INF
    assert sched.count_at(5.0) == 0.0


def test_schedule_end_returns_inf():
    sched = Schedule([Segment(0.0, 2.0, 5.0, 5.0)], 1.0)
    assert sched.time_of(9) == pytest.approx(1.8)
    assert sched.time_of(10) == INF
    assert sched.time_of(11) == INF
    assert sched.time_of(10_000) == INF
    assert sched.end_s == 2.0


def test_empty_profile_ends_at_once():
    sched = Schedule([], 1.0, from_s=3.0)
    assert sched.time_of(0) == INF
    assert sched.end_s == 3.0
    assert sched.count_at(10.0) == 0.0


def test_arrivals_between_counts_half_open_interval():
    sched = Schedule([Segment(0.0, 10.0, 10.0, 10.0)], 1.0)
    # arrivals at 0.0, 0.1, ..., 0.9, 1.0, ...: [0, 1) holds 10, [0.05, 0.35) holds 3
    assert sched.arrivals_between(0.0, 1.0) == 10
    assert sched.arrivals_between(0.05, 0.35) == 3
    assert sched.arrivals_between(0.0, 10.0) == 100
    assert sched.arrivals_between(3.0, 3.0) == 0


def test_schedule_from_mid_run_starts_counting_from_zero_at_join_time():
    segs = [Segment(0.0, 10.0, 100.0, 100.0)]
    sched = Schedule(segs, 0.5, from_s=4.0)
    assert sched.start_s == 4.0
    assert sched.time_of(0) == pytest.approx(4.0)
    assert sched.time_of(50) == pytest.approx(5.0)
    assert len(all_times(sched)) == 300


def test_rebase_keeps_count_continuous_at_change():
    segs = [Segment(0.0, 20.0, 100.0, 100.0)]
    old = Schedule(segs, 1.0)
    at = 5.37
    new_profile = profile.hold_rate(segs, at, 400.0)
    new = old.rebased(at, new_profile, 0.5)
    assert new.count_at(at) == pytest.approx(old.count_at(at))
    assert new.count_at(at) == pytest.approx(537.0)
    # after the change N follows 400 × 0.5 = 200/s
    assert new.count_at(at + 1.0) == pytest.approx(737.0)
    assert new.count_at(20.0) == pytest.approx(537.0 + 200 * (20.0 - at))


def test_rebase_neither_skips_nor_repeats_arrivals():
    segs = [Segment(0.0, 10.0, 100.0, 100.0)]
    old = Schedule(segs, 1.0)
    at = 3.25
    new = old.rebased(at, profile.hold_rate(segs, at, 40.0), 1.0)
    # an engine sends i = 0, 1, 2, ... switching schedules at ``at``
    times: list[float] = []
    i = 0
    while (t := old.time_of(i)) < at:
        times.append(t)
        i += 1
    assert i == 325  # 3.25 s at 100/s
    times.extend(all_times(new, start=i))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[325] == pytest.approx(3.25)
    assert times[326] == pytest.approx(3.275)  # 1/40 s later
    counts = per_second(times, 10)
    assert counts[:3] == [100, 100, 100]
    assert counts[3] == 25 + 30  # 0.25 s at 100/s + 0.75 s at 40/s
    assert counts[4:] == [40] * 6
    assert len(times) == 325 + 270


def test_rebase_onto_a_ramp_follows_new_profile_times_share():
    segs = [Segment(0.0, 10.0, 100.0, 100.0)]
    old = Schedule(segs, 0.5)
    new_profile = [Segment(0.0, 4.0, 100.0, 100.0), Segment(4.0, 10.0, 100.0, 700.0)]
    new = old.rebased(4.0, new_profile, 0.25)
    assert new.count_at(4.0) == pytest.approx(200.0)
    for k in range(4, 10):
        expected = profile.arrivals(new_profile, k, k + 1) * 0.25
        assert new.count_at(k + 1) - new.count_at(k) == pytest.approx(expected)
    assert new.total == pytest.approx(200.0 + profile.arrivals(new_profile, 4, 10) * 0.25)


def test_rebase_with_fractional_count_has_no_duplicate_arrival():
    segs = [Segment(0.0, 10.0, 3.0, 3.0)]
    old = Schedule(segs, 1.0)
    at = 1.5  # N = 4.5: arrivals 0..4 already due (last at 4/3 s)
    new = old.rebased(at, segs, 1.0)
    assert old.time_of(4) < at
    assert new.time_of(5) == pytest.approx(5 / 3)  # the same profile: the same time
    assert new.time_of(5) > at
    assert len(all_times(new, start=5)) == 25


def test_rebase_to_stop_profile_ends_schedule():
    segs = [Segment(0.0, 10.0, 100.0, 100.0)]
    old = Schedule(segs, 1.0)
    new = old.rebased(4.0, profile.cut(segs, 4.0), 1.0)
    assert new.end_s == 4.0
    assert new.time_of(400) == INF
    assert new.count_at(9.0) == pytest.approx(400.0)


def test_spec_rebuilds_the_same_schedule_elsewhere():
    # a worker process rebuilds its schedule from spec(): same arrival times, rebased too
    base = Schedule([Segment(0.0, 5.0, 0.0, 400.0), Segment(5.0, 10.0, 400.0, 400.0)], 0.5)
    rebased = base.rebased(3.3, [Segment(0.0, 10.0, 250.0, 250.0)], 0.5)
    for sched in (base, rebased):
        copy = Schedule(*sched.params())
        first = math.ceil(sched.count_at(sched.start_s) - 1e-9)
        assert all_times(copy, start=first) == all_times(sched, start=first)
        assert copy.total == sched.total and copy.end_s == sched.end_s


def test_strided_arrivals_union_is_the_schedule():
    # SURGE_WORKERS: worker w sends i = w, w+N, ...; together exactly the schedule
    sched = Schedule([Segment(0.0, 4.0, 97.0, 97.0)], 1.0)
    everything = all_times(sched)
    n = 3
    parts = []
    for w in range(n):
        mine = Schedule(*sched.params())
        times, i = [], w
        while (t := mine.time_of(i)) != INF:
            times.append(t)
            i += n
        parts.append(times)
    assert sorted(t for p in parts for t in p) == everything
    assert [len(p) for p in parts] == [130, 129, 129]
