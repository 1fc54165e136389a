"""Quota limits (services/coordinator/quotas.py): which limits a plan is over, and hours."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.quotas import Quota
from services.coordinator.quotas import in_hours, violations
from tests import plans


def at(hour: int, minute: int = 0, tz: str = "Europe/Berlin") -> float:
    return datetime(2026, 12, 1, hour, minute, tzinfo=ZoneInfo(tz)).timestamp()


def test_allowed_hours_in_a_zone_and_across_midnight():
    assert in_hours("08:00-18:00", "Europe/Berlin", at(8))
    assert not in_hours("08:00-18:00", "Europe/Berlin", at(18))
    assert in_hours("22:00-06:00", "Europe/Berlin", at(23, 30))
    assert in_hours("22:00-06:00", "Europe/Berlin", at(5, 59))
    assert not in_hours("22:00-06:00", "Europe/Berlin", at(12))
    assert not in_hours("08:00-18:00", "UTC", at(8))  # 08:00 in Berlin is 07:00 UTC


def test_each_limit_a_plan_is_over_is_named():
    q = Quota(max_rate=50, max_duration_s=30, max_generators=2, allowed_hours="22:00-06:00",
              tz="Europe/Berlin")
    reasons = violations(plans.plan(rate=100, duration=60, generators=3), q, at(12))
    assert reasons == ["rate 100/s above the limit of 50/s", "duration 60s above the limit of 30s",
                       "3 generators above the limit of 2",
                       "outside the allowed hours 22:00-06:00 (Europe/Berlin)"]
    assert violations(plans.plan(rate=50, duration=30), q, at(23)) == []


def test_stages_are_judged_by_their_peak():
    staged = plans.plan(rate=None, duration=None, stages=[{"duration": 10, "target": 40}, {"duration": 10, "target": 80}])
    assert violations(staged, Quota(max_rate=60), 0.0) == ["rate 80/s above the limit of 60/s"]
