"""The hosts section in every rendering: terminal, HTML, the compare page's data."""

from __future__ import annotations

import msgspec
from rich.console import Console

from schemas.host import GeneratorCpu, HostsReport, HostTimeline
from services.reports import curves, junit, text
from services.reports.hosts import bytes_rate, summarize
from services.reports.html import render_html
from tests.unit.test_reports_html import parsed, report

NOTE = ("the generator, not the target, set this rate: gen-1 was saturated in 3 of 4 s "
        "(its 1 core or its host above 90 %; its own peak 99 %)")


def hosts() -> HostsReport:
    return HostsReport(
        seconds=4,
        hosts=[
            HostTimeline(host="box<1>", monitored=True, generators=["gen-1"], cores=2,
                         cpu_pct=[50.0, 100.0, None, 90.0], iowait_pct=[1.0, 2.0, None, 3.0],
                         steal_pct=[0.0, 4.5, None, 0.0], mem_pct=[40.0, 41.0, None, 42.0],
                         mem_used_bytes=[1, 2, None, 3], net_rx_bps=[1000.0, 3000.0, None, 2000.0],
                         net_tx_bps=[0.0, 0.0, None, 0.0],
                         tcp={"ESTABLISHED": [10, 70, None, 64], "TIME_WAIT": [0, 3, None, 1]},
                         tcp_retrans_ps=[0.0, 1.5, None, 0.0]),
            HostTimeline(host="bare", monitored=False, generators=["gen-2"]),
        ],
        generators=[
            GeneratorCpu(generator_id="gen-1", host="box<1>", cores=1,
                         cpu_pct=[60.0, 99.0, 98.0, 97.0], peak_pct=99.0, saturated_s=3,
                         limited=True),
            GeneratorCpu(generator_id="gen-2", host="bare", cores=2,
                         cpu_pct=[20.0, 40.0, None, 40.0], peak_pct=20.0, saturated_s=0,
                         limited=False),
        ],
        limited_by=["gen-1"], note=NOTE,
    )


def test_summary_lines_per_host_and_generator():
    s = summarize(hosts())
    box, bare = s.hosts
    assert (box.cpu_mean, box.cpu_max, box.steal_max, box.seconds) == (80.0, 100.0, 4.5, 3)
    assert box.rx_mean_bps == 2000.0 and box.tcp_max == {"ESTABLISHED": 70, "TIME_WAIT": 3}
    assert not bare.monitored and bare.cpu_mean is None
    g1, g2 = s.generators
    assert (g1.cpu_mean_pct, g1.limited) == (88.5, True)
    assert g2.cpu_mean_pct == 16.7  # 100/6: % of its two cores
    assert bytes_rate(2_500_000) == "2.5 MB/s" and bytes_rate(None) == "–"


def test_terminal_says_who_set_the_rate_and_shows_the_machines():
    console = Console(width=220, record=True)
    text.summary(console, msgspec.structs.replace(report(), hosts=hosts()))
    shown = console.export_text()
    assert "limit: the generator, not the target, set this rate: gen-1" in shown
    assert "hosts during the run" in shown and "box<1>" in shown and "no monitor" in shown
    row = next(line for line in shown.splitlines() if line.startswith("│ gen-1 ") and "box<1>" in line)
    assert "88.5" in row and "99" in row and "yes" in row


def test_html_has_the_note_in_the_verdict_and_a_hosts_section_escaped():
    page = render_html(msgspec.structs.replace(report(), hosts=hosts()))
    parsed(page)
    head, _, rest = page.partition("<p class=limit id=limit>")
    assert rest and "<h2>Requests" not in head.split("<h1>")[0]
    assert rest.index("the generator, not the target, set this rate") < rest.index("<h2>Requests")
    assert "Hosts during the run" in page and "CPU of box&lt;1&gt;" in page
    assert "box<1>" not in page
    assert "Generators&#x27; own CPU, % of their cores" in page or "Generators' own CPU" in page


def test_no_hosts_section_no_note():
    page = render_html(report())
    assert "Hosts during the run" not in page and "class=limit" not in page


def test_compare_carries_each_runs_hosts_summary():
    c = curves.compare([msgspec.structs.replace(report(), hosts=hosts()), report()])
    first, second = c.runs
    assert first.hosts is not None and first.hosts.limited_by == ["gen-1"]
    assert first.hosts.note == NOTE and second.hosts is None


def test_junit_carries_the_limit_note():
    xml = junit.junit(msgspec.structs.replace(report(), hosts=hosts()))
    assert "<system-err>the generator, not the target, set this rate: gen-1" in xml
    assert "system-err" not in junit.junit(report())
