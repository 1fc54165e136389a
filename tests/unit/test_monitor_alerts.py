"""services.monitor.alerts: the rule syntax and firing/resolving with "for N seconds"."""

from __future__ import annotations

import pytest

from schemas.errors import BadRequest
from schemas.host import HostSample
from services.monitor.alerts import Alerts, Rule, parse_rules
from services.monitor.config import DEFAULT_ALERTS


def sample(ts: float, cpu: float = 10.0, disk_free: float | None = 50.0) -> HostSample:
    return HostSample(host="h1", ts=ts, interval_s=1.0, cores=2, cpu_pct=cpu,
                      cpu_per_core=[cpu, cpu], iowait_pct=0.0, load1=0.1, load5=0.1, load15=0.1,
                      mem_total_bytes=100, mem_used_bytes=10, mem_pct=10.0, swap_pct=0.0,
                      disk_free_pct=disk_free)


def test_default_rules():
    assert parse_rules(DEFAULT_ALERTS) == [
        Rule(name="cpu_high", metric="cpu_pct", op=">", threshold=90.0, for_s=30.0),
        Rule(name="disk_low", metric="disk_free_pct", op="<", threshold=10.0, for_s=0.0),
    ]


def test_rule_syntax_names_units_and_separators():
    rules = parse_rules(" load1>=8 for 1m; mem=mem_pct > 95.5 for 500ms,, iowait_pct<=-1 for 2h")
    assert [(r.name, r.metric, r.op, r.threshold, r.for_s) for r in rules] == [
        ("load1_high", "load1", ">=", 8.0, 60.0),
        ("mem", "mem_pct", ">", 95.5, 0.5),
        ("iowait_pct_low", "iowait_pct", "<=", -1.0, 7200.0),
    ]
    assert parse_rules("") == []


@pytest.mark.parametrize("text", ["cpu_pct>>9", "cpu_pct>", "nope>1", "cpu_pct>1 for x",
                                  "a=cpu_pct>1,a=mem_pct>1", "host>1"])
def test_bad_rules_are_rejected_with_the_setting_named(text):
    with pytest.raises(BadRequest) as err:
        parse_rules(text)
    assert err.value.field == "SURGE_ALERTS"


def test_fires_only_after_holding_for_the_whole_period_then_resolves():
    alerts = Alerts(parse_rules("cpu_high=cpu_pct>90 for 30s"))
    assert alerts.observe(sample(0, cpu=95)) == []
    assert alerts.observe(sample(29, cpu=99)) == []
    [fired] = alerts.observe(sample(30, cpu=97))
    assert (fired.name, fired.state, fired.value, fired.threshold, fired.ts) == (
        "cpu_high", "firing", 97.0, 90.0, 30)
    assert "cpu_pct" in fired.message and "h1" in fired.message
    assert alerts.observe(sample(31, cpu=99)) == []  # once, not every sample
    assert alerts.firing() == ["cpu_high"]
    [resolved] = alerts.observe(sample(32, cpu=50))
    assert (resolved.state, resolved.value) == ("resolved", 50.0)
    assert alerts.firing() == []


def test_a_break_restarts_the_period():
    alerts = Alerts(parse_rules("cpu_pct>90 for 10s"))
    alerts.observe(sample(0, cpu=95))
    assert alerts.observe(sample(5, cpu=10)) == []  # broken: nothing was firing
    assert alerts.observe(sample(12, cpu=95)) == []
    assert alerts.observe(sample(21, cpu=95)) == []
    assert [a.state for a in alerts.observe(sample(22, cpu=95))] == ["firing"]


def test_immediate_rule_and_missing_values_change_nothing():
    alerts = Alerts(parse_rules("disk_low=disk_free_pct<10"))
    assert [a.state for a in alerts.observe(sample(0, disk_free=5.0))] == ["firing"]
    assert alerts.observe(sample(1, disk_free=None)) == []
    assert [a.state for a in alerts.observe(sample(2, disk_free=40.0))] == ["resolved"]
