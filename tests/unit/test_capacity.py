"""A generator's capacity: measured CPU per request × usable cores (what the split follows)."""

from __future__ import annotations

import pytest

from services.coordinator import slicing
from services.generator.capacity import DEFAULT_CPU_US, Capacity, CapacityMeter, usable_cores


def test_before_any_measurement_a_core_is_worth_the_default_cost():
    assert Capacity(1).rps() == pytest.approx(1e6 / DEFAULT_CPU_US)
    assert Capacity(2).rps() == 2 * Capacity(1).rps()
    assert Capacity(1).cpu_us_per_request() == 0.0


def test_quiet_seconds_are_not_measured_and_busy_ones_move_the_estimate():
    cap = Capacity(1)
    cap.observe(100, 0.2)  # fixed costs would make each request look expensive
    assert cap.cpu_us_per_request() == 0.0
    cap.observe(10_000, 0.5)  # 50 µs a request
    assert cap.cpu_us_per_request() == 50.0 and cap.rps() == 20_000
    for _ in range(30):
        cap.observe(5_000, 0.5)  # a slower box: 100 µs a request
    assert cap.cpu_us_per_request() == pytest.approx(100, rel=0.01)
    assert cap.rps() == 10_000


def test_a_weaker_box_gets_a_smaller_share():
    strong, weak = Capacity(2), Capacity(1)
    strong.observe(20_000, 1.0)  # 50 µs, 2 cores: 40,000/s
    weak.observe(5_000, 0.5)  # 100 µs, 1 core: 10,000/s
    shares = slicing.shares({"strong": strong.rps(), "weak": weak.rps()})
    assert shares == {"strong": 0.8, "weak": 0.2}
    # like boxes measured a little apart report the same, and split evenly
    a, b = Capacity(1), Capacity(1)
    a.observe(10_000, 0.50)
    b.observe(10_000, 0.51)
    assert a.rps() == b.rps()


def test_usable_cores_take_the_engine_processes_and_the_cgroup_quota(tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert usable_cores(8, str(quota)) <= 1.5
    assert usable_cores(1, str(quota)) == 1.0
    quota.write_text("max 100000\n")
    assert usable_cores(1, str(quota)) == 1.0
    assert usable_cores(2, str(tmp_path / "none")) >= 1.0


def test_the_meter_charges_a_second_of_load_the_cpu_spent_since_the_mark():
    cap = Capacity(1)
    meter = CapacityMeter(cap)
    meter.mark()
    start = meter.cpu_seconds()
    while meter.cpu_seconds() - start < 0.1:  # a busy "second": this process's own CPU
        sum(range(10_000))
    meter.observe_second(1000)
    assert cap.cpu_us_per_request() >= 100.0  # ≥ 0.1 s over 1,000 requests
    meter.observe_second(1000)  # the next second starts at the last observation
    assert cap.cpu_us_per_request() >= 100.0
