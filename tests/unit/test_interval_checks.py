"""What the stats intake and the registry refuse (services/coordinator)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.control import Heartbeat
from schemas.stats import IntervalStats, RequestInterval
from services.coordinator.aggregate import BadInterval, check_interval
from services.coordinator.registry import Registry


def interval(**over) -> IntervalStats:
    base = dict(run_id="r1", generator_id="g1", epoch=1, seq=2, target=10.0, sent=10,
                in_flight=0, requests={"home": RequestInterval(count=10, errors={"status": 1})})
    base.update(over)
    return IntervalStats(**base)


def test_a_members_plausible_interval_passes():
    check_interval(interval(), {"g1"}.__contains__, max_seq=10)


@pytest.mark.parametrize("over,field", [
    ({"generator_id": "intruder"}, "generator_id"),
    ({"seq": 11}, "seq"),
    ({"seq": -1}, "seq"),
    ({"target": float("nan")}, "target"),
    ({"sent": -5}, "sent"),
    ({"requests": {"home": RequestInterval(count=-1)}}, "requests.home"),
    ({"requests": {"home": RequestInterval(count=10**9)}}, "requests.home"),
    ({"requests": {"home": RequestInterval(count=1, errors={"status": 2})}}, "requests.home"),
])
def test_implausible_intervals_are_refused_naming_the_field(over, field):
    with pytest.raises(BadInterval) as exc:
        check_interval(interval(**over), {"g1"}.__contains__, max_seq=10)
    assert exc.value.field == field


def beat(**over) -> bytes:
    base = dict(id="g1", host="h", pid=1, cores=1, version="x", started_at=0.0, sent_at=0.0,
                capacity_rps=100.0)
    base.update(over)
    return msgspec.json.encode(Heartbeat(**base))


def test_registry_ignores_heartbeats_that_lie_about_themselves():
    reg = Registry(dead_after_s=2.0)
    reg.update("g2", beat())  # id is not the key
    reg.update("g1", beat(capacity_rps=-1.0))
    reg.update("g1", beat(capacity_rps=float("inf")))
    reg.update("g1", b"\xff\xfe not json")
    reg.update("g1", b'{"id": "\xc3\x28"}')  # invalid UTF-8 inside a string
    assert reg.alive() == {}
    reg.update("g1", beat())
    assert list(reg.alive()) == ["g1"]


def test_a_watch_restart_never_ages_a_known_generator():
    reg = Registry(dead_after_s=2.0)
    reg.update("g1", beat(sent_at=1e9))
    reg.update("g1", beat(sent_at=0.0), replay=True)  # an old value replayed
    assert reg.is_alive("g1")
