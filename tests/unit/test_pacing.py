"""Schedule: intended send times from a rate profile (services/generator/pacing.py)."""

from __future__ import annotations

import math

import pytest

from schemas.control import Segment
from services.plan import profile
import numpy as np

from services.generator.pacing import INF, Schedule, from_params, start_schedule


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


# --- phases: generator k of n interleaves, the merged stream is the plan's ----------


def merged(scheds: list[Schedule]) -> list[float]:
    return sorted(t for s in scheds for t in all_times(s))


@pytest.mark.parametrize("n,rate", [(2, 1.0), (4, 40.0), (3, 1000.0), (7, 13.0)])
def test_phased_generators_merge_into_one_generator_at_the_total_rate(n, rate):
    segs = [Segment(0.0, 10.0, rate, rate)]
    times = merged([start_schedule(segs, 1 / n, phase=k / n) for k in range(n)])
    assert len(times) == round(10 * rate)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) == pytest.approx(1 / rate) and max(gaps) == pytest.approx(1 / rate)


def test_without_phases_generators_fire_in_lockstep():
    # what the phases fix: rate 1 on 2 generators was 2 requests at once every 2 s
    segs = [Segment(0.0, 4.0, 1.0, 1.0)]
    times = merged([start_schedule(segs, 0.5) for _ in range(2)])
    assert times == [0.0, 0.0, 2.0, 2.0]
    times = merged([start_schedule(segs, 0.5, phase=k / 2) for k in range(2)])
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_phased_counts_per_second_still_add_up_to_the_plan():
    segs = [Segment(0.0, 5.0, 0.0, 500.0), Segment(5.0, 10.0, 500.0, 500.0)]
    scheds = [start_schedule(segs, 1 / 3, phase=k / 3) for k in range(3)]
    for k in range(10):
        got = sum(math.ceil(s.count_at(k + 1) - 1e-9) - math.ceil(s.count_at(k) - 1e-9) for s in scheds)
        assert abs(got - profile.arrivals(segs, k, k + 1)) <= 3
    assert sum(len(all_times(s)) for s in scheds) == round(profile.arrivals(segs, 0, 10))


def test_a_generator_joining_mid_run_takes_its_phase():
    segs = [Segment(0.0, 10.0, 30.0, 30.0)]
    joined = start_schedule(segs, 1 / 3, phase=2 / 3, from_s=4.01)
    first = joined.time_of(0)
    assert 4.01 <= first < 4.01 + 0.1
    # where generator 2 of 3 would have sent had it been there from the start
    assert first == pytest.approx(4.0 + 2 / 30)


@pytest.mark.parametrize("at_delays", [(0.0, 0.0, 0.0), (0.003, 0.0, 0.011)])
def test_rebase_with_phases_interleaves_the_new_share_and_is_exact(at_delays):
    # 3 generators at 60/s; at ~2.5 s one leaves and the rate goes to 100/s on 2:
    # each sees the change a few ms apart, nothing is skipped or doubled
    segs = [Segment(0.0, 6.0, 60.0, 60.0)]
    new_profile = profile.hold_rate(segs, 2.5, 100.0)
    olds = [start_schedule(segs, 1 / 3, phase=k / 3) for k in range(3)]
    times: list[float] = []
    for k, old in enumerate(olds[:2]):
        at = 2.5 + at_delays[k]
        new = old.rebased(at, new_profile, 1 / 2, phase=k / 2)
        before = [t for t in all_times(old) if t < at]
        after = all_times(new, start=len(before))
        assert after[0] >= at
        times += before + after
    after = sorted(t for t in times if t > 2.6)
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert min(gaps) == pytest.approx(0.01, abs=1e-9) and max(gaps) == pytest.approx(0.01, abs=1e-9)


def test_rebase_with_a_phase_moves_the_count_by_less_than_one():
    old = start_schedule([Segment(0.0, 10.0, 7.0, 7.0)], 0.25, phase=0.75)
    for at in (0.3, 1.77, 5.0):
        new = old.rebased(at, [Segment(0.0, 10.0, 13.0, 13.0)], 0.5, phase=0.5)
        assert old.count_at(at) - 1 < new.count_at(at) <= math.ceil(old.count_at(at) - 1e-9)
        assert math.ceil(new.start_count - 1e-9) == math.ceil(old.count_at(at) - 1e-9)


# --- Poisson arrivals ---------------------------------------------------------


def test_poisson_gaps_have_the_rate_mean_and_unit_coefficient_of_variation():
    rate = 250.0
    sched = start_schedule([Segment(0.0, 40.0, rate, rate)], 1.0, arrivals="poisson", seed=11)
    times = [sched.time_of(i) for i in range(5000)]
    gaps = np.diff(np.array(times))
    mean = float(gaps.mean())
    cv = float(gaps.std()) / mean
    assert mean == pytest.approx(1 / rate, rel=0.05)
    assert cv == pytest.approx(1.0, rel=0.05)
    assert sorted(times) == times


def test_poisson_is_reproducible_by_seed_and_differs_across_seeds():
    segs = [Segment(0.0, 10.0, 100.0, 100.0)]
    a = all_times(start_schedule(segs, 0.5, arrivals="poisson", seed=3))
    b = all_times(start_schedule(segs, 0.5, arrivals="poisson", seed=3))
    c = all_times(start_schedule(segs, 0.5, arrivals="poisson", seed=4))
    assert a == b and a != c
    assert abs(len(a) - 500) < 4 * math.sqrt(500)


def test_poisson_count_at_agrees_with_time_of():
    sched = start_schedule([Segment(0.0, 3.0, 0.0, 9000.0)], 1.0, arrivals="poisson", seed=5)
    times = all_times(sched)
    assert len(times) == sched.total
    for t in (0.0, 0.5, 1.2345, 2.0, 2.999, 3.0):
        assert sched.count_at(t) == sum(1 for x in times if x <= t)


def test_poisson_rebase_neither_skips_nor_repeats_and_rebuilds_from_params():
    segs = [Segment(0.0, 10.0, 200.0, 200.0)]
    old = start_schedule(segs, 1.0, arrivals="poisson", seed=9)
    at = 4.321
    new = old.rebased(at, profile.hold_rate(segs, at, 50.0), 1.0)
    first = math.ceil(new.start_count - 1e-9)
    assert first == old.count_at(at)
    before = [old.time_of(i) for i in range(first)]
    after = all_times(new, start=first)
    assert before[-1] <= at <= after[0]
    assert abs(len(after) - 50 * (10 - at)) < 4 * math.sqrt(50 * (10 - at))
    copy = from_params(*new.params(), arrivals=new.arrivals, seed=new.seed)
    assert all_times(copy, start=first) == after


def test_poisson_strided_workers_send_exactly_the_schedule():
    segs = [Segment(0.0, 3.0, 3000.0, 3000.0)]
    sched = start_schedule(segs, 1.0, arrivals="poisson", seed=1)
    everything = all_times(sched)
    parts = []
    for w in range(3):
        mine = from_params(*sched.params(), arrivals="poisson", seed=1)
        i, times = w, []
        while (t := mine.time_of(i)) != INF:
            times.append(t)
            i += 3
        parts += times
    assert sorted(parts) == everything


# --- shares that differ: each generator owns a slice of the plan's own stream -----------


def owned(segs, shares, **kw):
    before, out = 0.0, []
    for s in shares:
        out.append(start_schedule(segs, s, slot=(before, min(before + s, 1.0)), **kw))
        before += s
    return out


@pytest.mark.parametrize("shares", [[0.26, 0.24, 0.25, 0.25], [0.7, 0.2, 0.1], [0.5, 0.5],
                                    [0.001, 0.499, 0.5]])
def test_unequal_shares_partition_the_plans_own_stream(shares):
    rate = 40.0
    segs = [Segment(0.0, 30.0, rate, rate)]
    scheds = owned(segs, shares)
    times = merged(scheds)
    # every arrival of the plan exactly once: the merged stream is one generator's
    assert times == pytest.approx([j / rate for j in range(int(30 * rate))])
    for s, sched in zip(shares, scheds):  # each its share, give or take a few
        assert abs(len(all_times(sched)) - s * 30 * rate) <= 3
        assert sched.total == len(all_times(sched))


@pytest.mark.parametrize("shares", [[0.75, 0.25], [0.5, 0.5], [0.26, 0.24, 0.25, 0.25]])
def test_owned_seconds_stay_within_two_of_the_share(shares):
    # what a snapshot shows per generator and second: at 200/s for 60 s, each second's
    # owned count is its share of 200, give or take two (a golden-ratio Weyl sequence's
    # discrepancy over 200 consecutive arrivals; test_fleet relies on it)
    rate = 200.0
    segs = [Segment(0.0, 60.0, rate, rate)]
    for s, sched in zip(shares, owned(segs, shares)):
        per_second = [sched.count_at(k + 1.0) - sched.count_at(float(k)) for k in range(60)]
        assert max(abs(n - s * rate) for n in per_second) <= 2, (s, per_second)
        assert sum(per_second) == pytest.approx(s * rate * 60, abs=2)


def test_owned_count_at_agrees_with_time_of():
    segs = [Segment(0.0, 5.0, 0.0, 2000.0)]
    sched = owned(segs, [0.3, 0.7])[1]
    times = all_times(sched)
    for t in (0.0, 0.7, 2.5, 4.99, 5.0):
        assert sched.count_at(t) == sum(1 for x in times if x < t)


def test_owned_rebase_on_a_hot_add_keeps_numbers_and_the_plans_stream():
    # two generators 0.6/0.4, at 3.3 s a third joins: 0.5/0.3/0.2 by capacity
    rate = 50.0
    segs = [Segment(0.0, 8.0, rate, rate)]
    olds = owned(segs, [0.6, 0.4])
    at = 3.3
    news, before = [], 0.0
    for k, s in enumerate([0.5, 0.3, 0.2]):
        if k < 2:
            news.append(olds[k].rebased(at, segs, s, slot=(before, before + s)))
        else:
            news.append(start_schedule(segs, s, from_s=at, slot=(before, before + s)))
        before += s
    times = []
    for k, new in enumerate(news):
        first = math.ceil(new.start_count - 1e-9)
        if k < 2:
            before_at = all_times(olds[k])[:first]
            assert all(t < at for t in before_at) and len(before_at) == first
            times += before_at
        times += all_times(new, start=first)
    # nothing skipped or doubled: still exactly the plan's arrivals
    assert sorted(times) == pytest.approx([j / rate for j in range(int(8 * rate))])


def test_owned_rebuilds_from_params_and_strides_across_workers():
    segs = [Segment(0.0, 3.0, 900.0, 900.0)]
    sched = owned(segs, [0.35, 0.65])[0].rebased(1.1, segs, 0.35, slot=(0.0, 0.35))
    first = math.ceil(sched.start_count - 1e-9)
    everything = all_times(sched, start=first)
    parts = []
    for w in range(3):
        mine = from_params(*sched.params(), arrivals=sched.arrivals, seed=sched.seed, args=sched.args)
        i = first + (w - first) % 3
        while (t := mine.time_of(i)) != INF:
            parts.append(t)
            i += 3
    assert sorted(parts) == everything


def test_an_empty_slot_has_no_arrivals():
    sched = start_schedule([Segment(0.0, 5.0, 100.0, 100.0)], 0.0, slot=(0.4, 0.4))
    assert sched.time_of(0) == INF and sched.count_at(5.0) == 0
