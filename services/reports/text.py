"""Showing runs to people in a terminal: live lines, summary tables, runs and generators.
Reads; never measures."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from schemas.control import Heartbeat, RunRecord
from schemas.plan import Plan
from schemas.stats import LiveSnapshot, Report
from services.plan.profile import users_at
from services.reports.distribution import COLUMNS
from services.reports.hosts import bytes_rate, summarize
from services.common import labels


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def live_line(s: LiveSnapshot, plan: Plan | None = None) -> str:
    """One second of a run for the terminal; a closed-model ``plan`` shows its users (in
    the middle of the second, ``profile.users_at``) where an open one shows its target."""
    behind = [g for g, v in s.generators.items() if v.behind]
    lost = [g for g, v in s.generators.items() if v.lost]
    gens = " ".join(f"{g}:{v.rps:.0f}/{v.target_rps:.0f}" for g, v in s.generators.items() if not v.lost)
    if plan is not None and plan.model == "closed":
        load = f"users  {int(users_at(plan, s.seq + 0.5) + 1e-9):>8}  "
    else:
        load = f"target {s.target_rps:>8.1f}/s"
    line = (
        f"t={s.seq + 1:>4}s  {load}  achieved {s.rps:>8.1f}/s  "
        f"err {s.errors:>4}  p50 {_ms(s.p50_ms):>7}ms  p99 {_ms(s.p99_ms):>7}ms  "
        f"total {s.total_requests}  [{gens}]"
    )
    if s.late or s.dropped:
        line += f"  late {s.late} dropped {s.dropped}"
    if behind:
        line += f"  BEHIND: {','.join(behind)}"
    if lost:
        line += f"  LOST: {','.join(lost)}"
    for e in s.events:
        line += f"\n        ! {e}"
    return line


def summary(console: Console, r: Report) -> None:
    colour = "green" if r.verdict == "pass" else "red"
    console.print(
        f"\n[bold]{r.plan_name}[/] run [cyan]{r.run_id}[/] {r.state} in {r.duration_s:.1f}s — "
        f"verdict [bold {colour}]{r.verdict.upper()}[/]"
    )
    if r.hosts is not None and r.hosts.note:  # part of the verdict: who set the rate
        console.print(f"[bold yellow]limit:[/] {r.hosts.note}")
    if r.model == "closed":  # virtual users looped: the rate is an outcome, not a target
        users = f"{r.users} virtual users" if r.users else "virtual users"
        console.print(f"closed model ({users}): reached {r.totals.achieved_rps:.1f} requests/s")
    t = Table(title="requests (latency from intended send time, ms)", title_justify="left")
    for col in ("name", "requests", "errors", "rps", "late", "dropped", *(label for label, _ in COLUMNS)):
        t.add_column(col, justify="left" if col == "name" else "right")
    rows = [("ALL", r.totals)] + list(r.requests.items())
    for name, tot in rows:
        lat = tot.latency_ms
        t.add_row(
            name, str(tot.requests), str(tot.errors), f"{tot.achieved_rps:.1f}", str(tot.late),
            str(tot.dropped), *(_ms(lat and getattr(lat, field)) for _, field in COLUMNS),
        )
    console.print(t)
    g = Table(title="generators", title_justify="left")
    for col in ("id", "requests", "target rps", "achieved rps", "late", "dropped"):
        g.add_column(col, justify="left" if col == "id" else "right")
    for gid, tot in r.generators.items():
        g.add_row(gid, str(tot.requests), f"{tot.target_rps:.1f}", f"{tot.achieved_rps:.1f}",
                  str(tot.late), str(tot.dropped))
    console.print(g)
    if r.thresholds:
        th = Table(title="thresholds", title_justify="left")
        for col in ("threshold", "limit", "value", "result"):
            th.add_column(col)
        for res in r.thresholds:
            value = "-" if res.value is None else f"{res.value:.4g}"
            result = "[green]ok[/]" if res.ok else "[red]FAILED[/]" + (f" {res.reason}" if res.reason else "")
            th.add_row(res.label, f"{res.limit:g}", value, result)
        console.print(th)
    if r.hosts is not None and (r.hosts.hosts or r.hosts.generators):
        hosts_tables(console, r)
    if r.baseline is not None:
        baseline_table(console, r)
    for e in r.events:
        console.print(f"  event: {e}")


def _v(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:g}{unit}"


def hosts_tables(console: Console, r: Report) -> None:
    """The machines under the run (the report's hosts section, docs/monitor.md)."""
    s = summarize(r.hosts)
    t = Table(title="hosts during the run (CPU %, peak unless said)", title_justify="left")
    for col in ("host", "generators", "cpu mean", "cpu", "iowait", "steal", "mem", "rx mean",
                "tx mean", "retrans/s", "tcp estab", "time_wait"):
        t.add_column(col, justify="left" if col in ("host", "generators") else "right")
    for h in s.hosts:
        if not h.monitored:
            t.add_row(h.host, ", ".join(h.generators), "no monitor", *[""] * 9)
            continue
        t.add_row(h.host, ", ".join(h.generators) or "-", _v(h.cpu_mean), _v(h.cpu_max),
                  _v(h.iowait_max), _v(h.steal_max), _v(h.mem_max), bytes_rate(h.rx_mean_bps),
                  bytes_rate(h.tx_mean_bps), _v(h.retrans_max_ps),
                  str(h.tcp_max.get("ESTABLISHED", 0)), str(h.tcp_max.get("TIME_WAIT", 0)))
    console.print(t)
    g = Table(title="generator CPU (% of its cores)", title_justify="left")
    for col in ("generator", "host", "cores", "mean", "peak", "saturated s", "the limit"):
        g.add_column(col, justify="left" if col in ("generator", "host") else "right")
    for x in s.generators:
        g.add_row(x.generator_id, x.host, str(x.cores), _v(x.cpu_mean_pct), _v(x.peak_pct),
                  str(x.saturated_s), "[bold red]yes[/]" if x.limited else "no")
    console.print(g)


def _change(d) -> str:
    if d.change_pct is None:
        return "-" if d.value is None else f"{d.value:.4g}"
    return f"{d.value:.4g} ({d.change_pct:+.1f}%)"


def baseline_table(console: Console, r: Report) -> None:
    """This run beside its test's baseline run (docs/archive.md)."""
    b = r.baseline
    metrics = list(b.totals)
    t = Table(title=f"against baseline run {b.run_id} of {b.test}", title_justify="left")
    t.add_column("name")
    for m in metrics:
        t.add_column(m, justify="right")
    t.add_row("ALL", *(_change(b.totals[m]) for m in metrics))
    for name, deltas in b.requests.items():
        t.add_row(name, *(_change(deltas[m]) if m in deltas else "" for m in metrics))
    console.print(t)


def _whole(values) -> dict:
    """Column options that keep an identifier whole (users copy it into the next command),
    however narrow the terminal: the other columns wrap instead."""
    return {"no_wrap": True, "min_width": max((len(v) for v in values), default=0)}


def runs_table(console: Console, runs: list[RunRecord]) -> None:
    t = Table()
    for col in ("run", "plan", "state", "verdict", "started", "target rps", "requests", "errors", "p99 ms"):
        t.add_column(col, **(_whole([r.run_id for r in runs]) if col == "run" else {}))
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.start_at))
        t.add_row(r.run_id, r.plan.name, r.state, r.verdict or "-", started, f"{r.target_rps:g}",
                  str(r.requests), str(r.errors), _ms(r.p99_ms))
    console.print(t)


def generators_table(console: Console, beats: list[Heartbeat]) -> None:
    t = Table()
    ids = {"id": [b.id for b in beats], "run": [b.run_id or "-" for b in beats]}
    for col in ("id", "host", "labels", "cores", "state", "run", "target rps", "achieved rps",
                "cpu %", "capacity rps", "last beat"):
        t.add_column(col, **(_whole(ids[col]) if col in ids else {}))
    now = time.time()
    for b in beats:
        t.add_row(b.id, b.host, labels.show(b.labels) or "-", str(b.cores), b.state, b.run_id or "-",
                  f"{b.target_rps:g}", f"{b.achieved_rps:g}", f"{b.cpu_percent:.0f}",
                  f"{b.capacity_rps:.0f}", f"{now - b.sent_at:.1f}s ago")
    console.print(t)
