"""The HTML report renders any report the coordinator can write: text from plans and
targets is escaped, an empty run has no numbers but still renders, gaps break lines."""

from __future__ import annotations

from html.parser import HTMLParser

import msgspec

from schemas.stats import Report
from services.reports.html import render_html
from services.common import histogram

VOID = {"meta", "br", "img", "input", "link", "hr"}
SVG_EMPTY = {"polyline", "line", "rect"}


class Balanced(HTMLParser):
    """Collects tags and fails on one closed out of order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.texts.append(data)


def parsed(html: str) -> Balanced:
    p = Balanced()
    p.feed(html)
    p.close()
    assert p.stack == [], p.stack
    return p


def totals(n: int, errors: dict[str, int] | None = None, p99: float | None = 12.5) -> dict:
    lat = None if p99 is None else {"min": 0.1, "mean": 1.0, "p50": 0.9, "p90": 2.0, "p95": 3.0, "p99": p99,
                                    "p999": 20.0, "max": 31.0}
    errs = errors or {}
    return {"requests": n, "errors": sum(errs.values()), "error_rate": sum(errs.values()) / max(n, 1),
            "error_kinds": errs, "achieved_rps": n / 10, "late": 0, "dropped": 0, "latency_ms": lat,
            "service_time_ms": lat}


def report(**over) -> Report:
    h = histogram.new()
    for v in (900, 1000, 1100, 25_000):
        h.record_value(v)
    base = {
        "run_id": "20261123-170000-abc123", "plan_name": "checkout", "state": "completed",
        "started_at": 1_795_000_000.0, "ended_at": 1_795_000_010.0, "duration_s": 10.0, "target_rps": 100.0,
        "profile": [{"start_s": 0, "end_s": 10, "start_rps": 100, "end_rps": 100}],
        "totals": totals(1000, {"status": 3}), "requests": {"home": totals(700), "order": totals(300, {"status": 3})},
        "generators": {"gen-1": {"requests": 1000, "errors": 3, "target_rps": 100, "achieved_rps": 100, "late": 0,
                                 "dropped": 0, "seconds": 10}},
        "timeline": [{"t": t, "at": 1_795_000_000.0 + t, "requests": 100, "errors": 0, "rps": 100.0,
                      "target_rps": 100.0, "p50_ms": 0.9, "p99_ms": None if t == 4 else 12.0, "generators": 1,
                      "gap": t == 4, "events": []} for t in range(10)],
        "thresholds": [{"name": "p99_ms", "limit": 250.0, "value": 12.5, "ok": True},
                       {"name": "error_rate", "limit": 0.001, "value": 0.003, "ok": False},
                       {"name": "p95_ms", "limit": 40.0, "value": 31.0, "ok": True, "request": "order"}],
        "verdict": "fail", "histogram": histogram.encode(h), "service_histogram": "",
        "events": ["t=4s generator gen-2 lost"],
    }
    base.update(over)
    return msgspec.convert(base, Report)


def test_a_report_renders_every_section_balanced():
    html = render_html(report())
    p = parsed(html)
    text = " ".join(p.texts)
    assert html.startswith("<!doctype html>") and "<script" not in html
    for want in ("checkout", "FAIL", "error_rate", "order: p95_ms", "home", "order", "status 3", "gen-1",
                 "t=4s generator gen-2 lost",
                 "Latency distribution"):
        assert want in text, want
    assert p.seen.count("svg") == 2
    # p99's line breaks where nobody reported (t=4): target 1, achieved 1, p50 1, p99 2
    assert p.seen.count("polyline") == 5
    assert p.seen.count("rect") == 2  # the gap, marked on both charts


def test_text_from_the_plan_and_the_target_is_escaped():
    evil = "<script>alert(1)</script>"
    html = render_html(report(plan_name=evil, requests={evil: totals(5, {evil: 1})}, events=[evil]))
    assert "<script>" not in html
    assert html.count("&lt;script&gt;") >= 4  # title, heading, request row, error kind, event
    parsed(html)


def test_an_empty_run_renders_without_numbers():
    html = render_html(report(totals=totals(0, p99=None), requests={}, generators={}, timeline=[],
                              thresholds=[], histogram="", events=[], verdict="pass"))
    text = " ".join(parsed(html).texts)
    assert "PASS" in text and "no data" in text and "Latency distribution" not in text
