"""When schedules fire (services/coordinator/firing.py): times, cron in zones, fire ids."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from schemas.errors import BadRequest
from schemas.schedules import Schedule
from services.coordinator import firing

BERLIN = ZoneInfo("Europe/Berlin")


def ts(*parts: int, tz=BERLIN) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()


def test_at_reads_iso_with_and_without_offset_unix_and_plus_durations():
    now = 1_000_000.0
    assert firing.parse_at("+30s", "UTC", now) == now + 30
    assert firing.parse_at("+2h", "UTC", now) == now + 7200
    assert firing.parse_at("+1m30s", "UTC", now) == now + 90
    assert firing.parse_at(1234.5, "UTC", now) == 1234.5
    assert firing.parse_at("2026-12-01T02:00:00", "Europe/Berlin") == ts(2026, 12, 1, 2)
    assert firing.parse_at("2026-12-01T01:00:00Z", "Europe/Berlin") == ts(2026, 12, 1, 2)
    assert firing.parse_at("2026-12-01T02:00:00+01:00", "UTC") == ts(2026, 12, 1, 2)


@pytest.mark.parametrize("bad,field", [("tomorrow", "at"), ("+soon", "at"), ("2026-13-01", "at")])
def test_a_bad_time_names_its_field(bad, field):
    with pytest.raises(BadRequest) as err:
        firing.parse_at(bad, "UTC")
    assert err.value.field == field


def test_bad_zone_and_bad_cron_are_refused():
    with pytest.raises(BadRequest) as err:
        firing.zone("Mars/Olympus")
    assert err.value.field == "tz"
    with pytest.raises(BadRequest) as err:
        firing.check_cron("61 * * * *", "UTC")
    assert err.value.field == "cron"


def test_cron_fires_in_its_zone_across_a_daylight_saving_change():
    s = Schedule(name="n", test="t", cron="0 2 * * *", tz="Europe/Berlin", created_at=0)
    # Berlin leaves summer time at 03:00 on 2026-10-25: 02:00 local is 00:00 UTC until then,
    # 01:00 UTC from the next day on
    fires = firing.next_fires(s, ts(2026, 10, 24, 12))
    assert fires[:3] == [ts(2026, 10, 25, 2), ts(2026, 10, 26, 2), ts(2026, 10, 27, 2)]
    assert [datetime.fromtimestamp(f, ZoneInfo("UTC")).hour for f in fires[:3]] == [0, 1, 1]
    assert len(fires) == 5


def test_the_latest_missed_fire_and_a_one_off():
    s = Schedule(name="n", test="t", cron="*/10 * * * *", tz="UTC", created_at=0)
    t = datetime(2026, 11, 30, 3, 27, 5, tzinfo=ZoneInfo("UTC")).timestamp()
    assert firing.latest_at_or_before(s, t) == datetime(2026, 11, 30, 3, 20, tzinfo=ZoneInfo("UTC")).timestamp()
    at = Schedule(name="n", test="t", at=100.0, created_at=0)
    assert firing.next_fires(at, 50.0) == [100.0]
    assert firing.next_after(at, 100.0) is None
    assert firing.latest_at_or_before(at, 150.0) == 100.0


def test_a_fire_has_one_run_id_and_key_on_every_coordinator():
    assert firing.fire_run_id("nightly", 1_800_000_000.0) == firing.fire_run_id("nightly", 1_800_000_000.0)
    assert firing.fire_run_id("nightly", 1_800_000_000.0) != firing.fire_run_id("weekly", 1_800_000_000.0)
    assert firing.fire_key("nightly", 1.2345) == "nightly.1234"
