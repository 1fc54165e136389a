"""services/reports: one distribution function for every view, the same latency columns in
the terminal and the HTML page, JUnit per threshold; and the report they read is whole
when the aggregate hands it over (verdict and model included, nothing patches it)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from rich.console import Console

from schemas.control import Segment
from services.common import histogram
from services.coordinator.aggregate import RunAggregate
from services.plan import loader
from services.reports import curves, distribution, junit, text
from services.reports.html import render_html
from tests.unit.test_reports_html import report

START = 1_700_000_000.0
PROFILE = [Segment(0.0, 10.0, 100.0, 100.0)]


def encoded(values_us) -> str:
    h = histogram.new()
    histogram.record_many(h, np.asarray(values_us, dtype=np.float64))
    return histogram.encode(h)


def test_distribution_stops_at_the_resolution_and_ends_at_the_max():
    enc = encoded(np.arange(1, 1001) * 1000)  # 1 .. 1000 ms, 1000 values
    points = distribution.distribution(enc, distribution.TABLE)
    assert [p.percentile for p in points] == [50.0, 75.0, 90.0, 95.0, 99.0, 99.9]
    assert points[0].value_ms == pytest.approx(500, rel=1e-2)
    assert points[-1].value_ms == pytest.approx(1000, rel=1e-2)  # the max, at 1/total
    curve = distribution.distribution(enc)  # the UI's curve: the same function
    assert curve[-1] == points[-1]
    assert all(a.percentile < b.percentile and a.value_ms <= b.value_ms for a, b in zip(curve, curve[1:]))
    assert distribution.count(enc) == 1000


@pytest.mark.parametrize("bad", ["", "not base64 at all"])
def test_no_data_is_no_points(bad):
    assert distribution.distribution(bad) == [] and distribution.count(bad) == 0
    assert curves.view(report(histogram=bad)).distribution == []


def test_terminal_and_html_show_the_same_latency_columns():
    console = Console(width=200, record=True)
    text.summary(console, report())
    shown = console.export_text()
    page = render_html(report())
    for label, _ in distribution.COLUMNS:
        assert f" {label} " in shown.replace("┃", " ").replace("│", " ")
        assert f"<th>{label}</th>" in page


def test_junit_has_a_case_per_threshold_and_a_failure_for_each_broken_one():
    xml = junit.junit(report())
    assert xml.count("<testcase") == 3 and xml.count("<failure") == 1
    assert 'failures="1"' in xml and "error_rate: value 0.003 exceeds limit 0.001" in xml


def _aggregate(**plan) -> RunAggregate:
    raw = {"name": "shop", "target": "http://127.0.0.1:8080", "duration": 10,
           "requests": [{"name": "home"}], **plan}
    return RunAggregate("r1", loader.from_obj(raw), START)


@pytest.mark.parametrize("state,aborted,verdict", [
    ("finished", False, "pass"), ("stopped", True, "fail"), ("failed", False, "fail"),
])
def test_the_aggregate_writes_the_verdict_once(state, aborted, verdict):
    agg = _aggregate(rate=100)  # no limits: a whole run would pass
    r = agg.report(state=state, ended_at=START + 10, profile_=PROFILE, duration_s=10.0, aborted=aborted)
    assert (r.state, r.verdict, r.model) == (state, verdict, "open")


def test_a_closed_model_report_says_so_and_how_many_users():
    agg = _aggregate(users=3)
    r = agg.report(state="finished", ended_at=START + 10, profile_=PROFILE, duration_s=10.0)
    assert (r.model, r.users) == ("closed", 3)
    ramp = _aggregate(duration=None, user_stages=[{"duration": 2, "target": 10}, {"duration": 2, "target": 0}])
    assert ramp.report(state="finished", ended_at=START + 4, profile_=PROFILE, duration_s=4.0).users == 10
    assert _aggregate(rate=100).report(state="finished", ended_at=START + 10, profile_=PROFILE,
                                       duration_s=10.0).users == 0
    import io

    from rich.console import Console

    from services.reports.text import summary

    out = io.StringIO()
    summary(Console(file=out, width=120), r)
    assert "closed model (3 virtual users): reached" in out.getvalue()


def test_the_latency_histogram_keeps_its_json_key_and_its_old_name_reads():
    r = report()
    data = msgspec.json.decode(msgspec.json.encode(r))
    assert data["histogram"] == r.latency_histogram != "" and "latency_histogram" not in data
    assert r.histogram == r.latency_histogram  # the old attribute name still reads
    assert msgspec.json.decode(msgspec.json.encode(r), type=type(r)) == r


def test_ls_and_generators_keep_ids_whole_in_an_80_column_terminal():
    """The run and generator ids are what `surge report RUN` / `stop --generator` take."""
    import io

    from schemas.control import Heartbeat, RunRecord

    plan = loader.loads("name: a-plan-with-a-long-name\ntarget: http://127.0.0.1:8080\n"
                        "rate: 10\nduration: 5s\nrequests: [{name: home, path: /}]\n")
    run_id = "20261130-041028-535c45"
    runs = [RunRecord(run_id=run_id, plan=plan, state="finished", created_at=START,
                      start_at=START, end_at=START + 5, profile=PROFILE, epoch=1,
                      generators={}, target_rps=10, verdict="pass", requests=50, p99_ms=1.5)]
    beats = [Heartbeat(id="vm-gen-12", host="vm", pid=1, cores=2, version="0.1.0",
                       started_at=START, sent_at=START, capacity_rps=20000, state="running",
                       run_id=run_id, labels={"zone": "eu-1"})]
    for draw in (lambda c: text.runs_table(c, runs), lambda c: text.generators_table(c, beats)):
        out = io.StringIO()
        draw(Console(file=out, width=80))
        assert run_id in out.getvalue(), out.getvalue()
    assert "vm-gen-12" in out.getvalue(), out.getvalue()


def test_the_live_line_of_a_closed_plan_shows_its_users_not_a_target_of_0():
    from schemas.stats import LiveSnapshot
    from services.reports.text import live_line

    def second(seq: int) -> LiveSnapshot:
        return LiveSnapshot(run_id="r", plan_name="p", state="running", seq=seq, at=START + seq,
                            elapsed_s=seq + 1.0, duration_s=4.0, target_rps=0.0, rps=90.0, requests=90,
                            errors=0, error_rate=0.0, late=0, dropped=0, in_flight=3, p50_ms=10.0,
                            p90_ms=12.0, p99_ms=20.0, max_ms=30.0, total_requests=90, total_errors=0,
                            per_request={}, generators={})

    ramp = loader.from_obj({"name": "p", "target": "http://127.0.0.1:8080", "requests": [{"name": "a"}],
                            "user_stages": [{"duration": 2, "target": 10}, {"duration": 2, "target": 0}]})
    fixed = loader.from_obj({"name": "p", "target": "http://127.0.0.1:8080", "requests": [{"name": "a"}],
                             "users": 3, "duration": 4})
    assert live_line(second(0), ramp).startswith("t=   1s  users         2    achieved     90.0/s")
    assert live_line(second(3), fixed).startswith("t=   4s  users         3    achieved")  # its last second too
    assert live_line(second(0)).startswith("t=   1s  target      0.0/s  achieved     90.0/s")
