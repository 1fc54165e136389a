// A finished run's report: verdict, thresholds, totals, latency distribution,
// timeline, per request and per generator tables, events.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const runId = decodeURIComponent(location.pathname.split("/")[2]);
  function render(v) {
    const r = v.report, t = r.totals, lat = t.latency_ms || {};
    const thr = r.thresholds.map((x) => h("tr", {}, S.td(S.thrLabel(x), "mono"), S.td(S.num(x.limit, 3), "n"), S.td(x.value == null ? "–" : S.num(x.value, 3), "n"), h("td", {}, S.badge(x.ok ? "pass" : "fail"), x.reason ? h("span", {class: "muted", text: " " + x.reason}) : null)));
    const reqCols = ["Request", "requests", "errors", "req/s", "late", "dropped", "p50", "p90", "p95", "p99", "p99.9", "max", "error kinds"].map((l, i) => ({label: l, n: i > 0 && i < 12}));
    const reqRows = Object.entries(r.requests).sort().map(([n, q]) => h("tr", {}, S.td(n),
      S.td(S.num(q.requests), "n"), S.td(S.num(q.errors), "n" + (q.errors ? " bad" : "")), S.td(S.rps(q.achieved_rps), "n"), S.td(S.num(q.late), "n"), S.td(S.num(q.dropped), "n"),
      ...S.pctRow(q.latency_ms).map((x) => S.td(S.ms(x), "n")), S.td(Object.entries(q.error_kinds || {}).map(([k, c]) => `${k}:${c}`).join(" ") || "–", "muted")));
    const genRows = Object.entries(r.generators).sort().map(([id, g]) => h("tr", {}, S.td(id, "mono"), S.td(S.num(g.requests), "n"), S.td(S.num(g.errors), "n"),
      S.td(S.rps(g.target_rps), "n"), S.td(S.rps(g.achieved_rps), "n"), S.td(S.num(g.late), "n"), S.td(S.num(g.dropped), "n" + (g.dropped ? " bad" : "")), S.td(S.num(g.seconds), "n")));
    S.mount(
      h("div", {class: "head"}, h("h1", {text: r.plan_name}), h("span", {class: "sub mono", text: r.run_id}), S.badge(r.state), h("span", {id: "verdict"}, S.badge(r.verdict)),
        h("span", {class: "sub", text: `${S.time(r.started_at)} · ${S.dur(r.duration_s)}`}), h("div", {class: "spacer"}),
        h("a", {class: "btn", href: `/runs/${runId}`}, "Live view"), h("a", {class: "btn", href: `/api/runs/${runId}/report`, download: `${runId}.json`}, "JSON"),
        h("a", {class: "btn", id: "report-html", href: `/api/runs/${runId}/report.html`, download: `${runId}.html`}, "HTML")),
      r.hosts && r.hosts.note ? h("div", {class: "banner warn", id: "limit-note"}, h("b", {text: "Limit: "}), r.hosts.note) : null,
      h("div", {class: "kpis"}, S.kpi("kpi-requests", "Requests", S.num(t.requests)), S.kpi("kpi-rps", "Achieved req/s", S.rps(t.achieved_rps)),
        S.kpi("kpi-target", "Target req/s (mean)", S.rps(r.target_rps)), S.kpi("kpi-err", "Error rate", S.pct(t.error_rate), t.error_rate > 0.01 ? "bad" : ""),
        S.kpi("kpi-p50", "p50", S.ms(lat.p50)), S.kpi("kpi-p99", "p99", S.ms(lat.p99)), S.kpi("kpi-p999", "p99.9", S.ms(lat.p999)), S.kpi("kpi-max", "max", S.ms(lat.max)),
        S.kpi("kpi-late", "Late / dropped", `${S.num(t.late)} / ${S.num(t.dropped)}`, t.dropped ? "bad" : "")),
      h("div", {class: "grid g2"},
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-dist"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-timeline"}))),
      h("div", {class: "grid g2", style: "margin-top:14px"},
        h("div", {class: "panel"}, h("h2", {text: "Thresholds"}), r.thresholds.length ? S.table([{label: "threshold"}, {label: "limit", n: 1}, {label: "value", n: 1}, {label: "verdict"}], thr, {id: "thresholds"}) : h("div", {class: "muted", text: "no thresholds in this plan: the verdict is pass"})),
        h("div", {class: "panel"}, h("h2", {text: "Events"}), h("div", {class: "events"}, ...(r.events.length ? r.events.map((e) => h("div", {text: e})) : [h("div", {class: "muted", text: "none"})])))),
      baselinePanel(r),
      h("div", {class: "panel", style: "margin-top:14px"}, h("h2", {text: "Requests (latency from intended time)"}), S.table(reqCols, reqRows, {id: "requests"})),
      h("div", {class: "panel"}, h("h2", {text: "Generators"}), S.table(["Generator", "requests", "errors", "target/s", "achieved/s", "late", "dropped", "seconds"].map((l, i) => ({label: l, n: i > 0})), genRows)),
      hostsPanel(r, v.hosts),
      logPanel(r));
    hostsCharts(r);
    S.distChart(document.getElementById("chart-dist"), [v.distribution, v.service_distribution], ["latency (intended)", "service time"]);
    const tl = r.timeline;
    S.chart(document.getElementById("chart-timeline"), {title: "Timeline", scales: {x: {time: false}}, axes: S.axes(null, S.timeAxis),
      series: [S.timeSeries, {label: "target/s", stroke: S.color(2), dash: [6, 4], width: 2}, {label: "req/s", stroke: S.color(0), width: 1.6},
        {label: "p99 ms", stroke: S.color(3), width: 1.4}, {label: "errors/s", stroke: S.color(4), width: 1.2}]},
    [tl.map((e) => e.t), tl.map((e) => e.target_rps), tl.map((e) => e.rps), tl.map((e) => e.p99_ms), tl.map((e) => e.errors)]);
  }
  function baselinePanel(r) {  // a run of a catalogue test beside its baseline (docs/archive.md)
    const b = r.baseline; if (!b) return null;
    const metrics = Object.keys(b.totals);
    const cell = (d) => { if (!d) return S.td(""); const v = d.value == null ? "–" : S.num(d.value, 3);
      return S.td(d.change_pct == null ? v : `${v} (${d.change_pct > 0 ? "+" : ""}${d.change_pct.toFixed(1)}%)`, "n"); };
    const rows = [["ALL", b.totals], ...Object.entries(b.requests).sort()].map(([n, d]) => h("tr", {}, S.td(n), ...metrics.map((m) => cell(d[m]))));
    return h("div", {class: "panel", id: "baseline", style: "margin-top:14px"},
      h("h2", {}, "Against baseline run ", h("a", {href: `/runs/${b.run_id}/report`, class: "mono", text: b.run_id}), ` of ${b.test}`),
      S.table([{label: "request"}, ...metrics.map((m) => ({label: m, n: 1}))], rows));
  }
  function logPanel(r) {
    const panel = S.logPanel(runId);
    panel.generators(Object.keys(r.generators));
    return panel.el;
  }
  // The machines under the run (report.hosts, docs/monitor.md): a line per host and per
  // generator, each monitored host's CPU and the generators' own CPU second by second.
  function hostsPanel(r, sum) {
    if (!r.hosts || !sum || !(sum.hosts.length || sum.generators.length)) return null;
    const f = (x) => x == null ? "–" : S.num(x, 1);
    const hostRows = sum.hosts.map((x) => h("tr", {}, S.td(x.host, "mono"), S.td(x.generators.join(", ") || "–", "muted"),
      ...(x.monitored ? [f(x.cpu_mean), f(x.cpu_max), f(x.iowait_max), f(x.steal_max), f(x.mem_max), S.bytes(x.rx_mean_bps) + "/s", S.bytes(x.tx_mean_bps) + "/s", f(x.retrans_max_ps), S.num((x.tcp_max || {}).ESTABLISHED || 0)].map((c) => S.td(c, "n"))
        : [h("td", {class: "muted", colspan: 9, text: "no monitor on this host"})])));
    const genRows = sum.generators.map((g) => h("tr", {class: g.limited ? "limited" : ""}, S.td(g.generator_id, "mono"), S.td(g.host, "mono"), S.td(S.num(g.cores), "n"),
      S.td(f(g.cpu_mean_pct), "n"), S.td(f(g.peak_pct), "n"), S.td(S.num(g.saturated_s), "n"), S.td(g.limited ? S.badge("limit", "fail") : "no", g.limited ? "bad" : "")));
    const charts = r.hosts.hosts.filter((x) => x.monitored).map((x, i) => h("div", {class: "panel"}, h("div", {class: "chart", id: `chart-host-${i}`})));
    return h("div", {class: "panel", id: "hosts", style: "margin-top:14px"}, h("h2", {text: "Hosts during the run"}),
      S.table(["Host", "generators", "cpu mean %", "cpu peak %", "iowait peak %", "steal peak %", "mem peak %", "rx mean", "tx mean", "retrans/s peak", "tcp estab. peak"].map((l, i) => ({label: l, n: i > 1})), hostRows, {id: "hosts-table"}),
      h("h2", {text: "Generators' CPU (% of their cores)", style: "margin-top:12px"}),
      S.table(["Generator", "host", "cores", "mean %", "peak %", "saturated s", "the limit"].map((l, i) => ({label: l, n: i > 1 && i < 6})), genRows, {id: "generator-cpu"}),
      h("div", {class: "grid g2", style: "margin-top:12px"}, h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-gen-cpu"})), ...charts));
  }
  function hostsCharts(r) {
    if (!r.hosts) return;
    const xs = Array.from({length: r.hosts.seconds}, (_, t) => t), pct = {axes: S.axes((v) => v == null ? "" : S.num(v, 0) + "%", S.timeAxis), scales: {x: {time: false}}};
    const gen = document.getElementById("chart-gen-cpu");
    if (gen && r.hosts.generators.length) S.chart(gen, Object.assign({title: "Generators' own CPU, % of their cores",
      series: [S.timeSeries, ...r.hosts.generators.map((g, i) => ({label: g.generator_id, stroke: S.color(i), width: 1.6}))]}, pct),
    [xs, ...r.hosts.generators.map((g) => g.cpu_pct.map((c) => c == null ? null : c / g.cores))]);
    r.hosts.hosts.filter((x) => x.monitored).forEach((x, i) => {
      const el = document.getElementById(`chart-host-${i}`);
      if (el) S.chart(el, Object.assign({title: `CPU of ${x.host}`, series: [S.timeSeries, {label: "busy", stroke: S.color(0), width: 1.6},
        {label: "iowait", stroke: S.color(2), width: 1.2}, {label: "steal", stroke: S.color(3), width: 1.2}]}, pct), [xs, x.cpu_pct, x.iowait_pct, x.steal_pct]);
    });
  }
  async function load() {
    try { render(await S.api("GET", `/api/runs/${runId}/report`)); }
    catch (e) {
      if (e.status === 409) { S.mount(h("div", {class: "banner warn", text: `No report yet: ${e.message}. Waiting…`}), h("a", {href: `/runs/${runId}`, text: "Live view →"})); setTimeout(load, 2000); }
      else S.mount(S.errorBanner(e));
    }
  }
  document.addEventListener("DOMContentLoaded", () => { load(); S.live.start(); });
})();
