"""The table ``make bench`` prints: one row per client and per open-loop rate, read from the results.

It reads the dict ``bench/__main__.py`` writes as JSON and never feeds back into it
(``ratio`` is shared: the JSON's ``ratio_*`` keys are the table's "vs" columns).
"""

from __future__ import annotations


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def part(r: dict, label: str, line) -> str:
    """One part of the bench's line: ``line(r)`` from its figures, or ``label: error`` when
    that part failed (its dict then holds only the error)."""
    return f"{label}: {r['error']}" if "error" in r else line(r)


def rounds_lines(res: dict) -> list[str]:
    """The alternating rounds the closed-loop rows and the fixed-rate open model's CPU are
    the medians of, round by round, each round's ratios beside them."""
    peers = res["peers"]
    sides = [peers.get(k, {}).get("rounds") or [] for k in ("wrk", "surge_closed", "bare")]
    opens = res.get("cpu_at_20k", {}).get("rounds") or []
    n = max(map(len, [*sides, opens]))
    if not n:
        return []

    def at(rows: list, k: int) -> dict:
        return rows[k] if k < len(rows) and "error" not in rows[k] else {}

    lines = [f"  alternating rounds ({n} × {fmt(res.get('seconds_per_round'))} s; the rows above are their"
             f" medians, and so are the ratios):",
             f"  {'round':<7}{'wrk req/s':>11}{'Surge req/s':>13}{'Surge/wrk':>11}{'bare/wrk':>10}"
             f"{'wrk µs':>9}{'Surge µs':>10}{'open ' + fmt(res.get('cpu_at_20k', {}).get('rate'), 0) + ' µs':>15}"
             f"{'open/closed':>13}"]
    for k in range(n):
        w, s, b, o = at(sides[0], k), at(sides[1], k), at(sides[2], k), at(opens, k)
        lines.append(f"  {k + 1:<7}{fmt(w.get('rps'), 0):>11}{fmt(s.get('rps'), 0):>13}"
                     f"{fmt(ratio(s.get('rps'), w.get('rps')), 2):>11}{fmt(ratio(b.get('rps'), w.get('rps')), 2):>10}"
                     f"{fmt(w.get('cpu_us_per_req')):>9}{fmt(s.get('cpu_us_per_req')):>10}"
                     f"{fmt(o.get('cpu_us_per_req')):>15}"
                     f"{fmt(ratio(o.get('cpu_us_per_req'), s.get('cpu_us_per_req')), 2):>13}")
    return lines


def table(res: dict) -> str:
    lines = [f"{'client':<34}{'req/s':>11}{'CPU µs/req':>12}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'vs wrk':>8}{'vs Locust':>10}{'nginx CPU%':>11}{'client core%':>13}{'1-core est.':>12}"]
    wrk, locust = res["peers"].get("wrk", {}), res["peers"].get("locust", {})
    rows = [("wrk (1 thread)", wrk), ("Surge engine, closed loop", res["peers"].get("surge_closed", {})),
            ("bare uvloop+httptools protocol", res["peers"].get("bare", {})),
            ("Locust FastHttpUser", locust)]
    for name, r in rows:
        if "error" in r:
            lines.append(f"{name:<34}  {r['error'][:90]}")
            continue
        lines.append(f"{name:<34}{fmt(r.get('rps'), 0):>11}{fmt(r.get('cpu_us_per_req')):>12}"
                     f"{fmt(r.get('p50_ms'), 2):>9}{fmt(r.get('p99_ms'), 2):>9}"
                     f"{fmt(ratio(r.get('rps'), wrk.get('rps')), 2):>8}"
                     f"{fmt(ratio(r.get('rps'), locust.get('rps')), 1):>10}"
                     f"{fmt(r.get('server_cpu_pct'), 0):>11}"
                     f"{fmt(100 * r['cpu_share'] if r.get('cpu_share') else None, 0):>13}"
                     f"{fmt(1e6 / r['cpu_us_per_req'] if r.get('cpu_us_per_req') else None, 0):>12}")
    lines.append("  nginx CPU% near 100: the server is the limit. client core% well under 100 with nginx"
                 " idle: the core was shared (other load); 1-core est. = 1e6 / CPU µs per request,"
                 " what the client could do with a whole core and an infinitely fast server.")
    lines.extend(rounds_lines(res))
    spans = [f"{name} {min(secs):,}-{max(secs):,}" for name, key in (("wrk", "wrk"), ("Surge", "surge_closed"))
             if (secs := res["peers"].get(key, {}).get("per_second"))]
    if spans:
        lines.append(f"  closed loop second by second: {', '.join(spans)} req/s. The closed-loop maximum is"
                     " a mean: an open rate above a run's slowest second cannot hold in that second.")
    lines.append("")
    lines.append(f"{'open loop: target req/s':<26}{'achieved':>10}{'worst 1-s err %':>17}"
                 f"{'steady worst %':>16}{'nginx-counted %':>17}{'late':>8}{'dropped':>9}{'p50 ms':>9}"
                 f"{'p99 ms':>9}{'CPU µs/req':>12}")
    wrk2_rows = res.get("open_loop_wrk2") or [None] * len(res["open_loop"])  # one per rate, same order
    for r, w in zip(res["open_loop"], wrk2_rows):
        if "error" in r:
            lines.append(f"{fmt(r.get('target_rps'), 0):<26}  {r['error'][:90]}")
        else:
            lines.append(f"{fmt(r['target_rps'], 0):<26}{fmt(r['achieved_rps'], 0):>10}"
                         f"{fmt(r['worst_second_error_pct'], 2):>17}{fmt(r['worst_steady_second_error_pct'], 2):>16}"
                         f"{fmt(r.get('server_worst_second_error_pct'), 2):>17}{fmt(r['late']):>8}"
                         f"{fmt(r['dropped']):>9}{fmt(r['p50_ms'], 2):>9}{fmt(r['p99_ms'], 2):>9}"
                         f"{fmt(r['cpu_us_per_req']):>12}")
        if w is not None and "error" not in w:
            lines.append(f"{'  wrk2, same rate':<26}{fmt(w['achieved_rps'], 0):>10}{'':>17}{'':>16}"
                         f"{fmt(w.get('server_worst_second_error_pct'), 2):>17}{'':>8}{'':>9}"
                         f"{fmt(w['p50_ms'], 2):>9}{fmt(w['p99_ms'], 2):>9}{fmt(w['cpu_us_per_req']):>12}")
        elif w is not None:
            lines.append(f"{'  wrk2, same rate':<26}  {w['error'][:90]}")
    lines.append("  worst 1-s err: the client's own 1-s intervals (completions); nginx-counted: the same"
                 " run's requests counted by nginx at each whole second (load's partial first and last"
                 f" seconds left out). wrk2: {res.get('wrk2', '-')}")
    ctl = res.get("control_wrk2_at_80pct_of_wrk")
    if ctl and "error" not in ctl:
        secs = ctl.get("server_per_second") or []
        lines.append(f"  control: wrk2 at 80 % of wrk's own closed loop ({fmt(ctl['target_rps'], 0)} req/s):"
                     f" worst nginx-counted second {fmt(ctl.get('server_worst_second_error_pct'), 2)} %"
                     f" ({', '.join(f'{c:,}' for c in secs)}). A miss here is the machine's, whatever the client.")
    elif ctl:
        lines.append(f"  control: wrk2 at 80 % of wrk's own closed loop: {ctl['error'][:90]}")
    c = res.get("cpu_at_20k", {})
    lines.append("")
    lines.append(f"CPU at a fixed {fmt(c.get('rate'), 0)} req/s: Surge {fmt(c.get('surge_cpu_us_per_req'))} µs/req"
                 f" (achieved {fmt(c.get('achieved_rps'), 0)} req/s); {c.get('peer', 'wrk')}: "
                 f"{fmt(c.get('peer_cpu_us_per_req'))} µs/req ({c.get('peer_note', '')})")
    lines.append(f"CPU per request, Surge as a fraction of wrk's: {fmt(res.get('cpu_ratio_vs_wrk'), 2)}"
                 f" (1.0 = as cheap as wrk); Locust's over Surge's: {fmt(res.get('cpu_ratio_vs_locust'), 1)}×")
    lines.append(part(res.get("rate_change", {}), "live rate change", lambda rc: (
        f"live rate change ({fmt(rc.get('changes'))} changes, {rc.get('scope', '')}): "
        f"p50 {fmt(rc.get('p50_ms'), 2)} ms, p99 {fmt(rc.get('p99_ms'), 2)} ms (goal 200 ms)")))
    lines.append(part(res.get("rate_change_e2e", {}), "live rate change end to end", lambda re2e: (
        f"live rate change end to end ({fmt(re2e.get('changes'))} changes through the coordinator,"
        f" real processes over NATS): assignment write → generator on the new schedule p50"
        f" {fmt(re2e.get('write_to_applied_p50_ms'), 2)} ms, p99 {fmt(re2e.get('write_to_applied_p99_ms'), 2)}"
        f" ms (goal 200 ms); from the `surge rate` request p99"
        f" {fmt(re2e.get('request_to_applied_p99_ms'), 2)} ms; the next whole second within"
        f" {fmt(re2e.get('next_second_worst_error_pct'), 2)} % of the new rate"
        f" ({fmt(re2e.get('next_seconds_checked'))} seconds)")))
    lines.append(part(res.get("hot_path", {}), "hot path", lambda hp: (
        f"Python per response, no syscalls (best of 5): engine {fmt(hp.get('engine_us_per_response'), 2)} µs,"
        f" bare protocol {fmt(hp.get('bare_us_per_response'), 2)} µs: Surge's own code adds"
        f" {fmt(hp.get('engine_overhead_us'), 2)} µs; open model (an arrival due at each response)"
        f" {fmt(hp.get('engine_open_us_per_response'), 2)} µs; the pacer's tick"
        f" {fmt(hp.get('engine_tick_us_per_arrival'), 2)} µs an arrival")))
    lines.append(part(res.get("flows", {}), "flow engine", lambda fl: (
        f"flow engine ({fl.get('what', '')}, {fmt(fl.get('users'))} users, closed model, demo target):"
        f" {fmt(fl.get('rps'), 0)} req/s, {fmt(fl.get('rps_per_cpu_s'), 0)} requests per CPU-second")))
    for label, key, row in (("3-step flow, plain HTTP", "flow_rps", "plain"),
                            ("3-step flow, TLS (nginx self-signed)", "flow_tls_rps", "tls"),
                            ("3-step flow, HTTP/2 over TLS", "h2_rps", "h2"),
                            ("3-step flow, HTTP/2 over TCP (h2c)", "h2c_rps", "h2c")):
        lines.append(part(res.get("flow3", {}).get(row, {}), label, lambda r: (
            f"{label}: {fmt(res.get(key), 0)} requests per CPU-second"
            f" ({fmt(r.get('rps'), 0)} req/s, {r.get('protocol')}, errors {r.get('errors')})")))
    lines.append(part(res.get("flow3", {}).get("think", {}), "closed model with think time", lambda r: (
        f"closed model, {fmt(r.get('users'))} users, think {fmt(r.get('think_s'), 2)} s after each step:"
        f" {fmt(r.get('rps'), 0)} req/s against users / (think + mean latency"
        f" {fmt(r.get('mean_latency_ms'), 2)} ms) = {fmt(r.get('law_rps'), 0)}"
        f" (ratio {fmt(r.get('rps_vs_law'), 3)}; target within 2 %)")))
    lines.append(f"Locust FastHttpUser, same flow: {fmt(res.get('locust_flow_rps'), 0)} req/s,"
                 f" {fmt(res.get('locust_flow_rps_per_cpu_s'), 0)} per CPU-second"
                 f" (Surge/Locust per core: {fmt(res.get('flow_ratio_vs_locust'), 2)})")
    lines.append(part(res.get("templated", {}), "templates", lambda _: (
        "a template per request (CPU µs/request, closed loop): static "
        f"{fmt(res.get('templated_static_cpu_us'))}, Bearer {{{{token}}}} from vars "
        f"{fmt(res.get('templated_vars_cpu_us'))}, + {{{{$uuid}}}} rendered per request "
        f"{fmt(res.get('templated_render_cpu_us'))} (flow engine: "
        f"{fmt(res.get('templated_render_flow_cpu_us'))}); https static "
        f"{fmt(res.get('templated_tls_cpu_us'))} (flow engine: {fmt(res.get('templated_tls_flow_cpu_us'))})")))
    lines.append(f"open model at the fixed rate: {fmt(res.get('open_cpu_us_20k'))} µs CPU/request"
                 f" ({fmt(res.get('open_cpu_ratio_vs_closed'), 2)}× the closed loop's)")
    lines.append(part(res.get("rss", {}), "RSS", lambda rss: (
        f"generator service RSS over {fmt(rss.get('seconds'))} s at {fmt(rss.get('rate'), 0)} req/s"
        f" (achieved {fmt(rss.get('achieved_rps'), 0)}): "
        f"{fmt(rss.get('rss_start_mb'))} → {fmt(rss.get('rss_end_mb'))} MB, growth "
        f"{fmt(rss.get('growth_mb'), 2)} MB (goal < 10 MB over 600 s)")))
    m = res["machine"]
    lines.append(f"machine: {m['cores']} cores, {m['cpu_model']}; load average at start "
                 f"{m['loadavg_start'][0]:.2f}, at end {m.get('loadavg_end', [0])[0]:.2f}")
    return "\n".join(lines)
