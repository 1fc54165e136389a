"""A finished run's report as one self-contained HTML file (``surge run --html``,
``surge report RUN --html``, the report page's "HTML" button), the file Locust's
``--html`` and JMeter's dashboard give: something to attach to a ticket or a CI job
and open anywhere, offline.

No script and nothing fetched: inline CSS, and the charts are inline SVG drawn here from
the report's timeline and whole-run histogram. Every text from the report is escaped.
"""

from __future__ import annotations

import math
import time
from html import escape

from schemas.stats import Percentiles, Report, RequestTotals
from services.reports.distribution import COLUMNS, TABLE, count, distribution
from services.reports.hosts import bytes_rate, summarize

COLORS = ("#4c8dff", "#e0a458", "#3ecf8e", "#ff5d5d")
W, H, PAD_L, PAD_B, PAD_T = 920, 220, 64, 24, 12

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:28px 0 8px;text-transform:uppercase;
letter-spacing:.04em;color:#5a6478}.sub{color:#5a6478}table{border-collapse:collapse;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid #e3e6ec;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{font-size:12px;color:#5a6478;font-weight:600}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:700;color:#fff}
.pass{background:#1f9d63}.fail{background:#d64545}.bad{color:#d64545;font-weight:600}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin-top:16px}
.kpis div{border:1px solid #e3e6ec;border-radius:6px;padding:8px 10px}.kpis b{display:block;font-size:18px}
.kpis span{font-size:12px;color:#5a6478}svg text{font:11px system-ui,sans-serif;fill:#5a6478}
.legend span{margin-right:14px}.legend i{display:inline-block;width:14px;height:3px;margin-right:5px;
vertical-align:middle}ul{padding-left:18px}code{font-size:12px}
.limit{border:1px solid #e0a458;background:#fff6e8;border-radius:6px;padding:8px 12px;margin-top:12px}
"""


def _num(v: float | int | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.{digits}f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.2f}" if v < 10 else f"{v:,.1f}"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _table(head: list[str], rows: list[list[str]], bad_rows: set[int] = frozenset()) -> str:
    """Cells are HTML already (escape text before it gets here)."""
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for i, row in enumerate(rows):
        out.append(f'<tr{" class=bad" if i in bad_rows else ""}>' + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _chart(title: str, xs: list[int], series: list[tuple[str, list[float | None]]], unit: str,
           gaps: list[int] = ()) -> str:
    """Lines over the run's seconds; a None breaks its line (a second nobody reported)."""
    values = [v for _, ys in series for v in ys if v is not None]
    if not xs or not values:
        return f"<h2>{escape(title)}</h2><p class=sub>no data</p>"
    x0, x1 = xs[0], max(xs[-1], xs[0] + 1)
    top = _nice(max(values) * 1.05)
    plot_w, plot_h = W - PAD_L - 8, H - PAD_B - PAD_T

    def px(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return PAD_T + plot_h - y / top * plot_h

    parts = [f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{escape(title)}">']
    for t in gaps:  # a generator was lost around here
        parts.append(f'<rect x="{px(t):.1f}" y="{PAD_T}" width="{max(plot_w / (x1 - x0), 2):.1f}" '
                     f'height="{plot_h}" fill="#ff5d5d" opacity=".18"/>')
    for k in range(5):  # horizontal grid with its values
        y = top * k / 4
        parts.append(f'<line x1="{PAD_L}" x2="{W - 8}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e3e6ec"/>'
                     f'<text x="{PAD_L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_num(y, 0 if top > 20 else 2)}</text>')
    for x in sorted({x0, (x0 + x1) // 2, x1}):
        parts.append(f'<text x="{px(x):.1f}" y="{H - 6}" text-anchor="middle">{x}s</text>')
    for (label, ys), color in zip(series, COLORS):
        run: list[str] = []
        for x, y in zip(xs, ys):
            if y is None:
                if len(run) > 1:
                    parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(run)}"/>')
                run = []
            else:
                run.append(f"{px(x):.1f},{py(y):.1f}")
        if len(run) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(run)}"/>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{escape(label)}</span>'
                     for (label, _), c in zip(series, COLORS))
    return f"<h2>{escape(title)}</h2><div class=legend>{legend} <span class=sub>({escape(unit)})</span></div>{''.join(parts)}"


def _nice(v: float) -> float:
    """The axis top: the first of 1, 2, 2.5, 5 × 10^k at or above ``v``."""
    if v <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(v))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= v)


def _latency_cells(p: Percentiles | None) -> list[str]:
    return [_ms(p and getattr(p, field)) for _, field in COLUMNS]


def _request_row(name: str, t: RequestTotals) -> list[str]:
    kinds = ", ".join(f"{escape(k)} {v:,}" for k, v in sorted(t.error_kinds.items())) or "–"
    return [escape(name), _num(t.requests), _num(t.errors), kinds, _num(t.achieved_rps), _num(t.late),
            _num(t.dropped), *_latency_cells(t.latency_ms), _ms(t.service_time_ms and t.service_time_ms.p50),
            _ms(t.service_time_ms and t.service_time_ms.p99)]


def _distribution(encoded: str) -> list[list[str]]:
    """The table's rows: the percentiles the histogram resolves, the last one its max."""
    points = distribution(encoded, TABLE)
    total = count(encoded) if points else 0
    rows = [[f"{p.percentile:g}", _ms(p.value_ms), f"{int(total * (100 - p.percentile) / 100):,}"]
            for p in points]
    if rows:
        rows[-1][0] = f"{points[-1].percentile:g} (max)"
    return rows


def _hosts(r: Report) -> str:
    """The machines under the run: a table, each monitored host's CPU, the generators' CPU."""
    h, s = r.hosts, summarize(r.hosts)
    out = ["<h2>Hosts during the run</h2>", _table(
        ["host", "generators", "cpu mean %", "cpu peak %", "iowait peak %", "steal peak %",
         "mem peak %", "rx mean", "tx mean", "retrans/s peak", "tcp established peak"],
        [[escape(x.host), escape(", ".join(x.generators) or "–"), *(
            [_num(x.cpu_mean), _num(x.cpu_max), _num(x.iowait_max), _num(x.steal_max), _num(x.mem_max),
             bytes_rate(x.rx_mean_bps), bytes_rate(x.tx_mean_bps), _num(x.retrans_max_ps),
             _num(x.tcp_max.get("ESTABLISHED", 0))] if x.monitored else ["no monitor"] + [""] * 8)]
         for x in s.hosts])]
    xs = list(range(h.seconds))
    for x in h.hosts:
        if x.monitored:
            out.append(_chart(f"CPU of {x.host}", xs, [("busy", x.cpu_pct), ("iowait", x.iowait_pct),
                                                       ("steal", x.steal_pct)], "%"))
    if h.generators:
        out.append(_chart("Generators' own CPU, % of their cores", xs,
                          [(g.generator_id, [c / g.cores if c is not None else None for c in g.cpu_pct])
                           for g in h.generators], "%"))
        out.append(_table(["generator", "host", "cores", "mean %", "peak %", "saturated s", "the limit"],
                          [[escape(g.generator_id), escape(g.host), _num(g.cores), _num(g.cpu_mean_pct),
                            _num(g.peak_pct), _num(g.saturated_s), "yes" if g.limited else "no"]
                           for g in s.generators],
                          {i for i, g in enumerate(s.generators) if g.limited}))
    return "".join(out)


def _change(d) -> str:
    if d.change_pct is None:
        return "–" if d.value is None else _num(d.value, 3)
    return f"{_num(d.value, 3)} ({d.change_pct:+.1f} %)"


def _baseline(r: Report) -> str:
    b = r.baseline
    metrics = list(b.totals)
    rows = [["ALL", *(_change(b.totals[m]) for m in metrics)]]
    rows += [[escape(n), *(_change(d[m]) if m in d else "" for m in metrics)] for n, d in sorted(b.requests.items())]
    return (f"<h2 id=baseline>Against baseline run <code>{escape(b.run_id)}</code> of {escape(b.test)}</h2>"
            + _table(["request", *metrics], rows))


def render_html(r: Report) -> str:
    """The whole report as one HTML document."""
    tot = r.totals
    kpis = [("target", f"{_num(r.target_rps)} req/s" if r.model == "open" else f"closed model{f', {r.users} users' if r.users else ''}"),
            ("achieved", f"{_num(tot.achieved_rps)} req/s"), ("requests", _num(tot.requests)),
            ("error rate", f"{tot.error_rate * 100:.2f} %"), ("p50", f"{_ms(tot.latency_ms and tot.latency_ms.p50)} ms"),
            ("p99", f"{_ms(tot.latency_ms and tot.latency_ms.p99)} ms"), ("late", _num(tot.late)),
            ("dropped", _num(tot.dropped))]
    body = [
        f"<h1>{escape(r.plan_name)} <span class='verdict {r.verdict}'>{r.verdict.upper()}</span></h1>",
        f"<div class=sub>run <code>{escape(r.run_id)}</code> · {escape(r.state)} · {_when(r.started_at)} → "
        f"{_when(r.ended_at)} · {r.duration_s:,.1f} s · {escape(r.model)} model</div>",
        "<div class=kpis>" + "".join(f"<div><span>{escape(k)}</span><b>{v}</b></div>" for k, v in kpis) + "</div>",
    ]
    if r.hosts is not None and r.hosts.note:  # the verdict says who set the rate
        body.append(f"<p class=limit id=limit><b>Limit:</b> {escape(r.hosts.note)}</p>")
    if r.thresholds:
        body.append("<h2>Thresholds</h2>")
        body.append(_table(["threshold", "limit", "value", "result"],
                           [[escape(t.label), _num(t.limit, 3), _num(t.value, 3), "pass" if t.ok else "FAIL"]
                            for t in r.thresholds],
                           {i for i, t in enumerate(r.thresholds) if not t.ok}))
    if r.baseline is not None:  # a run of a catalogue test beside its baseline (docs/archive.md)
        body.append(_baseline(r))
    body.append("<h2>Requests · latency from the intended send time, ms</h2>")
    body.append(_table(
        ["request", "requests", "errors", "error kinds", "req/s", "late", "dropped",
         *(label for label, _ in COLUMNS), "service p50", "service p99"],
        [_request_row("ALL", tot)] + [_request_row(n, t) for n, t in sorted(r.requests.items())]))
    xs = [e.t for e in r.timeline]
    gaps = [e.t for e in r.timeline if e.gap]
    body.append(_chart("Throughput", xs, [("target", [e.target_rps for e in r.timeline]),
                                          ("achieved", [e.rps for e in r.timeline])], "req/s", gaps))
    body.append(_chart("Latency from the intended send time", xs,
                       [("p50", [e.p50_ms for e in r.timeline]), ("p99", [e.p99_ms for e in r.timeline])], "ms", gaps))
    dist = _distribution(r.latency_histogram)
    if dist:
        body.append("<h2>Latency distribution, whole run</h2>")
        body.append(_table(["percentile", "ms", "requests slower"], dist))
    if r.generators:
        body.append("<h2>Generators</h2>")
        body.append(_table(["generator", "requests", "errors", "target req/s", "achieved req/s", "late", "dropped", "seconds"],
                           [[escape(g), _num(t.requests), _num(t.errors), _num(t.target_rps), _num(t.achieved_rps),
                             _num(t.late), _num(t.dropped), _num(t.seconds)] for g, t in sorted(r.generators.items())]))
    if r.hosts is not None and (r.hosts.hosts or r.hosts.generators):
        body.append(_hosts(r))
    if r.events:  # "t=Ns ..." for every second's events
        body.append("<h2>Events</h2><ul>" + "".join(f"<li>{escape(e)}</li>" for e in r.events) + "</ul>")
    body.append(f"<p class=sub>Surge report · written {_when(time.time())}</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(r.plan_name)} · "
            f"{r.verdict.upper()} · Surge</title><meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
